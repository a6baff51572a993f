"""The source protocol: where frames come from (a file, a folder, a camera, a stream)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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
