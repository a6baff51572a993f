"""Soak: the real `edgefer run` daemon for N minutes on a looping clip; is it stable?

    python benchmarks/soak.py --minutes 10 --detector ../shared/models/face_detection_yunet_2026may.onnx

Starts `edgefer run --source CLIP --loop --jsonl -` (ONNX Runtime backend, default model) and
samples the daemon every `--interval` seconds from /proc: resident memory (VmRSS), threads, open
file descriptors, and processed frames (JSON lines read from its stdout). Reports, over the last
80 % of the run (after warm-up): RSS growth (and the slope of a straight-line fit, in MB/hour),
whether threads and open files stayed constant, and the frame rate per interval (mean, min, max,
coefficient of variation). Acceptance: RSS growth < 1 MB, threads and files constant, peak RSS
<= 250 MB. Frame rate steadiness is reported; on a shared machine (e.g. training on the other
cores) it reflects that contention. Exit status 1 if an acceptance check fails.
`tests/service/test_soak.py` runs the same code for a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEFER_SHARED", ROOT.parent / "shared"))


@dataclass
class Sample:
    t: float  # seconds since start
    rss_mb: float
    threads: int
    fds: int
    frames: int


def proc_sample(pid: int, t: float, frames: int, readings: int = 5, gap_s: float = 0.03) -> Sample:
    """RSS, threads and open descriptors of `pid`. Threads and descriptors are the largest of
    `readings` readings `gap_s` apart: when the looping clip is reopened, the old reader thread and
    its file are gone for a few milliseconds before the new ones exist, and a single reading can
    land in that dip. A leak raises every reading, so the maximum still shows it."""
    threads = fds = 0
    rss_kb = 0
    for i in range(readings):
        if i:
            time.sleep(gap_s)
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss_kb = int(fields["VmRSS"].split()[0])
        threads = max(threads, int(fields["Threads"]))
        fds = max(fds, len(os.listdir(f"/proc/{pid}/fd")))
    return Sample(t, rss_kb / 1024.0, threads, fds, frames)


def make_clip(path: Path, frames: int = 300, photo: Path | None = None) -> Path:
    """A 640x480 clip of a face moving across a textured background (scripts/make_clips.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_clips import make_moving_face_clip

    photo = photo or sorted((SHARED / "data" / "photos" / "happy").glob("*.jpg"))[0]
    return make_moving_face_clip(photo, path, frames=frames)


def soak(seconds: float, interval: float, clip: Path, detector: Path | None, threads: int = 1,
         extra_args: tuple[str, ...] = ()) -> list[Sample]:
    """Run the daemon for `seconds`, sampling every `interval`; returns the samples."""
    args = [sys.executable, "-m", "edgefer", "run", "--source", str(clip), "--loop", "--jsonl", "-",
            "--threads", str(threads), *extra_args]
    if detector:
        args += ["--detector", str(detector)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    frames = 0
    err: list[str] = []

    def count() -> None:
        nonlocal frames
        for _ in proc.stdout:  # type: ignore[union-attr]
            frames += 1

    def errors() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            err.append(line)
            del err[:-50]

    readers = [threading.Thread(target=count, daemon=True), threading.Thread(target=errors, daemon=True)]
    for r in readers:
        r.start()
    samples: list[Sample] = []
    t0 = time.monotonic()
    try:
        next_t = t0
        while True:
            now = time.monotonic()
            if now - t0 > seconds:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {proc.returncode}:\n{''.join(err)}")
            if now >= next_t:
                samples.append(proc_sample(proc.pid, now - t0, frames))
                next_t += interval
            time.sleep(max(0.0, min(0.2, next_t - time.monotonic())))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if proc.returncode != 0:
        raise RuntimeError(f"daemon exit status {proc.returncode} on SIGTERM:\n{''.join(err)}")
    return samples


def summarise(samples: list[Sample], warmup_fraction: float = 0.2) -> dict:
    """Figures over the samples after the first `warmup_fraction` of the run."""
    start = samples[-1].t * warmup_fraction
    steady = [s for s in samples if s.t >= start]
    if len(steady) < 3:
        raise ValueError("too few samples after warm-up; run longer or sample more often")
    ts = [s.t for s in steady]
    rss = [s.rss_mb for s in steady]
    mean_t, mean_r = statistics.fmean(ts), statistics.fmean(rss)
    slope = sum((t - mean_t) * (r - mean_r) for t, r in zip(ts, rss)) / sum((t - mean_t) ** 2 for t in ts)
    rates = [(b.frames - a.frames) / (b.t - a.t) for a, b in zip(steady, steady[1:])]
    mean_fps = statistics.fmean(rates)
    return {
        "duration_s": round(samples[-1].t, 1),
        "samples": len(samples),
        "rss_start_mb": round(rss[0], 2),
        "rss_end_mb": round(rss[-1], 2),
        "rss_growth_mb": round(rss[-1] - rss[0], 3),
        "rss_slope_mb_per_hour": round(slope * 3600, 2),
        "rss_peak_mb": round(max(s.rss_mb for s in samples), 2),
        "threads": sorted({s.threads for s in steady}),
        "open_files": sorted({s.fds for s in steady}),
        "frames": samples[-1].frames,
        "fps_mean": round(mean_fps, 2),
        "fps_min": round(min(rates), 2),
        "fps_max": round(max(rates), 2),
        "fps_cv": round(statistics.pstdev(rates) / mean_fps, 3) if mean_fps else None,
    }


def checks(summary: dict, max_growth_mb: float = 1.0, max_rss_mb: float = 250.0) -> dict[str, bool]:
    return {
        f"rss growth < {max_growth_mb} MB": summary["rss_growth_mb"] < max_growth_mb,
        "threads constant": len(summary["threads"]) == 1,
        "open files constant": len(summary["open_files"]) == 1,
        f"peak rss <= {max_rss_mb:.0f} MB": summary["rss_peak_mb"] <= max_rss_mb,
        "frames flowing": summary["fps_min"] > 0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=5.0, help="Seconds between samples.")
    ap.add_argument("--clip", type=Path, help="Clip to loop (default: one made from a shared photo).")
    ap.add_argument("--detector", type=Path, default=SHARED / "models" / "face_detection_yunet_2026may.onnx")
    ap.add_argument("--threads", type=int, default=1, help="Inference threads per model.")
    ap.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")
    ap.add_argument("--samples-out", type=Path, help="Also write every sample as JSON lines here.")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = a.clip or make_clip(Path(tmp) / "soak.avi")
        samples = soak(a.minutes * 60, a.interval, clip, a.detector if a.detector.exists() else None, a.threads)
    if a.samples_out:
        a.samples_out.write_text("".join(json.dumps(asdict(s)) + "\n" for s in samples))
    summary = summarise(samples)
    result = checks(summary)
    if a.json:
        print(json.dumps({**summary, "checks": result}))
    else:
        print(f"soak: {summary['duration_s']:.0f} s, {summary['samples']} samples, {summary['frames']} frames "
              f"(figures over the last 80 %)")
        for k, v in summary.items():
            print(f"  {k:<24} {v}")
        for name, ok in result.items():
            print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
