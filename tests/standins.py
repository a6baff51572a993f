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


class StandInPipeline:
    """The `Pipeline.process` interface without models: each frame yields `faces` detections of
    which at most `max_faces` are "classified", taking `delay_s` per frame plus `per_face_s` per
    classified face; `hang` (an Event) blocks `process` while set, like a wedged accelerator."""

    def __init__(self, faces: int = 0, max_faces: int = 8, delay_s: float = 0.0, per_face_s: float = 0.0) -> None:
        self.faces, self.max_faces, self.delay_s, self.per_face_s = faces, max_faces, delay_s, per_face_s
        self.hang = threading.Event()
        self.unhang = threading.Event()
        self.classified: list[int] = []
        self.closed = False
        self.non_finite = 0

    def process(self, frame: Frame):
        from edgefer.types import Face, FaceResult, FrameResult

        if self.hang.is_set():
            self.unhang.wait()
        t0 = time.perf_counter()
        n = min(self.faces, self.max_faces)
        time.sleep(self.delay_s + self.per_face_s * n)
        self.classified.append(n)
        probs = np.full(7, 1 / 7, np.float32)
        faces = [FaceResult(face=Face(box=np.array([10 * i, 0, 8, 8], np.float32), score=0.9,
                                      landmarks=np.zeros((5, 2), np.float32)),
                            probabilities=probs, intensity=np.zeros(7, np.float32)) for i in range(n)]
        return FrameResult(frame=frame, faces=faces, timings_ms={"total": (time.perf_counter() - t0) * 1000},
                           faces_detected=self.faces)

    def close(self) -> None:
        self.closed = True


class RecordingSink:
    """A sink that keeps what it was given (bounded), timestamps included."""

    name = "recording"

    def __init__(self) -> None:
        self.results: list = []
        self.events: list = []
        self.statuses: list[tuple[float, dict]] = []
        self.closed = False

    def publish(self, result) -> None:
        self.results.append(result)
        del self.results[:-500]

    def event(self, event) -> None:
        self.events.append(event)

    def status(self, status) -> None:
        self.statuses.append((time.monotonic(), status))

    def close(self) -> None:
        self.closed = True
