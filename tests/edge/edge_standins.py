"""Small real stand-ins for cameras (no camera exists here): sources that speak the same `Source`
protocol (`read() -> Frame | None`, `close()`) and yield generated frames, with injectable faults."""

from __future__ import annotations

import threading
import time

import numpy as np

from edgefer.types import Frame


def make_image(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = i % 256
    img[h // 4: h // 2, (i % w): (i % w) + 8] = 255
    return img


def bad_image(kind: str, h: int = 48, w: int = 64) -> object:
    """Frames a broken driver or decoder produces."""
    good = make_image(0, h, w)
    return {
        "none": None,
        "float": good.astype(np.float32),
        "gray": good[:, :, 0],
        "bgra": np.dstack([good, good[:, :, :1]]),
        "truncated": good[: h // 2],
        "flat": good.reshape(-1)[: h * w],
        "resized": make_image(0, h * 2, w * 2),
    }[kind]


BAD_KINDS = ("none", "float", "gray", "bgra", "truncated", "flat", "resized")


class GeneratedSource:
    """`n` frames (None after that), paced at `fps` (0: as fast as read), optionally with bad
    frames at `bad` indices and a stall (read blocks until `release` is set) at index `stall_at`."""

    live = True

    def __init__(self, n: int = 10_000, fps: float = 0.0, bad: dict[int, str] | None = None,
                 stall_at: int | None = None, h: int = 48, w: int = 64) -> None:
        self.n, self.fps, self.bad, self.stall_at, self.h, self.w = n, fps, bad or {}, stall_at, h, w
        self.i = 0
        self.release = threading.Event()
        self.closed = False
        self._next = time.monotonic()

    def read(self) -> Frame | None:
        if self.i >= self.n:
            return None
        if self.stall_at is not None and self.i == self.stall_at:
            self.release.wait()
            return None
        if self.fps:
            self._next += 1.0 / self.fps
            delay = self._next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        i = self.i
        self.i += 1
        image = bad_image(self.bad[i], self.h, self.w) if i in self.bad else make_image(i, self.h, self.w)
        return Frame(image=image, index=i, timestamp=time.time(), monotonic=time.monotonic(), source="generated")

    def close(self) -> None:
        self.closed = True
        self.release.set()


class AppearingCamera:
    """A source factory that raises like an absent camera until `appear` is set; records open attempts."""

    def __init__(self, make=lambda: GeneratedSource(fps=100)) -> None:
        self.appear = threading.Event()
        self.attempts: list[float] = []
        self.sources: list[object] = []
        self.make = make

    def __call__(self) -> object:
        self.attempts.append(time.monotonic())
        if not self.appear.is_set():
            raise OSError("cannot open camera /dev/video0")
        src = self.make()
        self.sources.append(src)
        return src
