"""Test and benchmark clips built from still photos: a face moving across a canvas.

Clips are generated where they are needed (tests write them to a temporary folder) and never
committed. Usable as a module (`make_moving_face_clip`) and as a script:

    python scripts/make_clips.py ../shared/data/photos/happy/<photo>.jpg /tmp/face640.avi --frames 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, textured BGR background (no faces in it)."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    bg = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(bg, (0, 0), 3)


def face_positions(frames: int, width: int, height: int, fw: int, fh: int) -> list[tuple[int, int]]:
    """Top-left corners of a face moving left to right and gently up and down, inside the canvas."""
    xs = np.linspace(0, width - fw, frames) if frames > 1 else np.zeros(1)
    ys = (height - fh) / 2 + (height - fh) / 3 * np.sin(np.linspace(0, 2 * np.pi, frames))
    return [(int(round(x)), int(round(y))) for x, y in zip(xs, ys)]


def make_frames(photo: np.ndarray, frames: int = 60, width: int = 640, height: int = 480,
                face_height: int = 240, seed: int = 0) -> tuple[list[np.ndarray], list[tuple[int, int, float]]]:
    """Frames with `photo` (scaled to `face_height` rows) pasted along a path; also (x, y, scale)
    of the paste per frame, so a test knows where the face is."""
    import cv2

    scale = face_height / photo.shape[0]
    patch = cv2.resize(photo, (int(round(photo.shape[1] * scale)), face_height), interpolation=cv2.INTER_AREA)
    ph, pw = patch.shape[:2]
    bg = background(width, height, seed)
    out, where = [], []
    for x, y in face_positions(frames, width, height, pw, ph):
        frame = bg.copy()
        frame[y:y + ph, x:x + pw] = patch
        out.append(frame)
        where.append((x, y, scale))
    return out, where


def write_clip(frames: list[np.ndarray], path: str | Path, fps: float = 30.0) -> Path:
    """Write BGR frames as MJPEG in AVI (always available in OpenCV builds)."""
    import cv2

    path = Path(path)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write MJPEG/AVI here")
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def make_moving_face_clip(photo_path: str | Path, out: str | Path, frames: int = 60, width: int = 640,
                          height: int = 480, face_height: int = 240, fps: float = 30.0) -> Path:
    """A clip of one photo moving across a `width` x `height` canvas; returns its path."""
    import cv2

    photo = cv2.imread(str(photo_path), cv2.IMREAD_COLOR)
    if photo is None:
        raise FileNotFoundError(photo_path)
    imgs, _ = make_frames(photo, frames, width, height, face_height)
    return write_clip(imgs, out, fps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo")
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--face-height", type=int, default=240)
    a = ap.parse_args()
    print(make_moving_face_clip(a.photo, a.out, a.frames, a.width, a.height, a.face_height))


if __name__ == "__main__":
    main()
