"""Network streams (`rtsp://`, `http(s)://` MJPEG or HLS) through OpenCV's FFmpeg backend.

FFmpeg's own read timeout bounds a blocked `read()`; the supervisor (`capture.py`) additionally
declares the stream stalled after `stall_timeout_s` without a frame and reopens it.
"""

from __future__ import annotations

import os

import cv2

from .base import CaptureSource

#: RTSP over TCP (no smeared frames from lost UDP packets), 5 s socket timeout (microseconds).
FFMPEG_OPTIONS = "rtsp_transport;tcp|stimeout;5000000|timeout;5000000"


def redact(uri: str) -> str:
    """The URI without a password (`rtsp://user:secret@host` -> `rtsp://user:***@host`), for logs."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    creds, _, host = rest.partition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class StreamSource(CaptureSource):
    """An RTSP/HTTP stream; BGR frames. Raises `OSError` when the stream cannot be opened."""

    live = True

    def __init__(self, uri: str, width: int | None = None, height: int | None = None, fps: float | None = None) -> None:
        self.uri = redact(uri)
        self.name = self.uri
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_OPTIONS)
        self._cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            self._cap.release()
            raise OSError(f"cannot open stream {self.uri}")
        self._index = 0
