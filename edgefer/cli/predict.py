"""`edgefer predict`: emotions and intensities of every face in images or folders of images."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from edgefer.errors import UserError

log = logging.getLogger(__name__)


def write_image_atomic(path: Path, image) -> None:
    """Encode by the file's suffix and write it atomically (no half files; `edgefer.paths`)."""
    import cv2

    from edgefer.paths import write_bytes_atomic

    ok, data = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise UserError(f"{path}: cannot encode image")
    write_bytes_atomic(path, data.tobytes(), mode=0o644)


def annotation_path(out_dir: Path, root: Path, image_path: Path) -> Path:
    """Where the overlay of `image_path` goes: its path relative to the folder argument (the file
    name for a file argument), under `out_dir`, as .jpg unless it was .png."""
    rel = image_path.relative_to(root) if root.is_dir() else Path(image_path.name)
    suffix = ".png" if image_path.suffix.lower() == ".png" else ".jpg"
    return out_dir / rel.with_suffix(suffix)


def summary_line(path: str, faces: list) -> str:
    """One line per image; tracked faces (--sequence) show their track id and smoothed emotion."""
    if not faces:
        return f"{path}: no face"
    parts = []
    for f in faces:
        d = f.to_dict()
        if "track_id" in d:
            top = d["stable_emotion"]
            prob, inten = d["smoothed_probabilities"][top], d["smoothed_intensity"][top]
            text = f"track {d['track_id']} {top} {prob:.2f} smoothed"
        else:
            top = d["emotion"]
            prob, inten = d["probabilities"][top], d["intensity"][top]
            text = f"{top} {prob:.2f}"
        parts.append(f"{text} (intensity {inten:.2f}) at " + ",".join(str(int(round(v))) for v in d["box"]))
    return f"{path}: " + "; ".join(parts)


@click.command("predict")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line.")
@click.option("--annotate", type=click.Path(path_type=Path, file_okay=False),
              help="Write overlay images (box, emotion, intensity bars) into this folder.")
@click.option("--model", type=click.Path(path_type=Path), help="Model (.onnx or .engine); default: the embedded model.")
@click.option("--detector", type=click.Path(path_type=Path),
              help="YuNet ONNX file; default: the cache folder, else a one-time pinned download.")
@click.option("--threads", type=int, default=0, show_default=True, help="Inference threads (0: runtime default).")
@click.option("--max-faces", type=int, default=8, show_default=True, help="Largest faces kept per image.")
@click.option("--input-width", type=int, default=320, show_default=True,
              help="Detector input width in pixels (multiple of 32); larger finds smaller faces.")
@click.option("--sequence", is_flag=True, help="The images (all PATHS, in order, each folder by name) are frames "
              "of one scene, 30 per second: faces are tracked and smoothed across them.")
def predict(paths: tuple[Path, ...], as_json: bool, annotate: Path | None, model: Path | None,
            detector: Path | None, threads: int, max_faces: int, input_width: int, sequence: bool) -> None:
    """Emotions (with per-emotion intensity) of every face in images or folders (searched
    recursively). Unreadable images are reported on stderr and skipped; the exit status is 1 if any
    image could not be read.

    Each image is its own still: nothing is carried from one image to the next. With --sequence
    the images are frames of one scene: each face also gets a track id, smoothed probabilities and
    intensities, and a stable emotion (the fields of `edgefer run`).

    \b
    Examples:
      edgefer predict face.jpg
      edgefer predict ../shared/data/photos/happy --json
      edgefer predict group.png --annotate out/ --detector face_detection_yunet_2026may.onnx
      edgefer predict timelapse/ --sequence --json
    """
    from edgefer.edge.pipeline import open_pipeline
    from edgefer.edge.shadow import ShadowConfig
    from edgefer.edge.sources.files import ImageFolderSource
    from edgefer.edge.tracker import Tracker

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(f"no such file or directory: {', '.join(missing)}")
    # refuses empty folders up front
    sources = [ImageFolderSource(p, recursive=True, warn=False, sequence=sequence) for p in paths]
    tracker = Tracker() if sequence else None
    if annotate is not None:
        from edgefer.paths import check_output

        check_output(annotate, folder=True)  # before the first result is printed
    pipeline = open_pipeline(model=model, shadow=ShadowConfig(), detector=detector, threads=threads,
                             max_faces=max_faces, input_width=input_width)
    failed = 0
    try:
        for prev, src in zip([None, *sources], sources):
            if prev is not None:
                src.set_start(prev.next_monotonic)  # one clock across all PATHS
            while (frame := src.read()) is not None:
                path = src.current
                result = pipeline.process(frame)
                if tracker is not None:
                    tracker.update(result)
                if as_json:
                    click.echo(json.dumps({"path": str(path), "faces": [f.to_dict() for f in result.faces]}))
                else:
                    click.echo(summary_line(str(path), result.faces))
                if annotate is not None:
                    from edgefer.edge.draw import draw_results

                    write_image_atomic(annotation_path(annotate, src.path, path),
                                       draw_results(frame.image, result.faces))
            for bad in src.unreadable:
                click.echo(f"edgefer: error: {bad}: not a readable image", err=True)
            failed += len(src.unreadable)
        shadow = pipeline.shadow
        if shadow is not None:
            shadow.finish()
            if shadow.state != "passed":
                r = shadow.result()
                click.echo(f"edgefer: error: shadow check {r['state']} ({r.get('faces', 0)} faces compared with the "
                           "FP32 model)" + (f": {r['reason']}" if r.get("reason") else ""), err=True)
                failed += shadow.failed
    finally:
        pipeline.close()
    if failed:
        raise click.exceptions.Exit(1)
