"""The service against a socket that plays systemd's notify protocol (in-process, stand-in pipeline)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import time_machine
from notify_socket import NotifySocket
from standins import AppearingCamera, GeneratedSource, RecordingSink, StandInPipeline

from edgefer.config import load_config
from edgefer.edge.runner import Runner
from edgefer.edge.service import Notifier, Service
from edgefer.edge.sources.capture import Capture

GOOD = "[service]\nhang_timeout_s = 0.6\nstats_interval_s = 0.2\nstop_timeout_s = 1.0\n[source]\nstall_timeout_s = 1.0\n"


class Harness:
    def __init__(self, tmp_path, watchdog_s: float = 1.0, factory=None) -> None:
        self.sock = NotifySocket(tmp_path / "notify")
        self.cfg = tmp_path / "edgefer.toml"
        self.cfg.write_text(GOOD)
        self.pipeline = StandInPipeline(delay_s=0.005)
        self.sink = RecordingSink()
        self.factory = factory or (lambda: GeneratedSource(fps=50))
        self.built: list[Runner] = []
        self.build_delay_s = 0.0
        self.service = Service(lambda: load_config(self.cfg), self.build,
                               Notifier(self.sock.address, watchdog_usec=int(watchdog_s * 1e6)),
                               install_signals=False, tick_s=0.05)
        self.code: list[int] = []
        self.started = time.monotonic()
        self.thread = threading.Thread(target=lambda: self.code.append(self.service.run()), daemon=True)
        self.thread.start()

    def build(self, config) -> Runner:
        time.sleep(self.build_delay_s)  # loading models
        sc = config.source
        cap = Capture(self.factory, live=True, stall_timeout_s=sc.stall_timeout_s, backoff_initial_s=0.1,
                      backoff_max_s=0.5)
        runner = Runner(cap, self.pipeline, None, [self.sink], stats_interval_s=config.service.stats_interval_s)
        cap.start()
        self.built.append(runner)
        return runner

    def stop(self) -> float:
        t0 = time.monotonic()
        self.service.request_stop()
        self.thread.join(6)
        self.sock.close()
        return time.monotonic() - t0


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def test_ready_watchdog_cadence_and_stopping(tmp_path):
    h = Harness(tmp_path, watchdog_s=1.0)
    try:
        ready = h.sock.wait_for("READY", "1", timeout=3)
        assert ready is not None and ready - h.started < 2.0
        time.sleep(2.5)
        pings = h.sock.times("WATCHDOG", "1")
        assert len(pings) >= 8
        assert max(gaps(pings)) <= 0.5, "WATCHDOG at least every half WatchdogSec"
    finally:
        took = h.stop()
    assert h.code == [0] and took < 5.0
    assert h.sock.times("STOPPING", "1")
    assert h.pipeline.closed and h.sink.closed


def test_hung_pipeline_stops_the_pings(tmp_path):
    h = Harness(tmp_path, watchdog_s=0.8)
    try:
        assert h.sock.wait_for("READY", "1", timeout=3)
        time.sleep(0.6)
        assert h.sock.times("WATCHDOG")
        h.pipeline.hang.set()
        hung_at = time.monotonic()
        time.sleep(2.5)
        late = [t for t in h.sock.times("WATCHDOG") if t > hung_at + 0.6 + 0.25]
        assert late == [], "no pings once the pipeline stopped making progress"
        assert any("hung" in s for s in h.sock.statuses())
    finally:
        took = h.stop()
        closed_while_hung = h.pipeline.closed
        h.pipeline.unhang.set()
    assert took < 5.0 and h.code == [0]
    # The sinks are flushed, but the models stay open under the hung inference: freeing an ONNX
    # Runtime session that a thread is still running aborts the process (seen in the device lab).
    assert h.sink.closed and not closed_while_hung


def test_sighup_with_bad_config_keeps_the_old_one(tmp_path):
    h = Harness(tmp_path, watchdog_s=1.0)
    try:
        assert h.sock.wait_for("READY", "1", timeout=3)
        first = h.service.config
        h.cfg.write_text("[service]\nhang_timeout_s = -5\n")
        h.service.request_reload()
        time.sleep(0.5)
        assert h.service.reload_failures == 1 and h.service.reloads == 0
        assert h.service.config is first and len(h.built) == 1
        assert "service.hang_timeout_s" in h.service.last_reload_error
        assert any("reload failed" in s for s in h.sock.statuses())
        n_results = len(h.sink.results)
        pings = len(h.sock.times("WATCHDOG"))
        time.sleep(0.8)
        assert len(h.sink.results) > n_results and len(h.sock.times("WATCHDOG")) > pings, "still running"
        # A valid file is taken.
        h.cfg.write_text(GOOD.replace("stats_interval_s = 0.2", "stats_interval_s = 0.3"))
        h.service.request_reload()
        time.sleep(0.8)
        assert h.service.reloads == 1 and h.service.config.service.stats_interval_s == 0.3
        assert len(h.built) == 2 and h.sock.times("RELOADING", "1")
    finally:
        h.stop()
    assert h.code == [0]


def test_pings_continue_while_a_reload_loads_models(tmp_path):
    h = Harness(tmp_path, watchdog_s=0.8)
    try:
        assert h.sock.wait_for("READY", "1", timeout=3)
        h.build_delay_s = 1.5
        t0 = time.monotonic()
        h.service.request_reload()
        time.sleep(2.5)
        assert h.service.reloads == 1
        pings = [t for t in h.sock.times("WATCHDOG", "1") if t > t0 - 0.4]
        assert len(pings) >= 6 and max(gaps(pings)) <= 0.4 + 0.05
    finally:
        h.stop()
    assert h.code == [0]


def test_camera_absent_at_start_ready_and_status(tmp_path):
    camera = AppearingCamera()
    h = Harness(tmp_path, watchdog_s=1.0, factory=camera)
    try:
        ready = h.sock.wait_for("READY", "1", timeout=3)
        assert ready is not None and ready - h.started < 2.0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not any(s.startswith("camera_unavailable") for s in h.sock.statuses()):
            time.sleep(0.05)
        assert any(s.startswith("camera_unavailable") for s in h.sock.statuses())
        assert any(st.get("state") == "camera_unavailable" for _, st in h.sink.statuses), "sinks get the status too"
        time.sleep(1.0)
        assert len(camera.attempts) >= 3 and h.thread.is_alive()
        assert len(h.sock.times("WATCHDOG")) >= 3, "a missing camera is not a hang"
        camera.appear.set()
        time.sleep(1.0)
        assert h.sink.results, "the camera is picked up once it appears"
        assert any(s.startswith("streaming") for s in h.sock.statuses())
    finally:
        h.stop()
    assert h.code == [0]


@pytest.mark.parametrize("hours", [2, -2])
def test_clock_jump_no_watchdog_trip_no_reconnect(tmp_path, hours):
    h = Harness(tmp_path, watchdog_s=0.8)
    try:
        assert h.sock.wait_for("READY", "1", timeout=3)
        time.sleep(0.5)
        with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours), tick=True):
            t_jump = time.monotonic()
            time.sleep(1.5)
        pings = [t for t in h.sock.times("WATCHDOG") if t > t_jump - 0.4]
        assert len(pings) >= 5 and max(gaps(pings)) <= 0.4
        cs = h.built[-1].capture.stats
        assert cs.reconnects == 0 and cs.stalls == 0 and cs.open_failures == 0
    finally:
        h.stop()
    assert h.code == [0]


def test_abstract_notify_socket():
    name = f"edgefer-test-{time.monotonic_ns()}"
    sock = NotifySocket(abstract=name)
    try:
        n = Notifier("@" + name)
        assert n.notify(READY=1, STATUS="two\nlines")
        assert sock.wait_for("READY", "1", timeout=2)
        assert sock.statuses() == ["two lines"]
    finally:
        sock.close()


def test_notifier_without_socket_is_silent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and n.notify(READY=1) is False
