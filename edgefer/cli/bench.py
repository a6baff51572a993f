"""`edgefer bench`: per-stage latency and frames per second of the pipeline on a clip."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click
import numpy as np

from edgefer.errors import UserError

STAGES = ("decode", "detect", "align", "classify", "total")


def run_bench(source: str, frames: int = 300, warmup: int = 10, threads: int = 1, model: Path | None = None,
              detector: Path | None = None, input_width: int | str = 320, max_faces: int = 8,
              precision: str | None = None) -> dict:
    """Run `frames` frames of `source` (a file is replayed from the start when it ends) through the
    pipeline after `warmup` frames; per-stage mean/p50/p95 ms, ms per classified face, fps =
    measured frames / wall time of the whole loop (decode included), and fps_cpu = frames / CPU
    time of this process (tells a busy machine from a slow pipeline). `precision` chooses the
    classifier as the daemon does (`edge.precision.choose`; None: FP32 unless `model`); the shadow
    check is not run (it would share the measured core)."""
    from edgefer.edge.pipeline import open_pipeline
    from edgefer.edge.sources import open_source

    if frames < 1 or warmup < 0:
        raise UserError("--frames must be at least 1 and --warmup at least 0")
    src = open_source(source)  # bad sources fail before models are loaded
    try:
        pipeline = open_pipeline(model=model, precision=precision, detector=detector, threads=threads,
                                 input_width=input_width, max_faces=max_faces)
    except BaseException:
        src.close()
        raise
    timings: dict[str, list[float]] = {s: [] for s in STAGES}
    faces = 0
    done = 0
    size = None
    try:
        t_start, c_start = None, time.process_time()
        while done < warmup + frames:
            if done == warmup:
                t_start, c_start = time.perf_counter(), time.process_time()
            t = time.perf_counter()
            frame = src.read()
            decode_ms = getattr(src, "decode_ms", None)
            if decode_ms is None:
                decode_ms = (time.perf_counter() - t) * 1000.0
            if frame is None:
                if getattr(src, "live", False):
                    raise UserError(f"{source}: the source stopped delivering frames")
                if done == 0:
                    raise UserError(f"{source}: no frames")
                src.close()
                src = open_source(source)  # replay the file
                continue
            result = pipeline.process(frame, decode_ms=decode_ms)
            size = frame.image.shape[1::-1]
            if done >= warmup:
                for s in STAGES:
                    timings[s].append(result.timings_ms[s])
                faces += len(result.faces)
            done += 1
        wall = time.perf_counter() - (t_start or time.perf_counter())
        cpu = time.process_time() - c_start
    finally:
        src.close()
        pipeline.close()
    ms = {s: round(float(np.mean(v)), 3) for s, v in timings.items()}
    ms["classify_per_face"] = round(float(np.sum(timings["classify"]) / faces), 3) if faces else None
    return {
        "fps": round(frames / wall, 1) if wall > 0 else None,
        # frames per second of CPU time used by this process: what one free core would deliver
        # when other processes share it (equal to `fps` on an idle core with --threads 1)
        "fps_cpu": round(frames / cpu, 1) if cpu > 0 else None,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "ms": ms,
        "p50_ms": {s: round(float(np.percentile(v, 50)), 3) for s, v in timings.items()},
        "p95_ms": {s: round(float(np.percentile(v, 95)), 3) for s, v in timings.items()},
        "frames": frames,
        "faces_per_frame": round(faces / frames, 3),
        "frame_size": list(size) if size else None,
        "threads": threads,
        "input_width": pipeline.detector.input_width,
        "detector_choice": pipeline.detector_choice,
        "source": str(source),
        "model": str(model) if model else "embedded default",
        "classifier": pipeline.choice,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


class DetectorWidth(click.ParamType):
    """`--input-width`: a whole number of pixels, or auto (`[detector] input_width`)."""

    name = "WIDTH|auto"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if value == "auto" or isinstance(value, int):
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r}: a whole number of pixels or auto", param, ctx)


@click.command("bench")
@click.option("--source", required=True, help="Clip, image folder or camera URI (see `edgefer run`).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Inference threads per model (0: runtime default). Pin cores with taskset.")
@click.option("--frames", type=int, default=300, show_default=True, help="Frames measured (a clip is replayed).")
@click.option("--warmup", type=int, default=10, show_default=True, help="Frames run before measuring.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (fps, per-stage ms).")
@click.option("--model", type=click.Path(path_type=Path), help="Model (.onnx or .engine); default: the embedded model.")
@click.option("--detector", type=click.Path(path_type=Path),
              help="YuNet ONNX file; default: the cache folder, else a one-time pinned download.")
@click.option("--input-width", type=DetectorWidth(), default="auto", show_default=True,
              help="Detector input width (a multiple of 32), or auto: what the daemon's default picks here (measured).")
@click.option("--max-faces", type=int, default=8, show_default=True, help="Largest faces classified per frame.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "int8"]), default="auto", show_default=True,
              help="Without --model: the classifier the daemon would pick (auto: measured here), or force one.")
def bench(source: str, threads: int, frames: int, warmup: int, as_json: bool, model: Path | None,
          detector: Path | None, input_width: int | str, max_faces: int, precision: str) -> None:
    """Measure the pipeline (decode, detect, align, classify, end to end) on a clip.

    \b
    Examples:
      edgefer bench --source clip.mp4
      taskset -c 0 edgefer bench --source clip.mp4 --threads 1 --json
    """
    r = run_bench(source, frames=frames, warmup=warmup, threads=threads, model=model, detector=detector,
                  input_width=input_width, max_faces=max_faces, precision=None if model else precision)
    if as_json:
        click.echo(json.dumps(r))
        return
    w, h = r["frame_size"] or (0, 0)
    click.echo(f"{r['source']}: {r['frames']} frames {w}x{h}, {r['faces_per_frame']} faces/frame, "
               f"{r['threads']} thread(s), detector input width {r['input_width']} ({r['detector_choice']['reason']})")
    c = r["classifier"]
    click.echo(f"classifier: {c['model']} ({c['precision']}: {c['reason']})")
    click.echo(f"{'stage':<18}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for s in STAGES:
        click.echo(f"{s:<18}{r['ms'][s]:>10.3f}{r['p50_ms'][s]:>10.3f}{r['p95_ms'][s]:>10.3f}")
    if r["ms"]["classify_per_face"] is not None:
        click.echo(f"{'classify per face':<18}{r['ms']['classify_per_face']:>10.3f}")
    click.echo(f"end to end: {r['fps']} frames/s ({r['fps_cpu']} per second of CPU time used)")
