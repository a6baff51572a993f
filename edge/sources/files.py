"""Sources read from disk: a video file frame by frame, a folder of images one by one.

Nothing is dropped: a file source is not live, so a slow model just takes longer. Frame times come
from the media, not the wall clock (a video's own timestamps, an image folder's nominal `fps`),
so smoothing over seconds gives the same result however fast the file is processed; that media
clock is no measure of age, so each frame also carries the real time it was read (`received`). `start`
(monotonic seconds of the first frame, default: when the source is opened) lets a looping capture
or a sequence of several folders continue one clock (`next_monotonic`) instead of going back.

A folder of photos is a set of unrelated stills: each image is its own scene (`Frame.new_scene`),
so the run loop tracks and smooths nothing across files. `sequence=True` says the images are frames
of one scene (a time-lapse, frames exported from a video): they are tracked like a video's.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edgefer.errors import UserError
from edgefer.types import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv",
                            ".flv", ".mjpeg", ".mjpg", ".y4m", ".gif"})
#: Consecutive undecodable frames tolerated inside a video before it is considered ended.
MAX_BAD_FRAMES = 25


def list_images(path: Path, recursive: bool = False) -> list[Path]:
    """Image files in a folder, sorted by name (`recursive`: also in subfolders)."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path) -> np.ndarray | None:
    """A BGR uint8 image, or None when the file cannot be decoded as an image."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None


def _clock_origin(start: float | None) -> tuple[float, float]:
    """(wall, monotonic) of a file's first frame: now, or `start` on the monotonic clock (the wall
    time is only for display, so it is derived from it)."""
    wall, mono = time.time(), time.monotonic()
    return (wall, mono) if start is None else (wall + (start - mono), start)


class VideoFileSource:
    """A video file, every frame in order. Undecodable frames inside the file are skipped and
    counted in `skipped`; `decode_ms` is the time the last `read()` took."""

    live = False

    def __init__(self, path: str | Path, width: int | None = None, height: int | None = None,
                 fps: float | None = None, start: float | None = None) -> None:
        """`width`, `height`, `fps` are accepted for a uniform source signature and ignored:
        a file is read as recorded. `start`: see the module docstring."""
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such video file")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise UserError(f"{self.path}: cannot open as a video (unknown format or corrupt file)")
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0) or 30.0
        self.skipped = 0
        self.decode_ms = 0.0
        self._index = 0
        self._t0_wall, self._t0_mono = _clock_origin(start)
        t = time.perf_counter()
        self._pending = self._next()
        self.decode_ms = (time.perf_counter() - t) * 1000.0
        if self._pending is None:
            self._cap.release()
            raise UserError(f"{self.path}: video has no readable frames")

    def _next(self) -> np.ndarray | None:
        bad = 0
        while True:
            ok, image = self._cap.read()
            if ok and image is not None and image.size:
                return image
            pos = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
            if self.frame_count and pos < self.frame_count - 1 and bad < MAX_BAD_FRAMES:
                bad += 1
                self.skipped += 1
                continue
            return None

    @property
    def next_monotonic(self) -> float:
        """The stream time the next frame would have (where a following pass or file starts)."""
        return self._t0_mono + self._index / self.fps

    def read(self) -> Frame | None:
        if self._cap is None:
            return None
        t = time.perf_counter()
        image = self._pending if self._pending is not None else self._next()
        self._pending = None
        self.decode_ms = (time.perf_counter() - t) * 1000.0
        if image is None:
            return None
        media_s = self._index / self.fps
        frame = Frame(image=image, index=self._index, timestamp=self._t0_wall + media_s,
                      monotonic=self._t0_mono + media_s, source=self.name, received=time.monotonic())
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource:
    """Images of a folder (or one image file) in name order, one frame each. Unreadable images are
    skipped with a warning and listed in `unreadable`; frame `i` is timed at `i / fps` seconds.
    Every frame starts a new scene unless `sequence` (see the module docstring)."""

    live = False

    def __init__(self, path: str | Path, width: int | None = None, height: int | None = None,
                 fps: float | None = None, recursive: bool = False, warn: bool = True,
                 sequence: bool = False, start: float | None = None) -> None:
        """`recursive`: also images in subfolders. `warn`: log a warning per unreadable image
        (callers that report them themselves pass False). `sequence`, `start`: see the module
        docstring."""
        self.warn = warn
        self.sequence = sequence
        self.path = Path(path)
        self.name = str(self.path)
        if self.path.is_file():
            self.files = [self.path]
        elif self.path.is_dir():
            self.files = list_images(self.path, recursive)
            if not self.files:
                raise UserError(f"{self.path}: folder holds no images "
                                f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        else:
            raise UserError(f"{self.path}: no such file or directory")
        self.fps = float(fps or 30.0)
        self.unreadable: list[Path] = []
        self.decode_ms = 0.0
        self.current: Path | None = None  # file of the last frame read
        self._pos = 0
        self._index = 0
        self.set_start(start)

    def set_start(self, start: float | None) -> None:
        """Time the first frame at `start` (monotonic seconds; None: now). Call before reading."""
        self._t0_wall, self._t0_mono = _clock_origin(start)

    @property
    def skipped(self) -> int:
        return len(self.unreadable)

    @property
    def next_monotonic(self) -> float:
        """The stream time the next frame would have (where a following pass or folder starts)."""
        return self._t0_mono + self._index / self.fps

    def read(self) -> Frame | None:
        t = time.perf_counter()
        while self._pos < len(self.files):
            path = self.files[self._pos]
            self._pos += 1
            image = read_image(path)
            if image is None:
                if self.warn:
                    log.warning("%s: not a readable image; skipped", path)
                self.unreadable.append(path)
                continue
            self.decode_ms = (time.perf_counter() - t) * 1000.0
            self.current = path
            media_s = self._index / self.fps
            frame = Frame(image=image, index=self._index, timestamp=self._t0_wall + media_s,
                          monotonic=self._t0_mono + media_s, source=str(path), new_scene=not self.sequence,
                          received=time.monotonic())
            self._index += 1
            return frame
        return None

    def close(self) -> None:
        self._pos = len(self.files)
