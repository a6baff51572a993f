"""The on-device overlay window (OpenCV HighGUI). Only where a display exists: `available()` says
why not otherwise (no $DISPLAY / $WAYLAND_DISPLAY, or a headless OpenCV build)."""

from __future__ import annotations

import os
import threading

from edgefer.errors import UserError
from edgefer.types import FrameResult

from .base import NullSink

WINDOW = "edgefer"


def display_problem() -> str | None:
    """None when a window can be shown here, else the reason (one line)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset); use the web overlay ([web] enabled = true) instead"
    import cv2

    if "GUI:                           NONE" in cv2.getBuildInformation():
        return "this OpenCV has no GUI support (opencv-python-headless); install opencv-python or use the web overlay"
    return None


class DisplaySink(NullSink):
    """Draws each published frame with its overlay. `q` or Esc in the window sets `quit`, which the
    run loop treats as a stop request."""

    name = "display"

    def __init__(self) -> None:
        problem = display_problem()
        if problem:
            raise UserError(f"--display: {problem}")
        import cv2

        self._cv2 = cv2
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        self.quit = threading.Event()
        self.fps: float | None = None

    def publish(self, result: FrameResult) -> None:
        from edgefer.edge.draw import draw_results

        self._cv2.imshow(WINDOW, draw_results(result.frame.image, result.faces, self.fps))
        if self._cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.quit.set()

    def status(self, status: dict) -> None:
        self.fps = status.get("fps")

    def close(self) -> None:
        try:
            self._cv2.destroyWindow(WINDOW)
        except self._cv2.error:
            pass
