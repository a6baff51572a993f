"""`/healthz` ages and uptime come from `time.monotonic()` alone: the real daemon (in-process, so
`time-machine` can move its wall clock by hours while it runs) and `edgefer run --loop` over HTTP,
both on a looping clip whose media clock runs slower than the pipeline (5 frames/s), which is what
made `last_frame_age_s` negative when ages were measured from the media's clock."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import pytest
import time_machine
from make_clips import make_frames, write_clip

from edgefer.config import load_config
from edgefer.edge.runner import build_runner
from edgefer.edge.service import Notifier, Service
from edgefer.edge.sinks.metrics import MetricsSink
from edgefer.edge.sinks.web import WebSink

CLIP_FPS = 5.0


@pytest.fixture(scope="module")
def slow_clip(tmp_path_factory, photos_dir) -> Path:
    """20 frames at 5 frames/s (4 s of media), processed here in well under a second per pass."""
    photo = cv2.imread(str(sorted((photos_dir / "happy").glob("*.jpg"))[0]), cv2.IMREAD_COLOR)
    frames, _ = make_frames(photo, frames=20, width=320, height=240, face_height=120)
    return write_clip(frames, tmp_path_factory.mktemp("clips") / "slow.avi", fps=CLIP_FPS)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


class InProcessDaemon:
    """`Service` + `build_runner` as `edgefer run` wires them, on a thread of this process."""

    def __init__(self, overrides: dict) -> None:
        self.service = Service(
            lambda: load_config(None, overrides), build_runner, Notifier(address=""), install_signals=False, tick_s=0.05
        )
        self.code: list[int] = []
        self.thread = threading.Thread(target=lambda: self.code.append(self.service.run()), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while self.service.runner is None and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.05)
        sinks = self.service.runner.sinks
        self.web = next(s for s in sinks if isinstance(s, WebSink)).url + "healthz"
        host, port = next(s for s in sinks if isinstance(s, MetricsSink)).address
        self.metrics = f"http://{host}:{port}/metrics"

    def stop(self) -> None:
        self.service.request_stop()
        self.thread.join(10)


@pytest.mark.parametrize("hours", [3, -3])
def test_healthz_ages_and_uptime_ignore_wall_clock_jumps(slow_clip, yunet_path, hours):
    d = InProcessDaemon(
        {
            "source": {"uri": str(slow_clip), "loop": True},
            "detector": {"model": str(yunet_path)},
            "classifier": {"threads": 1},
            "web": {"enabled": True, "port": 0},
            "metrics": {"enabled": True, "port": 0},
            "service": {"stats_interval_s": 0.2},
        }
    )
    try:
        deadline = time.monotonic() + 30
        while (h := get_json(d.web))["frames"] < 25 and time.monotonic() < deadline:  # past one loop restart
            time.sleep(0.1)
        assert h["frames"] >= 25, h
        t0, up0, wall0 = time.monotonic(), h["uptime_s"], time.time()
        samples = []
        with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours), tick=True):
            assert time.time() - wall0 == pytest.approx(hours * 3600, abs=60), "the wall clock jumped"
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                samples.append((time.monotonic(), get_json(d.web), metric(d.metrics, "edgefer_last_frame_age_seconds")))
                time.sleep(0.05)
            snapshot = d.service.runner.snapshot()
        samples.append((time.monotonic(), get_json(d.web), metric(d.metrics, "edgefer_last_frame_age_seconds")))
    finally:
        d.stop()
    assert d.code == [0]
    assert len(samples) >= 10
    assert samples[-1][1]["frames"] > samples[0][1]["frames"], "frames kept coming through the jump"
    for t, h, gauge in samples:
        # a frame comes every few tens of milliseconds: its age is small and never negative
        assert 0 <= h["last_frame_age_s"] < 2.0, h
        assert 0 <= gauge < 2.0
        # uptime follows the monotonic clock (the jump of hours does not show), to its 0.1 s rounding
        assert h["uptime_s"] - up0 == pytest.approx(t - t0, abs=0.3), (h, t - t0)
    assert math.isclose(snapshot["uptime_s"], samples[0][1]["uptime_s"], abs_tol=3.0)


def test_loop_run_healthz_age_never_negative(slow_clip, yunet_path, tmp_path):
    """The reported case: `edgefer run --source clip --loop --web`, /healthz polled over HTTP on
    127.0.0.1 through several passes of the clip."""
    from broker import free_port

    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[web]\nport = {port}\n[classifier]\nthreads = 1\n")
    args = ["run", "--source", slow_clip, "--loop", "--web", "--detector", yunet_path, "--config", cfg]
    cmd = [sys.executable, "-m", "edgefer", *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/healthz"
    ages, frames, uptimes = [], [], []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                h = get_json(url)
            except OSError:  # not listening yet
                time.sleep(0.2)
                continue
            if h["last_frame_age_s"] is not None:
                ages.append(h["last_frame_age_s"])
                frames.append(h["frames"])
                uptimes.append(h["uptime_s"])
                deadline = min(deadline, time.monotonic() + 3.0)  # then 3 s of polling: several passes
            time.sleep(0.02)
    finally:
        proc.terminate()
        rc = proc.wait(15)
        err = proc.stderr.read()
    assert rc == 0, err
    assert len(ages) >= 20 and frames[-1] >= 70, (frames[-5:], err)  # three and a half passes of the clip
    assert min(ages) >= 0, ages
    assert max(ages) < 2.0, ages
    assert uptimes == sorted(uptimes)
