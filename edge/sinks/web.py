"""The local web overlay: a small HTML page, an MJPEG stream of the newest annotated frame, the newest
result as JSON.

Off by default (no socket at all). When enabled it binds 127.0.0.1 unless told otherwise; any other
address requires HTTP Basic credentials (see `httpauth`). Routes:

- `/`             the page (`edge/web/index.html`): the stream plus a live list of faces (track id,
                  emotion, intensity bars) and the frame rate, polled from `/results.json`
- `/stream.mjpg`  multipart/x-mixed-replace JPEG stream, at most `max_fps` frames per second per client
- `/frame.jpg`    the newest annotated frame, once
- `/results.json` the newest `FrameResult.to_dict()` plus `fps`
- `/healthz`      liveness (no credentials needed; carries no image or face data): frames published,
                  `uptime_s` and `last_frame_age_s` (seconds since the newest frame came from its
                  source), both on `time.monotonic()` alone, so a wall-clock jump changes neither and
                  neither is ever negative (a file's media clock is not used: see `Frame.arrived`)

The pipeline never waits for a client: `publish` only swaps a reference to the newest result. Drawing,
blurring and JPEG encoding happen in the HTTP threads, at most once per published frame however many
clients watch, and not at all while nobody watches. A client that stops reading is dropped after
`send_timeout_s`; at most `max_clients` streams run at once. While no new frame comes (camera away), each stream
repeats the newest frame once a second.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
from pydantic import Field

from edgefer.types import FrameResult

from ..draw import draw_results
from .base import NullSink
from .httpauth import HttpEndpointConfig, bind_server, check_basic_auth, resolve_credentials, send_unauthorized

log = logging.getLogger(__name__)

BOUNDARY = "edgeferframe"
KEEPALIVE_S = 1.0


class WebConfig(HttpEndpointConfig):
    """The local overlay page: live MJPEG stream with boxes and labels, results as JSON."""

    port: int = Field(8080, ge=0, le=65535, description="TCP port of the overlay page (0 picks a free one).")
    blur_faces: bool = Field(False, description="Blur every detected face in the streamed image (boxes and labels stay).")
    jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality of the stream, 10..100.")
    max_fps: float = Field(10.0, gt=0, le=60, description="Most frames per second sent to each client.")
    max_clients: int = Field(4, ge=1, le=64, description="Most simultaneous streams; more get 503.")
    send_timeout_s: float = Field(10.0, gt=0, le=300, description="A client that accepts no data for this long is dropped.")


def blur_faces(image: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
    """Pixelate each face box (grown by 15% per side) in place, coarse enough that the face is not
    recognisable: at most 8 blocks across a face."""
    h, w = image.shape[:2]
    for box in boxes:
        x, y, bw, bh = (float(v) for v in box)
        gx, gy = 0.15 * bw, 0.15 * bh
        x0, y0 = max(0, int(x - gx)), max(0, int(y - gy))
        x1, y1 = min(w, int(np.ceil(x + bw + gx))), min(h, int(np.ceil(y + bh + gy)))
        if x1 <= x0 or y1 <= y0:
            continue
        roi = image[y0:y1, x0:x1]
        small = cv2.resize(roi, (min(8, x1 - x0), min(8, y1 - y0)), interpolation=cv2.INTER_AREA)
        image[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return image


def content_security_policy(page: bytes) -> str:
    """A policy that lets the page run exactly its own inline script and style (by hash) and talk only
    to this server."""

    def hashes(tag: bytes) -> str:
        found = re.findall(rb"<" + tag + rb"[^>]*>(.*?)</" + tag + rb">", page, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'" for body in found)

    return (f"default-src 'none'; img-src 'self'; connect-src 'self'; script-src {hashes(b'script')}; "
            f"style-src {hashes(b'style')}; base-uri 'none'; form-action 'none'")


class _Published:
    """One published result and, once some client asked for it, its JPEG (encoded once, shared)."""

    __slots__ = ("result", "seq", "fps", "_jpeg", "_lock")

    def __init__(self, result: FrameResult, seq: int, fps: float | None) -> None:
        self.result = result
        self.seq = seq
        self.fps = fps
        self._jpeg: bytes | None = None
        self._lock = threading.Lock()

    def jpeg(self, sink: WebSink) -> bytes:
        with self._lock:
            if self._jpeg is None:
                self._jpeg = sink.encode(self.result, self.fps)
                sink._count("frames_encoded", 1)
            return self._jpeg


class WebSink(NullSink):
    """The overlay web server as a sink. With `enabled = false` (the default) it opens nothing and keeps
    no reference to any frame."""

    name = "web"

    def __init__(self, config: WebConfig | None = None) -> None:
        self._health: dict[str, Any] = {}  # the model and its shadow check, from `status`
        self.started = time.monotonic()
        self.config = config or WebConfig()
        self._cond = threading.Condition()
        self._latest: _Published | None = None
        self._seq = 0
        self._fps: float | None = None
        self._last_monotonic: float | None = None
        self._closed = threading.Event()
        self.frames_encoded = 0  # JPEGs made: at most one per published frame, none while nobody watches
        self.streams = 0  # streams being served now
        self._counts_lock = threading.Lock()
        self.server = None
        self._thread: threading.Thread | None = None
        if not self.config.enabled:
            return
        self._credentials = resolve_credentials(self.config, "web")
        self._streams = threading.BoundedSemaphore(self.config.max_clients)
        self._page = (resources.files("edgefer.edge") / "web" / "index.html").read_bytes()
        self._csp = content_security_policy(self._page)
        handler = type("WebHandler", (_Handler,), {"sink": self, "timeout": self.config.send_timeout_s})
        self.server = bind_server(self.config.host, self.config.port, handler, "web")
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="edgefer-web", daemon=True
        )
        self._thread.start()
        log.info("overlay page on http://%s:%d/", *self.address)

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) actually bound, or None when disabled."""
        if self.server is None:
            return None
        host, port = self.server.server_address[:2]
        return host, port

    @property
    def url(self) -> str | None:
        if self.address is None:
            return None
        host, port = self.address
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def publish(self, result: FrameResult) -> None:
        if self.server is None or self._closed.is_set():
            return
        now = result.frame.monotonic
        if self._last_monotonic is not None and now > self._last_monotonic:
            inst = 1.0 / (now - self._last_monotonic)
            self._fps = inst if self._fps is None else 0.9 * self._fps + 0.1 * inst
        self._last_monotonic = now
        with self._cond:
            self._seq += 1
            self._latest = _Published(result, self._seq, self._fps)
            self._cond.notify_all()

    def status(self, status: dict[str, Any]) -> None:
        """Keeps what `/healthz` reports besides frames: the model running and its shadow check."""
        self._health = {k: status[k] for k in ("classifier", "shadow") if k in status}

    def _count(self, name: str, delta: int) -> None:
        with self._counts_lock:
            setattr(self, name, getattr(self, name) + delta)

    def stats(self) -> dict[str, int]:
        """For the runner's status snapshot (it reports them as `web_streams`, `web_frames_encoded`)."""
        return {"streams": self.streams, "frames_encoded": self.frames_encoded}

    def render(self, result: FrameResult, fps: float | None = None) -> np.ndarray:
        """The annotated BGR image the stream shows for `result` (a new array; the frame is not touched)."""
        image = result.frame.image
        if self.config.blur_faces:
            image = blur_faces(image.copy(), [f.face.box for f in result.faces])
        return draw_results(image, result.faces, fps=fps)

    def encode(self, result: FrameResult, fps: float | None = None) -> bytes:
        """`render` as JPEG (4:4:4 chroma, so thin coloured boxes and labels stay crisp)."""
        params = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality,
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
        ok, buf = cv2.imencode(".jpg", self.render(result, fps), params)
        if not ok:
            raise RuntimeError("cv2.imencode failed on an annotated frame")
        return buf.tobytes()

    def latest(self) -> _Published | None:
        return self._latest

    def wait_newer(self, seq: int, timeout: float) -> _Published | None:
        """The newest published frame if it is newer than `seq`, waiting up to `timeout`; None on
        timeout or close."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed.is_set() or (self._latest is not None and self._latest.seq != seq), timeout
            )
            if self._closed.is_set() or self._latest is None or self._latest.seq == seq:
                return None
            return self._latest

    def close(self) -> None:
        """Stop the server and end every stream; returns within about a second."""
        if self._closed.is_set():
            return
        self._closed.set()
        with self._cond:
            self._latest = None
            self._cond.notify_all()
        if self.server is not None:
            self.server.stop()
            if self._thread is not None:
                self._thread.join(timeout=2.0)


class _Handler(BaseHTTPRequestHandler):
    sink: WebSink
    protocol_version = "HTTP/1.1"
    server_version = "edgefer"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _headers(self, status: int, ctype: str, length: int | None, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()

    def _send(self, status: int, ctype: str, body: bytes, extra: dict[str, str] | None = None) -> None:
        self._headers(status, ctype, len(body), extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any) -> None:
        self._send(200, "application/json", json.dumps(obj).encode())

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        sink = self.sink
        if path == "/healthz":
            pub = sink.latest()
            now = time.monotonic()  # after taking the frame: a newer one could not be younger than now
            age = None if pub is None else round(now - pub.result.frame.arrived, 3)
            self._json({"status": "ok", "frames": sink._seq, "uptime_s": round(now - sink.started, 1),
                        "last_frame_age_s": age, **sink._health})
            return
        if not check_basic_auth(self.headers.get("Authorization"), sink._credentials):
            log.info("web: rejected request without valid credentials from %s", self.client_address[0])
            send_unauthorized(self)
            return
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", sink._page, {"Content-Security-Policy": sink._csp})
        elif path == "/results.json":
            pub = sink.latest()
            if pub is None:
                self._json({"frame": None, "faces": [], "fps": None})
            else:
                d = pub.result.to_dict()
                d["fps"] = None if pub.fps is None else round(pub.fps, 2)
                self._json(d)
        elif path == "/frame.jpg":
            pub = sink.latest()
            if pub is None:
                self._send(503, "text/plain; charset=utf-8", b"no frame yet\n")
                return
            try:
                data = pub.jpeg(sink)
            except Exception:  # a bug in drawing or encoding: logged with its traceback, the server lives on
                log.exception("web: cannot draw frame %d", pub.result.frame.index)
                self._send(500, "text/plain; charset=utf-8", b"cannot draw this frame\n")
                return
            self._send(200, "image/jpeg", data)
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _stream(self) -> None:
        sink = self.sink
        if not sink._streams.acquire(blocking=False):
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", b"too many streams\n")
            return
        self.close_connection = True
        sink._count("streams", 1)
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            # Each part ends with the next boundary, so a browser shows a frame as soon as it arrives
            # rather than when the following one does.
            self.wfile.write(f"--{BOUNDARY}\r\n".encode())
            interval = 1.0 / sink.config.max_fps
            seq, sent_at = -1, -interval
            while not sink._closed.is_set():
                # Without a new frame for a second, the newest one is sent again: browsers show a part
                # only once the next one starts, and a write is how a vanished client is noticed.
                pub = sink.wait_newer(seq, timeout=KEEPALIVE_S) or sink.latest()
                if pub is None:
                    continue
                delay = sent_at + interval - time.monotonic()
                if delay > 0:
                    if sink._closed.wait(delay):
                        break
                    pub = sink.latest() or pub
                data = pub.jpeg(sink)
                self.wfile.write(
                    f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                    + data
                    + f"\r\n--{BOUNDARY}\r\n".encode()
                )
                self.wfile.flush()
                seq, sent_at = pub.seq, time.monotonic()
        except OSError as e:  # client went away or stopped reading (socket timeout)
            log.debug("web: stream to %s ended: %s", self.client_address[0], e)
        except Exception:  # a bug in drawing or encoding: end this stream (the page reconnects), log it
            log.exception("web: stream to %s ended: cannot draw a frame", self.client_address[0])
        finally:
            sink._count("streams", -1)
            sink._streams.release()
