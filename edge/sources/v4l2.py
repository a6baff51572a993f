"""V4L2 cameras (USB webcams, Pi/Jetson V4L2 nodes) through OpenCV's V4L2 backend.

`v4l2:///dev/video0`, `v4l2://0` or a bare `/dev/videoN` path. The capture runs in the
supervisor's reader thread (`capture.py`); this class only opens the device and reads.
"""

from __future__ import annotations

import os
import re

import cv2

from edgefer.errors import UserError

from .base import CaptureSource


def parse_device(uri: str) -> int | str:
    """`v4l2:///dev/video2` -> "/dev/video2"; `v4l2://2`, `2` -> 2 (an OpenCV index)."""
    rest = uri[len("v4l2://"):] if uri.startswith("v4l2://") else uri
    rest = rest or "0"
    if re.fullmatch(r"\d+", rest):
        return int(rest)
    if not rest.startswith("/"):
        raise UserError(f"{uri}: expected v4l2:///dev/videoN or v4l2://N")
    return rest


class V4l2Source(CaptureSource):
    """A V4L2 device read with `cv2.VideoCapture(..., cv2.CAP_V4L2)`; BGR frames.

    Raises `OSError` when the device cannot be opened (the supervisor retries with backoff).
    `read()` returns None when the device stops delivering (unplugged): the supervisor reopens it.
    """

    live = True

    def __init__(self, uri: str, width: int | None = None, height: int | None = None, fps: float | None = None) -> None:
        self.uri = uri
        self.name = self.uri
        self.device = parse_device(uri)
        if isinstance(self.device, str) and not os.path.exists(self.device):
            raise OSError(f"cannot open camera {self.device}: no such device")
        self._cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not self._cap.isOpened():
            self._cap.release()
            raise OSError(f"cannot open camera {self.device}")
        # Small driver queue: the newest frame is what we want (supported by the V4L2 backend).
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if width and height:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        self._index = 0
