"""Fixtures of the perception tests: real YuNet, the embedded classifier, clips built from photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest


@pytest.fixture(scope="session")
def detector(yunet_path: Path):
    from edgefer.edge.detector import YunetDetector

    det = YunetDetector.open(yunet_path, threads=1)
    yield det
    det.close()


@pytest.fixture(scope="session")
def pipeline(yunet_path: Path):
    from edgefer.edge.pipeline import build_pipeline

    p = build_pipeline(detector=yunet_path, threads=1)
    yield p
    p.close()


@pytest.fixture(scope="session")
def face_photo(photos_dir: Path) -> Path:
    return sorted((photos_dir / "happy").glob("*.jpg"))[0]


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory, face_photo: Path) -> tuple[Path, list[tuple[int, int, float]]]:
    """A 640x480 MJPEG clip (30 frames) of one photo moving across a textured background, and the
    (x, y, scale) at which the photo was pasted in each frame."""
    from make_clips import make_frames, write_clip

    photo = cv2.imread(str(face_photo), cv2.IMREAD_COLOR)
    frames, where = make_frames(photo, frames=30, width=640, height=480, face_height=240)
    path = write_clip(frames, tmp_path_factory.mktemp("clips") / "moving_face.avi")
    return path, where

