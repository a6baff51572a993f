"""A real MJPEG-over-HTTP camera on 127.0.0.1 (as IP cameras and `mjpg-streamer` serve them):
`multipart/x-mixed-replace` JPEG frames at a steady rate. `stalled` keeps connections open but
stops sending frames (a wedged camera); `stop()` closes it (camera gone)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


class MjpegCamera:
    def __init__(self, port: int = 0, fps: float = 25.0, size: tuple[int, int] = (320, 240)) -> None:
        self.fps = fps
        self.size = size
        self.stalled = threading.Event()
        self.frames_sent = 0
        self.connections = 0
        cam = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                cam.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not cam._closed.is_set():
                        if cam.stalled.is_set():
                            time.sleep(0.05)
                            continue
                        jpg = cam.jpeg(i)
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                        cam.frames_sent += 1
                        i += 1
                        time.sleep(1.0 / cam.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._closed = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def jpeg(self, i: int) -> bytes:
        w, h = self.size
        img = np.full((h, w, 3), 60, np.uint8)
        cv2.circle(img, (int(w / 2 + w / 3 * np.sin(i / 10)), h // 2), 20, (0, 200, 255), -1)
        return cv2.imencode(".jpg", img)[1].tobytes()

    def stop(self) -> None:
        self._closed.set()
        self.server.shutdown()
        self.server.server_close()
