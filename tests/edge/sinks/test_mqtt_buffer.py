"""The store-and-forward buffer: memory and SQLite stores behave alike; the disk one survives a kill."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgefer.edge.sinks.buffer import DiskBuffer, MemoryBuffer, open_buffer
from edgefer.errors import ConfigError


@pytest.fixture(params=["memory", "disk"])
def buf(request, tmp_path):
    b = MemoryBuffer(5) if request.param == "memory" else DiskBuffer(tmp_path / "b.sqlite3", 5)
    yield b
    b.close()


def test_fifo_take_ack(buf):
    for i in range(3):
        buf.put("t", b"%d" % i)
    got = buf.take(2)
    assert [m.payload for m in got] == [b"0", b"1"] and len(buf) == 3 and buf.pending == 1
    assert [m.payload for m in buf.take(5)] == [b"2"]
    assert buf.take(5) == []
    assert buf.ack(got[0].seq) and not buf.ack(got[0].seq)
    assert len(buf) == 2


def test_full_drops_oldest_pending_never_inflight(buf):
    for i in range(3):
        buf.put("t", b"%d" % i)
    inflight = buf.take(2)  # 0 and 1 in flight
    dropped = sum(buf.put("t", b"%d" % i) for i in range(3, 10))
    assert dropped == 5 and buf.dropped == 5 and len(buf) == 5
    rest = buf.take(10)
    assert [m.payload for m in rest] == [b"7", b"8", b"9"]
    for m in inflight + rest:
        buf.ack(m.seq)
    assert len(buf) == 0


def test_requeue(buf):
    buf.put("a", b"x", retain=True)
    (m,) = buf.take(1)
    buf.requeue()
    (m2,) = buf.take(1)
    assert (m2.seq, m2.topic, m2.payload, m2.retain) == (m.seq, "a", b"x", True)


def test_capacity_checked():
    with pytest.raises(ConfigError):
        MemoryBuffer(0)


def test_disk_buffer_survives_sigkill(tmp_path):
    path = tmp_path / "state" / "b.sqlite3"
    code = (
        "import os,signal,sys;from edgefer.edge.sinks.buffer import DiskBuffer;"
        f"b=DiskBuffer({str(path)!r}, 100);"
        "[b.put('t', b'%d' % i) for i in range(150)];"
        "b.take(10);"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    p = subprocess.run([sys.executable, "-c", code])
    assert p.returncode == -9
    b = DiskBuffer(path, 100)
    msgs = b.take(1000)  # the 10 that were in flight at the kill are pending again
    assert [m.payload for m in msgs] == [b"%d" % i for i in range(50, 150)]
    assert b.dropped == 50
    b.close()


def test_unusable_state_dir_is_config_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="cannot open the MQTT buffer"):
        open_buffer(10, f / "sub")


def test_throughput(tmp_path):
    """put+take+ack per second for both stores (printed; the disk one must beat 50 results/s by far)."""
    rates = {}
    payload = b"x" * 800
    for name, b in [("memory", MemoryBuffer(10000)), ("disk", DiskBuffer(tmp_path / "t.sqlite3", 10000))]:
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            b.put("edgefer/dev/faces", payload)
        for m in b.take(n):
            b.ack(m.seq)
        rates[name] = n / (time.perf_counter() - t0)
        b.close()
    print("buffer throughput (messages/s, put+take+ack, 800 B):", {k: round(v) for k, v in rates.items()})
    assert rates["disk"] > 500


def test_disk_full_is_counted_not_fatal(tmp_path):
    """A file-size limit makes SQLite fail like a full disk: the sink counts, logs, keeps going."""
    code = f"""
import resource, signal, json
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from edgefer.edge.sinks.mqtt import MqttSink
import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from mqtt_scenarios import make_result
sink = MqttSink.from_url("mqtt://127.0.0.1:9", state_dir={str(tmp_path / "state")!r}, buffer_size=100000, close_timeout_s=0)
sink.publish(make_result(0))
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
for i in range(1, 2000):
    sink.publish(make_result(i))
s = sink.stats()
sink.close()
print(json.dumps(s))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    s = json.loads(p.stdout.strip().splitlines()[-1])
    print("disk full:", s)
    assert s["published"] == 2000 and s["write_errors"] > 0
    assert s["buffered"] + s["write_errors"] == 2000
    assert p.stderr.count("cannot store a message in the buffer") == 1  # logged, not once per message
