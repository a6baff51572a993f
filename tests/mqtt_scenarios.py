"""MQTT reliability scenarios shared by the tests (short) and `benchmarks/mqtt_reliability.py` (long).

Each function drives a real `MqttSink` against a real Mosquitto (`broker.Mosquitto`) with a
producer thread publishing numbered results (the frame index is the id), counts what a
persistent-session subscriber received, and returns its figures as a dict.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from broker import Mosquitto, Subscriber

from edgefer.edge.sinks.mqtt import MqttSink
from edgefer.types import Face, FaceResult, Frame, FrameResult

ROOT = Path(__file__).resolve().parents[1]


def make_result(i: int) -> FrameResult:
    """A realistic one-face result numbered `i` (no image data: the frame image is a 1x1 stub)."""
    rng = np.random.default_rng(i)
    p = rng.dirichlet(np.ones(7)).astype(np.float32)
    face = Face(np.array([100, 80, 120, 140], np.float32), 0.93, rng.uniform(100, 200, (5, 2)).astype(np.float32))
    fr = FaceResult(face, p, rng.uniform(0, 1, 7).astype(np.float32), track_id=1)
    fr.smoothed_probabilities, fr.smoothed_intensity, fr.stable_emotion = p, fr.intensity, "happy"
    return FrameResult(Frame(np.zeros((1, 1, 3), np.uint8), i, time.time(), time.monotonic(), "test"), [fr])


class Producer(threading.Thread):
    """Publishes results numbered start, start+1, ... at `rate` per second until `count` or stop()."""

    def __init__(self, sink: MqttSink, rate: float, count: int, start: int = 0):
        super().__init__(daemon=True)
        self.sink, self.rate, self.count, self.first = sink, rate, count, start
        self.produced: list[int] = []
        self._halt = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        for k in range(self.count):
            if self._halt.is_set():
                break
            delay = t0 + k / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.sink.publish(make_result(self.first + k))
            self.produced.append(self.first + k)

    def stop(self) -> None:
        self._halt.set()


def _tally(produced: list[int], sub: Subscriber) -> dict:
    ids = sub.ids()
    uniq = set(ids)
    lost = len(set(produced) - uniq)
    dups = len(ids) - len(uniq)
    by_sink, by_broker = sub.duplicates()
    return {
        "produced": len(produced),
        "received": len(uniq),
        "lost": lost,
        "duplicates": dups,
        "dup_pct": round(100.0 * dups / max(1, len(produced)), 3),
        "dups_sent_twice_by_sink": by_sink,
        "dups_resent_by_broker": by_broker,
    }


def _sink(broker: Mosquitto, **kw) -> MqttSink:
    kw.setdefault("device_id", "bench")
    kw.setdefault("stats_interval_s", 5.0)
    return MqttSink.from_url(broker.url, **kw)


def broker_restarts(workdir: Path, restarts: int, rate: float = 50.0, up_s: float = 2.0, down_s: float = 0.5) -> dict:
    """The broker is restarted (SIGTERM, `down_s` away) every `up_s` seconds while results flow."""
    with Mosquitto(workdir / "broker") as broker:
        sub = Subscriber(broker.port, "edgefer/+/faces", "sub-restarts")
        sub.wait_connected()
        sink = _sink(broker)
        sink.wait_connected(10)
        duration = (restarts + 1) * (up_s + down_s)
        prod = Producer(sink, rate, int(duration * rate))
        prod.start()
        for _ in range(restarts):
            time.sleep(up_s)
            broker.stop()
            time.sleep(down_s)
            broker.start()
        prod.join()
        sub.wait_ids(set(prod.produced), timeout=30)
        out = _tally(prod.produced, sub)
        out.update(restarts=restarts, rate=rate, reconnects=sink.stats()["reconnects"], dropped=sink.stats()["dropped"])
        sink.close()
        sub.close()
    return out


def _presubscribe(broker: Mosquitto, client_id: str, topic: str = "edgefer/+/faces") -> None:
    """Create the subscriber's persistent session, then stop the broker (it saves the session)."""
    broker.start()
    sub = Subscriber(broker.port, topic, client_id)
    sub.wait_connected()
    sub.close()
    broker.stop()


def broker_absent_at_start(workdir: Path, absent_s: float = 10.0, rate: float = 50.0) -> dict:
    """No broker when the sink starts; it appears after `absent_s`: start is immediate, all arrive."""
    broker = Mosquitto(workdir / "broker")
    _presubscribe(broker, "sub-absent")
    t0 = time.monotonic()
    sink = _sink(broker)
    start_ms = (time.monotonic() - t0) * 1000
    prod = Producer(sink, rate, int((absent_s + 2) * rate))
    prod.start()
    time.sleep(absent_s)
    buffered_at_appearance = len(sink.buffer)
    broker.start()
    t1 = time.monotonic()
    sub = Subscriber(broker.port, "edgefer/+/faces", "sub-absent")
    sink.wait_connected(10)
    connect_s = time.monotonic() - t1
    prod.join()
    sub.wait_ids(set(prod.produced), timeout=30)
    out = _tally(prod.produced, sub)
    out.update(start_ms=round(start_ms, 1), absent_s=absent_s, buffered_at_appearance=buffered_at_appearance, connect_after_s=round(connect_s, 2))
    sink.close()
    sub.close()
    broker.cleanup()
    return out


def partition(workdir: Path, partition_s: float = 60.0, keepalive: int = 10, rate: float = 50.0) -> dict:
    """The broker is frozen (SIGSTOP) for `partition_s`: loss detected within 2 keepalives,
    reconnected within a second of healing (SIGCONT), nothing lost."""
    with Mosquitto(workdir / "broker") as broker:
        sub = Subscriber(broker.port, "edgefer/+/faces", "sub-partition")
        sub.wait_connected()
        sink = _sink(broker, keepalive=keepalive)
        sink.wait_connected(10)
        prod = Producer(sink, rate, int((partition_s + 6) * rate))
        prod.start()
        time.sleep(2)
        broker.pause()
        t0 = time.monotonic()
        while sink.connected.is_set() and time.monotonic() - t0 < partition_s:
            time.sleep(0.01)
        detect_s = time.monotonic() - t0
        time.sleep(max(0.0, partition_s - (time.monotonic() - t0)))
        broker.resume()
        t1 = time.monotonic()
        sink.wait_connected(30)
        reconnect_s = time.monotonic() - t1
        prod.join()
        sub.wait_ids(set(prod.produced), timeout=60)
        out = _tally(prod.produced, sub)
        out.update(
            partition_s=partition_s,
            keepalive=keepalive,
            detect_s=round(detect_s, 2),
            detect_keepalives=round(detect_s / keepalive, 2),
            reconnect_after_heal_s=round(reconnect_s, 2),
        )
        sink.close()
        sub.close()
    return out


def overflow(workdir: Path, capacity: int = 1000, produced: int = 5000, state_dir: Path | None = None) -> dict:
    """An outage longer than the buffer: bounded, the oldest dropped first, drops counted exactly."""
    broker = Mosquitto(workdir / "broker")
    _presubscribe(broker, "sub-overflow")
    kw = {"buffer_size": capacity}
    if state_dir is not None:
        kw["state_dir"] = state_dir
    sink = _sink(broker, **kw)
    prod = Producer(sink, 1e9, produced)
    prod.run()
    stats = sink.stats()
    broker.start()
    sub = Subscriber(broker.port, "edgefer/+/faces", "sub-overflow")
    sink.wait_connected(10)
    expected_kept = set(range(produced - capacity, produced))
    sub.wait_ids(expected_kept, timeout=30)
    time.sleep(0.5)
    got = set(sub.ids())
    out = {
        "capacity": capacity,
        "produced": produced,
        "buffered_max": stats["buffered"],
        "dropped_counted": stats["dropped"],
        "dropped_expected": produced - capacity,
        "received": len(got),
        "received_are_newest": got == expected_kept,
        "lost_beyond_drops": produced - stats["dropped"] - len(got),
    }
    sink.close()
    sub.close()
    broker.cleanup()
    return out


CHILD = r"""
import sys, time, json
from mqtt_scenarios import make_result
from edgefer.edge.sinks.mqtt import MqttSink
url, state, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sink = MqttSink.from_url(url, device_id="child", state_dir=state, keepalive=int(sys.argv[5]) if len(sys.argv) > 5 else 10)
for i in range(first, first + count):
    sink.publish(make_result(i))
print("published", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    s = sink.stats()
    print(json.dumps(s), flush=True)
    if s["buffered"] == 0 and s["connected"]:
        break
    time.sleep(0.2)
sink.close()
print("closed", flush=True)
"""


def child(url: str, state_dir: Path, first: int, count: int, keepalive: int = 10) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(state_dir), str(first), str(count), str(keepalive)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def sigkill_restart(workdir: Path, count: int = 500) -> dict:
    """The daemon (a subprocess with a disk buffer) publishes during an outage and is SIGKILLed;
    restarted after the broker returns, it delivers everything it had buffered."""
    broker = Mosquitto(workdir / "broker")
    _presubscribe(broker, "sub-kill")
    state = workdir / "state"
    p = child(broker.url, state, 0, count)
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "published":
        raise RuntimeError(f"child failed: {line} {p.stderr.read() if p.stderr else ''}")
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    broker.start()
    sub = Subscriber(broker.port, "edgefer/+/faces", "sub-kill")
    t0 = time.monotonic()
    p2 = child(broker.url, state, count, 0)
    out_text, err_text = p2.communicate(timeout=90)
    missing = sub.wait_ids(set(range(count)), timeout=30)
    ids = sub.ids()
    out = {
        "produced_before_kill": count,
        "received_after_restart": len(set(ids)),
        "lost": len(missing),
        "duplicates": len(ids) - len(set(ids)),
        "delivered_in_s": round(time.monotonic() - t0, 2),
        "child_rc": p2.returncode,
    }
    if p2.returncode:
        out["child_stderr"] = err_text[-500:]
    sub.close()
    broker.cleanup()
    return out


def _will_after(broker: Mosquitto, sub: Subscriber, keepalive: int, sig: int) -> tuple[float | None, bool]:
    """Start a daemon subprocess, check the retained `online`, hit it with `sig` (SIGKILL: the
    socket closes; SIGSTOP: a hung or unplugged device, only the keepalive notices); seconds
    until the broker published its `offline` will, and whether `online` was retained before."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    code = (
        "import sys,time;from edgefer.edge.sinks.mqtt import MqttSink;"
        f"s=MqttSink.from_url({broker.url!r}, device_id='child', keepalive={keepalive});"
        "s.wait_connected(10);print('up',flush=True);time.sleep(600)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout is not None
    p.stdout.readline()
    time.sleep(0.3)
    late = Subscriber(broker.port, sub.topic, f"sub-late-{sig}")
    late.wait_connected()
    retained_online = [(m[1], m[2]) for m in late.on("availability")] == [(b"online", True)]
    late.close()
    n0 = len(sub.on("availability"))
    p.send_signal(sig)
    t0 = time.monotonic()
    will_s = None
    while time.monotonic() - t0 < 4 * keepalive:
        if any(m[1] == b"offline" for m in sub.on("availability")[n0:]):
            will_s = time.monotonic() - t0
            break
        time.sleep(0.01)
    p.kill()
    p.wait()
    return will_s, retained_online


def availability(workdir: Path, keepalive: int = 2) -> dict:
    """Retained `online` after connect; `offline` after a SIGKILL of the daemon (last will,
    measured in keepalives) and right after a clean close."""
    with Mosquitto(workdir / "broker") as broker:
        topic = "edgefer/child/availability"
        # 1. a daemon subprocess connects, is SIGKILLed (then another is frozen); the will arrives
        sub = Subscriber(broker.port, topic, "sub-avail")
        sub.wait_connected()
        will_s, retained_online = _will_after(broker, sub, keepalive, signal.SIGKILL)
        online_seen = any(m[1] == b"online" for m in sub.on("availability"))
        frozen_s, _ = _will_after(broker, sub, keepalive, signal.SIGSTOP)
        # 2. a clean close publishes offline at once
        sink = MqttSink.from_url(broker.url, device_id="child", keepalive=keepalive)
        sink.wait_connected(10)
        time.sleep(0.3)
        n1 = len(sub.on("availability"))
        t1 = time.monotonic()
        sink.close()
        close_s = None
        while time.monotonic() - t1 < 3:
            if any(m[1] == b"offline" for m in sub.on("availability")[n1:]):
                close_s = time.monotonic() - t1
                break
            time.sleep(0.005)
        sub.close()
    return {
        "online_after_connect": online_seen,
        "online_retained": retained_online,
        "keepalive": keepalive,
        "will_offline_after_sigkill_s": None if will_s is None else round(will_s, 2),
        "will_offline_after_freeze_s": None if frozen_s is None else round(frozen_s, 2),
        "will_offline_after_freeze_keepalives": None if frozen_s is None else round(frozen_s / keepalive, 2),
        "clean_close_offline_s": None if close_s is None else round(close_s, 3),
    }


def main_json(d: dict) -> str:
    return json.dumps(d, sort_keys=True)
