"""Real FrameResults for sink tests: real photos through the real detector, aligner and embedded model.

Nothing here depends on the model's weights: callers take whatever emotion the model reports."""

from __future__ import annotations

from pathlib import Path

import cv2

from edgefer.edge.pipeline import Pipeline, build_pipeline
from edgefer.types import FrameResult


def open_pipeline(yunet_path: Path) -> Pipeline:
    return build_pipeline(detector=yunet_path, threads=1)


def framed_faces(pipeline: Pipeline, folder: Path, count: int, margin: int = 12,
                 min_size: int = 80) -> list[FrameResult]:
    """The first `count` photos of `folder` (sorted by name) with exactly one face whose box lies inside
    the image with `margin` pixels to spare, each with track id 1, 2, ... ."""
    out: list[FrameResult] = []
    for path in sorted(folder.glob("*.jpg")):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        result = pipeline.process_image(image, index=len(out), source=path.name)
        if len(result.faces) != 1:
            continue
        x, y, w, h = (float(v) for v in result.faces[0].face.box)
        H, W = image.shape[:2]
        if min(x, y) < margin or x + w > W - margin or y + h > H - margin or min(w, h) < min_size:
            continue
        result.faces[0].track_id = len(out) + 1
        out.append(result)
        if len(out) == count:
            break
    if len(out) < count:
        raise RuntimeError(f"only {len(out)} well-framed single faces in {folder}")
    return out
