"""JSON lines: one object per processed frame (`FrameResult.to_dict()`), to a file or stdout.

Each line is written with one `os.write` on an unbuffered descriptor, so a failed write never
leaves half a line in a buffer to be retried and duplicated later. A full disk (ENOSPC), a
failing device (EIO) or a closed reader (EPIPE) costs that line, is counted in `write_errors`
and logged once per kind of error; the daemon goes on.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from typing import Any

from edgefer.errors import UserError
from edgefer.types import FrameResult

from .base import NullSink

log = logging.getLogger(__name__)


class JsonlSink(NullSink):
    """`path`: a file (appended to, created 0640) or "-" for standard output."""

    name = "jsonl"

    def __init__(self, path: str, include_empty: bool = True) -> None:
        self.path = path
        self.include_empty = include_empty
        self.lines = 0
        self.write_errors = 0
        self.errors_by_kind: dict[str, int] = {}
        self.last_error: str | None = None
        #: lines that could not be written, known once closed (the service reports them: exit 75)
        self.undelivered = 0
        if path == "-":
            self._fd = os.dup(1)
            self._own = True
        else:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            except OSError as exc:
                raise UserError(f"{path}: cannot open for writing JSON lines ({exc.strerror})") from None
            self._own = True

    def publish(self, result: FrameResult) -> None:
        if not self.include_empty and not result.faces:
            return
        self.write_line(result.to_dict())

    def write_line(self, obj: dict[str, Any]) -> bool:
        """Write one object as a line; False (and counted) if the line could not be written."""
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self.write_errors += 1
            self.last_error = exc.strerror or str(exc)
            kind = errno.errorcode.get(exc.errno or 0, "EUNKNOWN")
            if kind not in self.errors_by_kind:
                log.error("jsonl %s: %s; lines are dropped (and counted) while this lasts", self.path, exc.strerror)
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
            return False
        self.lines += 1
        return True

    def stats(self) -> dict[str, int]:
        return {"jsonl_lines": self.lines, "jsonl_write_errors": self.write_errors}

    def close(self) -> None:
        self.undelivered = self.write_errors
        if self._own and self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
