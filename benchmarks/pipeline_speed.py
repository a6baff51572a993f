"""End-to-end speed on one core: a 640x480 clip with one face, default model, ONNX Runtime.

    taskset -c 0 python benchmarks/pipeline_speed.py [--model PATH] [--frames 600]

Builds the clip from a shared photo in a temporary folder, runs `edgefer bench`'s measurement
(decode, detect, align, classify, end to end) with one inference thread, prints the table and the
acceptance line (>= 100 frames/s).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "scripts"))

from make_clips import make_moving_face_clip  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--detector", type=Path, default=HERE.parent / "shared/models/face_detection_yunet_2026may.onnx")
    ap.add_argument("--photo", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    from edgefer.cli.bench import run_bench

    photo = a.photo or sorted((HERE.parent / "shared/data/photos/happy").glob("*.jpg"))[0]
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_moving_face_clip(photo, Path(tmp) / "face640x480.avi", frames=300)
        r = run_bench(str(clip), frames=a.frames, warmup=20, threads=a.threads, model=a.model, detector=a.detector)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    r["cpu_affinity"] = cores
    if a.json:
        print(json.dumps(r))
        return 0
    print(f"clip 640x480, one face, {r['frames']} frames, {r['threads']} thread(s), CPUs {cores}")
    print(f"{'stage':<18}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for s in ("decode", "detect", "align", "classify", "total"):
        print(f"{s:<18}{r['ms'][s]:>10.3f}{r['p50_ms'][s]:>10.3f}{r['p95_ms'][s]:>10.3f}")
    print(f"end to end: {r['fps']} frames/s wall, {r['fps_cpu']} per CPU-second "
          f"(acceptance >= 100: {'PASS' if r['fps'] >= 100 else 'FAIL'} on wall time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
