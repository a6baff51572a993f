"""The overlay web sink: routes, MJPEG stream, Basic auth, bounded behaviour with slow clients, and the
page rendered in a real headless Chromium showing a real face with its box and label."""

from __future__ import annotations

import base64
import gc
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import replace

import cv2
import numpy as np
import pytest
from chromium import Chromium, find_chromium
from pydantic import ValidationError
from realfaces import framed_faces, open_pipeline

from edgefer.contract import CLASS_NAMES
from edgefer.edge.draw import COLOURS
from edgefer.edge.sinks.base import Sink
from edgefer.edge.sinks.web import BOUNDARY, WebConfig, WebSink, blur_faces
from edgefer.errors import ConfigError
from edgefer.types import Frame, FrameResult


@pytest.fixture(scope="module")
def results(photos_dir, yunet_path) -> list[FrameResult]:
    pipeline = open_pipeline(yunet_path)
    try:
        return framed_faces(pipeline, photos_dir / "happy", 3)
    finally:
        pipeline.close()


@pytest.fixture
def sink():
    s = WebSink(WebConfig(enabled=True, port=0))
    yield s
    s.close()


def fresh(result: FrameResult, index: int, image: np.ndarray | None = None) -> FrameResult:
    """The same faces on a new frame (own image array), as the pipeline would publish it."""
    img = result.frame.image.copy() if image is None else image
    frame = Frame(image=img, index=index, timestamp=time.time(), monotonic=time.monotonic(), source="test")
    return replace(result, frame=frame)


def get(url: str, auth: tuple[str, str] | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def read_parts(host: str, port: int, n: int, timeout: float = 10.0, auth_header: str = "") -> list[bytes]:
    """The first `n` JPEG parts of /stream.mjpg, parsed by their Content-Length. ConnectionError when
    the server ends the stream first."""
    s = socket.create_connection((host, port), timeout=timeout)

    def more() -> bytes:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the stream")
        return chunk

    try:
        s.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n{auth_header}\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += more()
        head, buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert f"multipart/x-mixed-replace; boundary={BOUNDARY}".encode() in head
        parts = []
        while len(parts) < n:
            while b"\r\n\r\n" not in buf:
                buf += more()
            part_head, buf = buf.split(b"\r\n\r\n", 1)
            assert part_head.startswith(f"--{BOUNDARY}\r\n".encode()), part_head[:80]
            length = int(part_head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            while len(buf) < length + 2:
                buf += more()
            parts.append(buf[:length])
            buf = buf[length + 2:]
        return parts
    finally:
        s.close()


# --- off by default -------------------------------------------------------------------------------


def test_disabled_by_default_opens_nothing_and_keeps_no_frame(results):
    sink = WebSink()
    assert isinstance(sink, Sink)
    assert sink.config.enabled is False and sink.server is None and sink.address is None
    images = []
    for i in range(5):
        r = fresh(results[0], i)
        images.append(weakref.ref(r.frame.image))
        sink.publish(r)
        del r
    gc.collect()
    assert all(ref() is None for ref in images), "a disabled web sink kept a frame"
    assert sink.latest() is None
    sink.close()


def test_default_config_file_section_is_this_one_and_off():
    from edgefer.config import Config

    config = Config()
    assert isinstance(config.web, WebConfig)
    assert config.web.enabled is False and config.web.host == "127.0.0.1"


# --- routes ---------------------------------------------------------------------------------------


def test_routes(sink, results):
    base = sink.url
    assert base.startswith("http://127.0.0.1:")
    status, headers, body = get(base + "results.json")
    assert status == 200 and json.loads(body) == {"frame": None, "faces": [], "fps": None}
    assert get(base + "frame.jpg")[0] == 503

    r = fresh(results[0], 7)
    sink.publish(r)
    status, headers, body = get(base)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="stream.mjpg"' in body and b"results.json" in body
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "unsafe" not in csp

    status, headers, body = get(base + "results.json")
    data = json.loads(body)
    expected = r.to_dict()
    assert {k: data[k] for k in expected} == json.loads(json.dumps(expected))
    assert data["faces"][0]["track_id"] == 1

    status, headers, body = get(base + "frame.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert headers["Cache-Control"] == "no-store"
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == r.frame.image.shape
    # the served image is the annotated frame, not the raw one
    drawn = sink.render(r)
    assert np.abs(img.astype(int) - drawn).mean() < np.abs(img.astype(int) - r.frame.image).mean()

    status, _, body = get(base + "healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["frames"] == 1
    assert get(base + "nope")[0] == 404


@pytest.mark.parametrize("hours", [5, -5])
def test_healthz_age_is_time_since_the_frame_was_read_whatever_the_wall_clock(sink, results, face_clip, hours):
    """A file frame's stream clock runs ahead of real time when frames are read faster than the
    clip's frame rate; /healthz measures from when it was read, on the monotonic clock only."""
    import datetime as dt

    import time_machine

    from edgefer.edge.sources.files import VideoFileSource

    src = VideoFileSource(face_clip[0])
    for _ in range(20):  # at once: frame 19 is stamped 19/30 s ahead of now on the stream clock
        frame = src.read()
    src.close()
    read_at = time.monotonic()
    assert frame.monotonic - read_at > 0.5 and frame.received <= read_at
    sink.publish(replace(results[0], frame=frame))
    base = sink.url + "healthz"
    before = json.loads(get(base)[2])
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours), tick=True):
        time.sleep(0.3)
        during = json.loads(get(base)[2])
        elapsed = time.monotonic() - read_at
    assert 0 <= before["last_frame_age_s"] < during["last_frame_age_s"]
    assert during["last_frame_age_s"] == pytest.approx(elapsed, abs=0.05)
    assert 0 <= before["uptime_s"] <= during["uptime_s"] < 60


def test_stream_sends_newest_frame_repeats_it_while_idle_and_ends_on_close(sink, results):
    host, port = sink.address
    r = fresh(results[0], 0)
    sink.publish(r)
    t0 = time.monotonic()
    parts = read_parts(host, port, 2)  # the frame at once, then again as the keepalive
    assert 0.8 < time.monotonic() - t0 < 5
    for p in parts:
        img = cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape == r.frame.image.shape
    assert sink.frames_encoded == 1  # the repeat reuses the JPEG

    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(65536)
    deadline = time.monotonic() + 5
    while sink.streams != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    sink.close()
    assert time.monotonic() - t0 < 3
    s.settimeout(5)
    while s.recv(65536):  # the server ends the stream: EOF
        pass
    s.close()
    assert not any(t.name == "edgefer-web" for t in threading.enumerate())


def test_encoding_happens_once_per_frame_and_only_when_watched(results):
    sink = WebSink(WebConfig(enabled=True, port=0, max_fps=60))
    try:
        for i in range(20):
            sink.publish(fresh(results[i % 3], i))
        assert sink.frames_encoded == 0  # nobody watches: no JPEG at all

        host, port = sink.address
        got = [0, 0, 0]

        def watch(k: int) -> None:
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                got[k] += s.recv(1 << 20).count(b"Content-Type: image/jpeg")
            s.close()

        watchers = [threading.Thread(target=watch, args=(k,)) for k in range(3)]
        for w in watchers:
            w.start()
        time.sleep(0.3)
        published = 0
        for i in range(40):
            sink.publish(fresh(results[i % 3], 100 + i))
            published += 1
            time.sleep(0.03)
        for w in watchers:
            w.join()
        assert all(g >= 10 for g in got), got
        # one JPEG per published frame at most, shared by the three streams (+1: the frame shown on connect)
        assert sink.frames_encoded <= published + 1, (sink.frames_encoded, published, got)
    finally:
        sink.close()


def test_slow_client_never_blocks_publish_and_is_dropped(results):
    """A client that stops reading: publish stays a reference swap, only the newest frames stay in
    memory, and the client is cut off after send_timeout_s."""
    sink = WebSink(WebConfig(enabled=True, port=0, max_fps=30, send_timeout_s=1.0, jpeg_quality=95))
    try:
        host, port = sink.address
        big = cv2.resize(results[0].frame.image, (1920, 1080))
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((host, port))
        s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
        alive: list[weakref.ref] = []
        durations = []
        end = time.monotonic() + 3.0
        i = 0
        while time.monotonic() < end:
            r = fresh(results[0], i, big + np.uint8(i % 7))
            alive.append(weakref.ref(r.frame.image))
            t0 = time.perf_counter()
            sink.publish(r)
            durations.append(time.perf_counter() - t0)
            del r
            i += 1
            time.sleep(0.002)
        gc.collect()
        kept = sum(ref() is not None for ref in alive)
        assert kept <= 3, f"{kept} of {len(alive)} frames still in memory"
        durations_ms = np.array(durations) * 1000
        # blocking on the client would cost at least send_timeout_s (1 s); the rest is GIL and scheduler noise
        assert np.median(durations_ms) < 0.5 and durations_ms.max() < 250, (np.median(durations_ms), durations_ms.max())
        deadline = time.monotonic() + 10
        while sink.streams and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.streams == 0, "the stuck client was never dropped"
        s.close()
    finally:
        sink.close()


def test_too_many_streams_get_503(results):
    sink = WebSink(WebConfig(enabled=True, port=0, max_clients=1))
    try:
        sink.publish(fresh(results[0], 0))
        host, port = sink.address
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        assert get(sink.url + "stream.mjpg")[0] == 503
        s.close()
    finally:
        sink.close()


# --- privacy --------------------------------------------------------------------------------------


def test_blur_faces_hides_the_face_but_keeps_the_rest(results):
    r = results[0]
    raw = r.frame.image
    x, y, w, h = (int(v) for v in r.faces[0].face.box)
    blurred = blur_faces(raw.copy(), [r.faces[0].face.box])
    region = (slice(y, y + h), slice(x, x + w))
    gray_raw = cv2.cvtColor(raw, cv2.COLOR_BGR2GRAY).astype(float)
    gray_blur = cv2.cvtColor(blurred, cv2.COLOR_BGR2GRAY).astype(float)
    # at most 8 x 8 blocks across the face: a handful of distinct values, none of the face's detail
    assert len(np.unique(gray_blur[region])) <= 64
    detail_raw = (gray_raw - cv2.GaussianBlur(gray_raw, (0, 0), 2))[region].ravel()
    detail_blur = (gray_blur - cv2.GaussianBlur(gray_blur, (0, 0), 2))[region].ravel()
    assert abs(np.corrcoef(detail_raw, detail_blur)[0, 1]) < 0.15
    outside = np.ones(raw.shape[:2], bool)
    gx, gy = int(0.15 * w) + 1, int(0.15 * h) + 1
    outside[max(0, y - gy):y + h + gy + 1, max(0, x - gx):x + w + gx + 1] = False
    assert np.array_equal(blurred[outside], raw[outside])  # away from the face nothing changes
    # the stream draws the overlay on the blurred image and leaves the frame untouched
    before = raw.copy()
    shown = WebSink(WebConfig(blur_faces=True)).render(r)
    assert np.array_equal(raw, before)
    from edgefer.edge.draw import draw_results

    assert np.array_equal(shown, draw_results(blurred, r.faces))
    img = raw.copy()
    blur_faces(img, [np.array([-50, -50, 10, 10], np.float32), np.array([10, 10, 0, 0], np.float32)])  # off-image
    assert np.array_equal(img, raw)


# --- credentials ----------------------------------------------------------------------------------


def test_credentials_from_file_and_401(tmp_path, results):
    pw = tmp_path / "pw"
    pw.write_text("s3cret-pass\n")
    pw.chmod(0o600)
    sink = WebSink(WebConfig(enabled=True, port=0, username="viewer", password_file=pw))
    try:
        sink.publish(fresh(results[0], 0))
        for path in ("", "results.json", "frame.jpg", "stream.mjpg"):
            status, headers, _ = get(sink.url + path)
            assert status == 401 and headers["WWW-Authenticate"].startswith('Basic realm="edgefer"')
            assert get(sink.url + path, auth=("viewer", "wrong"))[0] == 401
            assert get(sink.url + path, auth=("other", "s3cret-pass"))[0] == 401
        assert get(sink.url + "results.json", auth=("viewer", "s3cret-pass"))[0] == 200
        assert get(sink.url + "frame.jpg", auth=("viewer", "s3cret-pass"))[0] == 200
        host, port = sink.address
        token = base64.b64encode(b"viewer:s3cret-pass").decode()
        assert len(read_parts(host, port, 1, auth_header=f"Authorization: Basic {token}\r\n")) == 1
        assert get(sink.url + "healthz")[0] == 200  # liveness needs no credentials and carries no data
    finally:
        sink.close()


def test_credentials_from_env(monkeypatch):
    monkeypatch.setenv("EDGEFER_TEST_WEB_PW", "from-env")
    sink = WebSink(WebConfig(enabled=True, port=0, username="u", password_env="EDGEFER_TEST_WEB_PW"))
    try:
        assert get(sink.url + "results.json")[0] == 401
        assert get(sink.url + "results.json", auth=("u", "from-env"))[0] == 200
    finally:
        sink.close()


def test_bad_credentials_config_is_one_clear_error(tmp_path, monkeypatch):
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    pw.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users") as e:
        WebSink(WebConfig(enabled=True, port=0, username="u", password_file=pw))
    assert "x" not in str(e.value).split(":")[-1]  # never the secret
    with pytest.raises(ConfigError, match="cannot read"):
        WebSink(WebConfig(enabled=True, port=0, username="u", password_file=tmp_path / "missing"))
    (tmp_path / "empty").write_text("")
    (tmp_path / "empty").chmod(0o600)
    with pytest.raises(ConfigError, match="empty"):
        WebSink(WebConfig(enabled=True, port=0, username="u", password_file=tmp_path / "empty"))
    monkeypatch.delenv("EDGEFER_UNSET_PW", raising=False)
    with pytest.raises(ConfigError, match="EDGEFER_UNSET_PW"):
        WebSink(WebConfig(enabled=True, port=0, username="u", password_env="EDGEFER_UNSET_PW"))
    with pytest.raises(ValidationError, match="go together"):
        WebConfig(username="u")
    with pytest.raises(ValidationError, match="not both"):
        WebConfig(username="u", password_env="A", password_file=pw)
    with pytest.raises(ValidationError, match="extra"):
        WebConfig(password="inline secrets are not accepted")


# --- the page in a real browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        if os.environ.get("EDGEFER_REQUIRE_BROWSER"):
            pytest.fail("EDGEFER_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium; EDGEFER_REQUIRE_BROWSER=1 makes this a failure)")
    with Chromium(binary, width=1000, height=700) as b:
        yield b


def _check_screenshot(png: bytes, sink: WebSink, r: FrameResult, out_path) -> None:
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    cv2.imwrite(str(out_path), shot)
    expected = sink.render(r)  # exactly what the stream shows, before JPEG
    raw = r.frame.image
    H, W = raw.shape[:2]
    # the annotated frame is on the page, unscaled
    score = cv2.matchTemplate(shot, expected, cv2.TM_CCOEFF_NORMED)
    _, best, _, (lx, ly) = cv2.minMaxLoc(score)
    assert best > 0.95, f"annotated frame not found in the screenshot (best match {best:.3f})"
    shown = shot[ly:ly + H, lx:lx + W].astype(int)
    # the box: where the overlay changed pixels along the face's outline, the screenshot shows the box
    # colour of the reported emotion, not the photo
    face = r.faces[0]
    x, y, w, h = (int(round(float(v))) for v in face.face.box)
    outline = np.zeros((H, W), np.uint8)
    cv2.rectangle(outline, (x, y), (x + w, y + h), 1, 3)
    changed = np.abs(expected.astype(int) - raw).max(axis=2) > 40
    on_box = (outline > 0) & changed
    assert on_box.sum() > (w + h), f"only {on_box.sum()} overlay pixels on the face outline"
    colour = np.array(COLOURS[CLASS_NAMES.index(face.stable_emotion or face.emotion)])
    close_to_box = np.abs(shown - colour).max(axis=2) < 70
    # judged only where the photo itself is far from that colour (a grey photo's mid-tones are within
    # 70 of fear's purple, for one), so that the photo alone cannot pass it
    telling = on_box & (np.abs(raw.astype(int) - colour).max(axis=2) >= 70)
    assert telling.sum() > (w + h), f"only {telling.sum()} outline pixels where the photo is unlike the box colour"
    assert close_to_box[telling].mean() > 0.6, close_to_box[telling].mean()
    assert np.abs(shown[on_box] - expected[on_box]).mean() < 25


def test_page_in_headless_chromium_shows_frame_box_and_label(browser, results, tmp_path):
    r = results[0]
    face = r.faces[0]
    label = f"#{face.track_id} {face.stable_emotion or face.emotion}"
    sink = WebSink(WebConfig(enabled=True, port=0))
    try:
        sink.publish(fresh(r, 0))
        browser.navigate(sink.url)
        browser.wait_for('document.getElementById("stream").naturalWidth > 0')
        text = browser.wait_for(f'document.getElementById("faces").textContent.includes("{label}") && '
                                'document.body.innerText')
        assert label in text and "frame 0" in text
        assert browser.evaluate('document.getElementById("stream").naturalWidth') == r.frame.image.shape[1]
        # the page's own style and script run under its Content-Security-Policy
        assert browser.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(17, 17, 17)"
        _check_screenshot(browser.screenshot(), sink, r, tmp_path / "overlay.png")
        data = json.loads(get(sink.url + "results.json")[2])
        assert data["faces"][0]["track_id"] == face.track_id and data["faces"][0]["emotion"] == face.emotion
    finally:
        sink.close()
        if os.environ.get("EDGEFER_KEEP_SCREENSHOT"):
            import shutil

            shutil.copy(tmp_path / "overlay.png", os.environ["EDGEFER_KEEP_SCREENSHOT"])


def test_page_in_headless_chromium_with_credentials(browser, results, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFER_TEST_WEB_PW", "pw-for-browser")
    r = results[1]
    sink = WebSink(WebConfig(enabled=True, port=0, username="viewer", password_env="EDGEFER_TEST_WEB_PW"))
    try:
        sink.publish(fresh(r, 5))
        token = base64.b64encode(b"viewer:pw-for-browser").decode()
        browser.navigate(sink.url, headers={"Authorization": f"Basic {token}"})
        browser.wait_for('document.getElementById("stream").naturalWidth > 0')
        browser.wait_for('document.getElementById("fps").textContent.includes("frame 5")')
        _check_screenshot(browser.screenshot(), sink, r, tmp_path / "overlay-auth.png")
    finally:
        sink.close()


def test_a_frame_that_cannot_be_drawn_is_logged_and_the_server_lives_on(sink, results, caplog):
    bad = fresh(results[0], 1, np.zeros((0, 0, 3), np.uint8))  # a bug upstream: an empty image
    sink.publish(bad)
    with caplog.at_level("ERROR", logger="edgefer.edge.sinks.web"):
        assert get(sink.url + "frame.jpg")[0] == 500
        with pytest.raises(ConnectionError):
            read_parts(*sink.address, 1, timeout=5)
    assert "cannot draw" in caplog.text
    sink.publish(fresh(results[0], 2))
    assert get(sink.url + "frame.jpg")[0] == 200
    assert len(read_parts(*sink.address, 1)) == 1


def test_page_reconnects_after_a_restart(browser, results, tmp_path):
    """SIGHUP reload or a service restart closes the server; the open page picks the new one up."""
    first = WebSink(WebConfig(enabled=True, port=0))
    host, port = first.address
    second = None
    try:
        first.publish(fresh(results[0], 1))
        browser.navigate(first.url)
        browser.wait_for('document.getElementById("fps").textContent.includes("frame 1 ")')
        browser.wait_for('document.getElementById("stream").naturalWidth > 0')
        first.close()
        browser.wait_for('document.getElementById("fps").textContent === "disconnected"')
        second = WebSink(WebConfig(enabled=True, host=host, port=port))
        r = results[2]
        second.publish(fresh(r, 9))
        browser.wait_for('document.getElementById("fps").textContent.includes("frame 9 ")')
        deadline = time.monotonic() + 10
        while True:  # the stream shows the new service's frame
            shot = cv2.imdecode(np.frombuffer(browser.screenshot(), np.uint8), cv2.IMREAD_COLOR)
            best = cv2.minMaxLoc(cv2.matchTemplate(shot, second.render(r), cv2.TM_CCOEFF_NORMED))[1]
            if best > 0.95 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert best > 0.95, f"new frame not shown after the restart (best match {best:.3f})"
    finally:
        first.close()
        if second is not None:
            second.close()


def test_nothing_is_served_after_close_not_even_on_kept_alive_connections(results):
    import http.client

    sink = WebSink(WebConfig(enabled=True, port=0))
    sink.publish(fresh(results[0], 0))
    conn = http.client.HTTPConnection(*sink.address, timeout=5)
    conn.request("GET", "/results.json")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Connection") != "close"
    resp.read()
    sink.close()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        conn.request("GET", "/results.json")
        conn.getresponse()
    conn.close()
