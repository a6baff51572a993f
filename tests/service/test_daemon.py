"""The real `edgefer run` daemon in a subprocess, against a socket playing systemd's notify protocol:
camera absent then appearing, a stream that stalls, SIGHUP with a bad config, SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from mjpeg_server import MjpegCamera
from notify_socket import NotifySocket

WATCHDOG_S = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, yunet: Path, source: str, extra: str = "") -> Path:
    path.write_text(f"""
[source]
uri = "{source}"
stall_timeout_s = 1.0
backoff_initial_s = 0.2
backoff_max_s = 1.0
loop = true
[detector]
model = "{yunet}"
[classifier]
threads = 1
[service]
hang_timeout_s = 5.0
stats_interval_s = 0.5
{extra}
""")
    return path


class Daemon:
    def __init__(self, tmp_path: Path, config: Path, *args: str) -> None:
        self.sock = NotifySocket(tmp_path / "notify")
        self.jsonl = tmp_path / "out.jsonl"
        self.stderr = open(tmp_path / "stderr.log", "w+")  # noqa: SIM115
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "edgefer", "run", "--config", str(config), "--jsonl",
                                      str(self.jsonl), *args], env=self.sock.env(WATCHDOG_S), stdout=subprocess.DEVNULL,
                                     stderr=self.stderr)

    def lines(self) -> int:
        return len(self.jsonl.read_text().splitlines()) if self.jsonl.exists() else 0

    def wait_status(self, prefix: str, timeout: float) -> float | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, m in list(self.sock.messages):
                if m.get("STATUS", "").startswith(prefix):
                    return t
            time.sleep(0.02)
        return None

    def terminate(self) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = -9
        took = time.monotonic() - t0
        self.sock.close()
        return rc, took

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def max_ping_gap(self, since: float = 0.0) -> float:
        pings = [t for t in self.sock.times("WATCHDOG", "1") if t >= since]
        return max(b - a for a, b in zip(pings, pings[1:]))


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos_dir) -> Path:
    photo = cv2.imread(str(sorted((photos_dir / "happy").glob("*.jpg"))[0]))
    path = tmp_path_factory.mktemp("clip") / "face.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    for i in range(30):
        frame = np.full((240, 320, 3), 80, np.uint8)
        frame[20:220, 40 + i:240 + i] = cv2.resize(photo, (200, 200))
        writer.write(frame)
    writer.release()
    return path


def test_camera_absent_then_appears_then_stalls(tmp_path, yunet_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    d = Daemon(tmp_path, write_config(tmp_path / "c.toml", yunet_path, url))
    cam = None
    try:
        ready = d.sock.wait_for("READY", "1", timeout=10)
        assert ready is not None, d.log()
        print(f"\nREADY after {ready - d.started:.2f} s (camera absent)")
        assert ready - d.started <= 2.0
        unavailable = d.wait_status("camera_unavailable", 2.0)
        assert unavailable is not None and unavailable - d.started <= 2.0 + 0.5
        time.sleep(2.0)
        assert d.proc.poll() is None and d.lines() == 0
        # The camera appears: picked up by the backoff retries (<= 1 s apart here).
        cam = MjpegCamera(port=port)
        appeared = time.monotonic()
        streaming = d.wait_status("streaming", 6.0)
        assert streaming is not None, d.log()
        deadline = time.monotonic() + 5
        while d.lines() < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert d.lines() >= 10
        print(f"camera picked up {streaming - appeared:.2f} s after it appeared")
        # The stream stalls: detected within the timeout (1 s, plus a status tick), reopened when it resumes.
        cam.stalled.set()
        stalled_at = time.monotonic()
        t_stall = d.wait_status("stalled", 4.0)
        assert t_stall is not None, d.log()
        print(f"stall reported {t_stall - stalled_at:.2f} s after the last frame (timeout 1.0 s)")
        assert t_stall - stalled_at <= 1.0 + 1.0
        time.sleep(1.0)
        cam.stalled.clear()
        before = d.lines()
        deadline = time.monotonic() + 15
        while d.lines() < before + 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert d.lines() >= before + 10, "frames resume after the stall:\n" + d.log()[-4000:]
        assert cam.connections >= 2, "the stream was reopened"
        assert d.proc.poll() is None
        assert d.max_ping_gap(since=ready) <= WATCHDOG_S / 2, "watchdog kept pinging through absence and stall"
    finally:
        rc, took = d.terminate()
        if cam is not None:
            cam.stop()
    assert rc == 0 and took < 5.0, d.log()
    assert d.sock.times("STOPPING", "1")
    assert "Traceback" not in d.log()


def listening_sockets(pid: int) -> list[str]:
    """Addresses `pid` listens on (TCP/TCP6/UDP), from /proc: its socket inodes matched against the tables."""
    import os

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            parts = line.split()
            listening = parts[3] == "0A" if table.startswith("tcp") else True
            if parts[9] in inodes and listening:
                found.append(f"{table} {parts[1]}")
    return found


def test_sighup_bad_config_kept_and_sigterm(tmp_path, yunet_path, clip):
    cfg = write_config(tmp_path / "c.toml", yunet_path, str(clip))
    d = Daemon(tmp_path, cfg)
    try:
        ready = d.sock.wait_for("READY", "1", timeout=10)
        assert ready is not None and ready - d.started <= 2.0, d.log()
        time.sleep(1.5)
        assert d.lines() > 5
        assert listening_sockets(d.proc.pid) == [], "the default configuration opens no listening socket"
        first = json.loads(d.jsonl.read_text().splitlines()[0])
        assert first["faces"] and first["faces"][0]["emotion"]
        # An invalid file on SIGHUP: refused, old configuration kept, still running and pinging.
        cfg.write_text(cfg.read_text().replace("hang_timeout_s = 5.0", "hang_timeout_s = -1"))
        d.proc.send_signal(signal.SIGHUP)
        assert d.wait_status("reload failed", 3.0) is not None, d.log()
        n = d.lines()
        t = time.monotonic()
        time.sleep(1.5)
        assert d.proc.poll() is None and d.lines() > n
        assert len([p for p in d.sock.times("WATCHDOG", "1") if p > t]) >= 2
        assert f"{cfg}:13: service.hang_timeout_s: Input should be greater than 0" in d.log()
        # A valid file on SIGHUP is taken.
        cfg.write_text(cfg.read_text().replace("hang_timeout_s = -1", "hang_timeout_s = 6.0"))
        d.proc.send_signal(signal.SIGHUP)
        t_reload = time.monotonic()
        assert d.sock.wait_for("RELOADING", "1", 3.0)
        time.sleep(2.0)
        assert [t for t in d.sock.times("READY", "1") if t > t_reload], "READY again after the reload"
        assert d.log().count("reload refused") == 1
        assert d.proc.poll() is None
        assert d.max_ping_gap(since=ready) <= WATCHDOG_S / 2
    finally:
        rc, took = d.terminate()
    print(f"\nSIGTERM: exit {rc} after {took:.2f} s")
    assert rc == 0 and took < 5.0, d.log()
    assert d.sock.times("STOPPING", "1")
    assert "Traceback" not in d.log()


def test_disk_full_jsonl_is_counted_and_the_run_finishes(tmp_path, yunet_path, clip):
    cfg = write_config(tmp_path / "c.toml", yunet_path, str(clip)).read_text().replace("loop = true", "loop = false")
    (tmp_path / "c.toml").write_text(cfg)
    r = subprocess.run([sys.executable, "-m", "edgefer", "run", "--config", str(tmp_path / "c.toml"), "--jsonl",
                        "/dev/full", "--max-frames", "20"], capture_output=True, text=True, timeout=120)
    # The run goes on to its last frame (logged once, counted after that), then says what was lost: exit 75.
    assert r.returncode == 75, r.stderr
    logged = [ln for ln in r.stderr.splitlines() if "jsonl /dev/full: No space left on device" in ln]
    assert len(logged) == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("edgefer: error: cannot write /dev/full: No space left on device "
                                                 "(20 JSON lines lost)"), r.stderr
    assert "Traceback" not in r.stderr


def test_display_without_a_display_is_one_line(tmp_path, yunet_path, clip):
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, "-m", "edgefer", "run", "--source", str(clip), "--detector", str(yunet_path),
                        "--display", "--max-frames", "1"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["edgefer: error: --display: no display (DISPLAY and WAYLAND_DISPLAY are "
                                             "unset); use the web overlay ([web] enabled = true) instead"]
