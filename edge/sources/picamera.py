"""Raspberry Pi cameras through picamera2 (libcamera). Imported lazily: picamera2 exists only on a Pi
(`apt install python3-picamera2`; the `picamera` extra names it).

Picamera2 names formats after libcamera, whose names read the opposite way to numpy's byte order:
`RGB888` arrays are [B, G, R] per pixel (already OpenCV's BGR), `BGR888` are [R, G, B],
`XRGB8888` are [B, G, R, 255], `XBGR8888` are [R, G, B, 255], and `YUV420`/`YVU420` come back as
a (H*3/2, W) planar array. `to_bgr` turns each of them into H x W x 3 BGR; it is the only logic
here and it is tested on recorded arrays.
"""

from __future__ import annotations

import re
import time

import cv2
import numpy as np

from edgefer.errors import UserError
from edgefer.types import Frame

#: picamera2 format -> how to get BGR out of its array.
FORMATS = ("RGB888", "BGR888", "XRGB8888", "XBGR8888", "YUV420", "YVU420")


def to_bgr(array: np.ndarray, fmt: str) -> np.ndarray:
    """Convert one `Picamera2.capture_array()` result in format `fmt` to contiguous H x W x 3 BGR uint8."""
    if fmt not in FORMATS:
        raise ValueError(f"unsupported picamera2 format {fmt!r} (supported: {', '.join(FORMATS)})")
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {array.dtype}")
    if fmt in ("YUV420", "YVU420"):
        if array.ndim != 2 or array.shape[0] % 3 or array.shape[1] % 2:
            raise ValueError(f"{fmt}: expected a (H*3/2, W) array, got {array.shape}")
        code = cv2.COLOR_YUV2BGR_I420 if fmt == "YUV420" else cv2.COLOR_YUV2BGR_YV12
        return cv2.cvtColor(np.ascontiguousarray(array), code)
    channels = 4 if fmt.startswith("X") else 3
    if array.ndim != 3 or array.shape[2] != channels:
        raise ValueError(f"{fmt}: expected H x W x {channels}, got {array.shape}")
    if fmt == "RGB888":
        return np.ascontiguousarray(array)
    if fmt == "BGR888":
        return np.ascontiguousarray(array[:, :, ::-1])
    if fmt == "XRGB8888":
        return np.ascontiguousarray(array[:, :, :3])
    return np.ascontiguousarray(array[:, :, 2::-1])  # XBGR8888: [R, G, B, X] -> [B, G, R]


def parse_camera(uri: str) -> int:
    rest = uri[len("picamera2://"):] if uri.startswith("picamera2://") else uri
    rest = rest or "0"
    if not re.fullmatch(r"\d+", rest):
        raise UserError(f"{uri}: expected picamera2://N with N the camera number")
    return int(rest)


class PicameraSource:
    """A Raspberry Pi camera: `Picamera2(camera_num)` with a video configuration in `fmt`."""

    live = True

    def __init__(self, uri: str, width: int | None = None, height: int | None = None, fps: float | None = None,
                 fmt: str = "RGB888") -> None:
        try:
            from picamera2 import Picamera2  # noqa: PLC0415 (lazy: only on a Raspberry Pi)
        except ImportError as exc:
            raise UserError("picamera2 is not installed: on Raspberry Pi OS run `sudo apt install python3-picamera2` "
                            "(and create venvs with --system-site-packages)") from exc
        self.uri = self.name = uri
        self.fmt = fmt
        try:
            self._cam = Picamera2(camera_num=parse_camera(uri))
        except (IndexError, RuntimeError) as exc:  # no such camera / camera busy
            raise OSError(f"cannot open {uri}: {exc}") from exc
        controls = {"FrameRate": float(fps)} if fps else {}
        config = self._cam.create_video_configuration(main={"size": (width or 640, height or 480), "format": fmt},
                                                      controls=controls, buffer_count=2, queue=False)
        self._cam.configure(config)
        self._cam.start()
        self._index = 0

    def read(self) -> Frame | None:
        try:
            array = self._cam.capture_array("main")
        except RuntimeError:
            return None
        frame = Frame(image=to_bgr(array, self.fmt), index=self._index, timestamp=time.time(),
                      monotonic=time.monotonic(), source=self.uri)
        self._index += 1
        return frame

    def close(self) -> None:
        try:
            self._cam.stop()
        finally:
            self._cam.close()
