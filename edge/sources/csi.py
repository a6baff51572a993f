"""Jetson CSI cameras: a GStreamer `nvarguscamerasrc` pipeline opened by OpenCV.

JetPack's OpenCV is built with GStreamer; pip's `opencv-python` is not, which is the usual reason
a CSI camera "does not open" (`edgefer doctor` says so). The pipeline string is a pure function,
tested here; the capture itself needs a Jetson.
"""

from __future__ import annotations

import re

import cv2

from edgefer.errors import UserError

from .base import CaptureSource


def parse_sensor(uri: str) -> int:
    """`csi://0` -> 0."""
    rest = uri[len("csi://"):] if uri.startswith("csi://") else uri
    rest = rest or "0"
    if not re.fullmatch(r"\d+", rest):
        raise UserError(f"{uri}: expected csi://N with N the sensor id (0, 1, ...)")
    return int(rest)


def gstreamer_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30,
                       output_width: int | None = None, output_height: int | None = None,
                       flip_method: int = 0) -> str:
    """The `nvarguscamerasrc` pipeline that hands BGR frames to OpenCV's `appsink`.

    The ISP delivers NV12 in NVMM (GPU) memory; `nvvidconv` scales/flips and copies it to system
    memory as BGRx, `videoconvert` drops the x. `drop=true max-buffers=1` on the appsink keeps
    only the newest frame, so a slow model never builds a backlog inside GStreamer either.
    """
    if not 0 <= flip_method <= 7:
        raise UserError(f"flip_method must be 0..7, got {flip_method}")
    if width <= 0 or height <= 0 or fps <= 0:
        raise UserError(f"CSI size and frame rate must be positive, got {width}x{height}@{fps}")
    ow = output_width or width
    oh = output_height or height
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, "
        f"format=(string)NV12, framerate=(fraction){int(fps)}/1 ! "
        f"nvvidconv flip-method={flip_method} ! "
        f"video/x-raw, width=(int){ow}, height=(int){oh}, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


class CsiSource(CaptureSource):
    """A CSI sensor on a Jetson through `cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)`."""

    live = True

    def __init__(self, uri: str, width: int | None = None, height: int | None = None, fps: float | None = None) -> None:
        self.uri = uri
        self.name = self.uri
        self.pipeline = gstreamer_pipeline(parse_sensor(uri), width or 1280, height or 720, int(fps or 30))
        self._cap = cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER)
        if not self._cap.isOpened():
            self._cap.release()
            gst = "GStreamer:                   YES" in cv2.getBuildInformation()
            hint = "" if gst else " (this OpenCV is built without GStreamer: use JetPack's python3-opencv)"
            raise OSError(f"cannot open CSI camera {uri}{hint}")
        self._index = 0
