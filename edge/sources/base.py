"""The source protocol: where frames come from (a file, a folder, a camera, a stream)."""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

from edgefer.types import Frame


@runtime_checkable
class Source(Protocol):
    """Yields frames until the end of the stream.

    `read()` returns the next `Frame`, or None at the end of a file or folder (live sources return
    None when the device stops delivering; their supervisor reopens them). `live` says whether
    frames arrive in real time (cameras, streams: keep only the newest) or are read one by one
    (files: never drop). `name` is printable (no passwords).
    """

    name: str
    live: bool

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class CaptureSource:
    """A live source read through an OpenCV `VideoCapture` (V4L2, CSI through GStreamer, streams).
    Subclasses open `self._cap` and set `uri`/`name`; frames are stamped when read."""

    live = True
    uri: str
    name: str
    _cap: Any  # cv2.VideoCapture
    _index: int = 0

    def read(self) -> Frame | None:
        ok, image = self._cap.read()
        if not ok:
            return None
        frame = Frame(image=image, index=self._index, timestamp=time.time(), monotonic=time.monotonic(), source=self.uri)
        self._index += 1
        return frame

    def close(self) -> None:
        self._cap.release()
