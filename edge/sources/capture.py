"""Supervised capture: a reader thread that keeps only the newest frame, and a supervisor that
reopens a failed or stalled source with exponential backoff. The service never exits because a
camera is missing: it reports `camera_unavailable` and keeps trying.

    Capture(open_source, live=True) --start()--> supervisor thread
        opens the source (retrying with backoff 0.5 s, 1 s, 2 s ... up to 30 s)
        starts a reader thread per opened source, watches it for stalls
    reader thread: source.read() -> validate -> newest-frame slot
    consumer: capture.get(timeout) -> Frame | None

Live sources (cameras, streams) overwrite an unread frame (counted as `skipped`), so a slow model
never builds a backlog and latency stays flat. Files and folders are read frame by frame: the
reader waits for the consumer instead of skipping, and ends at the file's end (or first error).
A live source's read blocked for longer than `stall_timeout_s` marks it `stalled`; its reader
is abandoned (it closes its own source if `read()` ever returns: closing a capture from another
thread while it reads is unsafe in OpenCV) and a fresh source is opened. Every duration is measured on `time.monotonic()`, so wall-clock
jumps (NTP, a Pi without RTC) cause no false stalls and no reconnect storm.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from edgefer.types import Frame

log = logging.getLogger(__name__)


class CaptureStatus(str, enum.Enum):
    STARTING = "starting"
    UNAVAILABLE = "camera_unavailable"  # no source open; retrying with backoff
    STREAMING = "streaming"
    STALLED = "stalled"  # open, but no frame within the timeout; being reopened
    ENDED = "ended"  # a file or folder reached its end
    STOPPED = "stopped"


class FrameValidator:
    """Drops frames a source should never have produced: not an array, not uint8, not H x W x 3,
    smaller than `min_size`, or, with `same_size` (videos, cameras, streams), a different shape from the
    first valid frame since the source was opened (a truncated buffer, a half-decoded frame). A folder of
    images may mix sizes (`same_size=False`). `dropped` counts them, by reason."""

    def __init__(self, min_size: int = 16, same_size: bool = True) -> None:
        self.min_size = min_size
        self.same_size = same_size
        self.expected: tuple[int, ...] | None = None
        self.reasons: Counter[str] = Counter()

    @property
    def dropped(self) -> int:
        return sum(self.reasons.values())

    def reset(self) -> None:
        """A new source may have a new resolution."""
        self.expected = None

    def problem(self, frame: object) -> str | None:
        """Why `frame` is unusable, or None when it is a valid frame."""
        image = getattr(frame, "image", None)
        if not isinstance(image, np.ndarray):
            return "not_an_image"
        if image.dtype != np.uint8:
            return "dtype"
        if image.ndim != 3 or image.shape[2] != 3:
            return "shape"
        if image.shape[0] < self.min_size or image.shape[1] < self.min_size:
            return "too_small"
        if self.same_size and self.expected is not None and image.shape != self.expected:
            return "size_changed"
        return None

    def accept(self, frame: object) -> bool:
        reason = self.problem(frame)
        if reason is not None:
            self.reasons[reason] += 1
            return False
        if self.expected is None:
            self.expected = frame.image.shape  # type: ignore[attr-defined]
        return True


@dataclass
class CaptureStats:
    captured: int = 0  # frames read from sources
    delivered: int = 0  # frames handed to the consumer
    skipped: int = 0  # newer frame arrived before the consumer took the older one (live only)
    dropped_invalid: int = 0  # corrupt / truncated / wrongly shaped
    opens: int = 0  # successful opens
    open_failures: int = 0
    reconnects: int = 0  # successful opens after the first
    stalls: int = 0
    source_errors: int = 0  # read() raised
    abandoned_readers: int = 0  # readers left blocked in read() after a stall

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def backoff_delays(initial: float, maximum: float):
    """initial, 2*initial, 4*initial, ... capped at maximum, forever."""
    delay = initial
    while True:
        yield delay
        delay = min(delay * 2.0, maximum)


class Capture:
    """A supervised source. `open_source()` returns an opened `Source` or raises (any exception:
    the camera is absent, busy, the file does not exist yet); it is called again after each failure.

    `live`: keep only the newest frame (cameras, streams) rather than every frame (files).
    `loop`: reopen a finished file instead of ending (soak tests, demos).
    `same_size`: frames must keep the first frame's size (see `FrameValidator`); False for image folders.
    """

    def __init__(self, open_source: Callable[[], object], *, live: bool, name: str = "",
                 stall_timeout_s: float = 5.0, backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 min_size: int = 16, loop: bool = False, on_status: Callable[[CaptureStatus], None] | None = None,
                 same_size: bool = True) -> None:
        if stall_timeout_s <= 0 or backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("stall_timeout_s, backoff_initial_s must be > 0 and backoff_max_s >= backoff_initial_s")
        self._open = open_source
        self.live = live
        self.name = name
        self.loop = loop
        self.stall_timeout_s = stall_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.validator = FrameValidator(min_size, same_size)
        self.stats = CaptureStats()
        self.on_status = on_status
        self._status = CaptureStatus.STARTING
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # a reader ended, or stop(): the supervisor acts at once
        self._gen = 0
        self._in_read = False
        self._read_started = 0.0
        self._reader: threading.Thread | None = None
        self._results: dict[int, str] = {}  # reader generation -> "eof" | "error"
        self._supervisor: threading.Thread | None = None
        self._seq = 0
        self.last_error = ""

    # -- consumer side ------------------------------------------------------------------------

    @property
    def status(self) -> CaptureStatus:
        return self._status

    @property
    def ended(self) -> bool:
        """True once a non-looping file has been read to its end and its last frame taken."""
        with self._cond:
            return self._status in (CaptureStatus.ENDED, CaptureStatus.STOPPED) and self._slot is None

    def start(self) -> Capture:
        self._supervisor = threading.Thread(target=self._supervise, name=f"capture-supervisor{self.name and ':' + self.name}",
                                            daemon=True)
        self._supervisor.start()
        return self

    def get(self, timeout: float) -> Frame | None:
        """The newest frame not yet taken, waiting up to `timeout` seconds; None if there is none."""
        with self._cond:
            if self._slot is None:
                self._cond.wait_for(lambda: self._slot is not None or self._status in (CaptureStatus.ENDED, CaptureStatus.STOPPED),
                                    timeout=timeout)
            frame, self._slot = self._slot, None
            if frame is not None:
                self.stats.delivered += 1
                self._cond.notify_all()
            return frame

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the supervisor and the current reader; returns within about `timeout` seconds even if
        a reader is blocked in `read()` (it is a daemon thread and closes its source when it returns)."""
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._gen += 1
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in (self._supervisor, self._reader):
            if thread is not None and thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._set_status(CaptureStatus.STOPPED)

    # -- supervisor ---------------------------------------------------------------------------

    def _set_status(self, status: CaptureStatus) -> None:
        with self._cond:
            changed = status != self._status
            self._status = status
            self._cond.notify_all()
        if changed:
            log.info("source %s: %s", self.name, status.value)
            if self.on_status is not None:
                self.on_status(status)

    def _supervise(self) -> None:
        delays = backoff_delays(self.backoff_initial_s, self.backoff_max_s)
        while not self._stop.is_set():
            try:
                source = self._open()
            except Exception as exc:  # the camera is absent / busy / the stream is down: retry
                self.stats.open_failures += 1
                delay = next(delays)
                if str(exc) != self.last_error:
                    log.warning("source %s unavailable (%s); retrying every <= %.0f s", self.name, exc, self.backoff_max_s)
                self.last_error = str(exc)
                self._set_status(CaptureStatus.UNAVAILABLE)
                self._stop.wait(delay)
                continue
            self.last_error = ""
            if self.stats.opens:
                self.stats.reconnects += 1
            self.stats.opens += 1
            opened_at = time.monotonic()
            outcome = self._watch(source)
            if outcome == "stop":
                break
            if not self.live and not self.loop:  # a file ends at its end, or at an error (never replayed)
                self._set_status(CaptureStatus.ENDED)
                return
            if outcome == "eof" and self.loop:
                delays = backoff_delays(self.backoff_initial_s, self.backoff_max_s)
                continue  # a looping file: reopen at once
            # A source that streamed for a good while starts its backoff afresh; one that keeps
            # failing right after opening backs off further each time (no reconnect storm).
            if time.monotonic() - opened_at >= self.backoff_max_s:
                delays = backoff_delays(self.backoff_initial_s, self.backoff_max_s)
            self._stop.wait(next(delays))

    def _watch(self, source: object) -> str:
        """Run a reader for `source` until it ends ("eof"), fails ("error"), stalls ("stall") or we stop."""
        with self._cond:
            self._gen += 1
            gen = self._gen
            self._results.clear()
            self._in_read = False
        self.validator.reset()
        reader = threading.Thread(target=self._read_loop, args=(source, gen), name=f"capture-reader:{gen}", daemon=True)
        self._reader = reader
        reader.start()
        poll = min(0.1, self.stall_timeout_s / 4)
        while True:
            self._wake.wait(poll)
            self._wake.clear()
            if self._stop.is_set():
                return "stop"
            if gen in self._results or not reader.is_alive():
                return self._results.get(gen, "error")
            with self._cond:  # only live sources stall; a slow file read is waited for
                stalled = self.live and self._in_read and time.monotonic() - self._read_started > self.stall_timeout_s
                if stalled:
                    self._gen += 1  # the reader exits (and closes its source) if read() ever returns
            if stalled:
                self.stats.stalls += 1
                self.stats.abandoned_readers += 1
                log.warning("source %s: no frame for %.1f s; reopening", self.name, self.stall_timeout_s)
                self._set_status(CaptureStatus.STALLED)
                return "stall"

    # -- reader -------------------------------------------------------------------------------

    def _read_loop(self, source: object, gen: int) -> None:
        result = "eof"
        try:
            while gen == self._gen:
                with self._cond:
                    self._read_started = time.monotonic()
                    self._in_read = True
                try:
                    frame = source.read()  # type: ignore[attr-defined]
                finally:
                    with self._cond:
                        self._in_read = False
                if gen != self._gen:
                    return
                if frame is None:
                    return
                self.stats.captured += 1
                if not self.validator.accept(frame):
                    self.stats.dropped_invalid += 1
                    continue
                if self.live:
                    frame.index = self._seq
                self._seq += 1
                if self._status is not CaptureStatus.STREAMING:
                    self._set_status(CaptureStatus.STREAMING)
                self._put(frame, gen)
        except Exception as exc:  # a source failing mid-stream is reopened, never fatal
            result = "error"
            self.stats.source_errors += 1
            log.warning("source %s failed: %s", self.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        finally:
            try:
                source.close()  # type: ignore[attr-defined]
            except Exception as exc:
                log.debug("closing source %s: %s", self.name, exc)
            self._results[gen] = result
            self._wake.set()

    def _put(self, frame: Frame, gen: int) -> None:
        with self._cond:
            if self.live:
                if self._slot is not None:
                    self.stats.skipped += 1
            else:  # files: wait for the consumer, never skip
                self._cond.wait_for(lambda: self._slot is None or gen != self._gen)
                if gen != self._gen:
                    return
            self._slot = frame
            self._cond.notify_all()
