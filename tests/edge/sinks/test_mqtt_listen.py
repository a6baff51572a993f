"""`edgefer listen` against a real broker: pretty lines, JSON lines, clear failures."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from mqtt_scenarios import make_result

from edgefer.edge.sinks.mqtt import MqttSink
from edgefer.edge.tracker import Tracker


def _listen(*args, timeout=20):
    return subprocess.Popen(
        [sys.executable, "-m", "edgefer", "listen", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_listen_pretty_prints(broker):
    p = _listen("--mqtt", broker.url, "--count", "4", "--timeout", "20")
    time.sleep(1.5)  # let it subscribe
    sink = MqttSink.from_url(broker.url, device_id="cam1")
    tracker = Tracker()
    res = make_result(5)
    res.faces[0].track_id = None
    for ev in tracker.update(res):
        sink.event(ev)
    sink.publish(res)
    sink.close()
    out, err = p.communicate(timeout=30)
    print(out)
    assert p.returncode == 0, err
    lines = out.splitlines()
    assert any("cam1 AVAILABILITY" in ln or "availability: online" in ln for ln in lines)
    assert any("cam1 EVENT track 1 track_started" in ln for ln in lines)
    assert any("cam1 frame 5: #1 " in ln for ln in lines)


def test_listen_json(broker):
    sink = MqttSink.from_url(broker.url, device_id="cam2")
    sink.status({"state": "running"})
    sink.wait_connected(5)
    time.sleep(0.3)
    p = _listen("--mqtt", broker.url, "--topic", "edgefer/cam2/status", "--json", "--count", "1", "--timeout", "10")
    out, err = p.communicate(timeout=30)
    sink.close()
    doc = json.loads(out.splitlines()[0])
    assert doc["topic"] == "edgefer/cam2/status" and doc["retain"] and doc["payload"]["state"] == "running"


def test_listen_bad_url_and_no_broker():
    p = _listen("--mqtt", "http://x")
    _, err = p.communicate(timeout=20)
    assert p.returncode == 78 and err.strip().count("\n") == 0 and "unknown MQTT URL scheme" in err
    p = _listen("--mqtt", "mqtt://127.0.0.1:9", "--connect-timeout", "2")
    _, err = p.communicate(timeout=20)
    assert p.returncode == 1 and "refused" in err and "Traceback" not in err
