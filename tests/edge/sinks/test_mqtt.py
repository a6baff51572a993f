"""The MQTT sink's topics and payloads, Home Assistant discovery, privacy, refused logins; real Mosquitto."""

from __future__ import annotations

import base64
import json
import re
import time

import cv2
import numpy as np
from broker import Mosquitto, Subscriber
from mqtt_scenarios import make_result

from edgefer.edge.sinks.base import Sink
from edgefer.edge.sinks.mqtt import MqttSink
from edgefer.edge.tracker import Tracker
from edgefer.types import Frame, FrameResult


def _wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_topics_and_payloads(broker):
    sub = Subscriber(broker.port, "#", "sub-topics")
    sub.wait_connected()
    sink = MqttSink.from_url(broker.url, device_id="dev", stats_interval_s=0.3)
    assert isinstance(sink, Sink)
    assert sink.wait_connected(5)
    tracker = Tracker()
    res = make_result(7)
    for fr in res.faces:
        fr.track_id = fr.smoothed_probabilities = fr.smoothed_intensity = fr.stable_emotion = None
    events = tracker.update(res)
    sink.publish(res)
    for ev in events:
        sink.event(ev)
    sink.status({"state": "running", "camera": "ok"})
    assert _wait(lambda: sub.on("faces") and sub.on("events") and sub.on("status") and sub.on("stats"))
    faces = json.loads(sub.on("faces")[0][1])
    assert faces["version"] == 1 and faces["device_id"] == "dev" and faces["frame"] == 7
    assert {"timestamp", "queued_at", "faces", "source"} <= set(faces)
    f0 = faces["faces"][0]
    assert f0["track_id"] == 1 and set(f0["smoothed_probabilities"]) == set(f0["probabilities"])
    assert {"box", "score", "landmarks", "emotion", "intensity", "smoothed_intensity", "stable_emotion"} <= set(f0)
    ev = json.loads(sub.on("events")[0][1])
    assert ev["type"] == "track_started" and ev["track_id"] == 1 and ev["version"] == 1
    st = json.loads(sub.on("status")[0][1])
    assert st["state"] == "running" and "timestamp" in st
    stats = json.loads(sub.on("stats")[-1][1])
    assert {"published", "delivered", "buffered", "dropped", "reconnects"} <= set(stats)
    assert _wait(lambda: sink.stats()["delivered"] == 2)
    assert [m[0] for m in sub.on("availability")][:1] == ["edgefer/dev/availability"]
    sink.close()
    sub.close()


def test_no_image_data_on_wildcard(broker, photos_dir):
    """Everything the sink publishes (with HA discovery on) carries no image bytes."""
    sub = Subscriber(broker.port, "#", "sub-privacy")
    sub.wait_connected()
    sink = MqttSink.from_url(broker.url, device_id="priv", stats_interval_s=0.2, homeassistant=True)
    assert sink.wait_connected(5)
    img = cv2.imread(str(sorted(photos_dir.glob("happy/*.jpg"))[0]))
    assert img is not None
    tracker = Tracker()
    for i in range(20):
        res = make_result(i)
        res.frame = Frame(img, i, time.time(), time.monotonic() + i / 30, "file://photo.jpg")
        for fr in res.faces:
            fr.track_id = None
        for ev in tracker.update(res):
            sink.event(ev)
        sink.publish(res)
    sink.status({"state": "running"})
    assert _wait(lambda: len(sub.on("faces")) == 20 and sub.on("stats") and sub.on("state"))
    sink.close()
    assert _wait(lambda: any(m[1] == b"offline" for m in sub.on("availability")))
    sub.close()
    b64 = re.compile(rb"[A-Za-z0-9+/=]{100,}")
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    topics = {m[0].split("/")[-1] if not m[0].startswith("homeassistant") else "discovery" for m in sub.messages}
    print(f"{len(sub.messages)} messages on {sorted(topics)}, largest {max(len(m[1]) for m in sub.messages)} bytes")
    for topic, payload, *_ in sub.messages:
        assert b"\xff\xd8\xff" not in payload and b"\x89PNG" not in payload, topic
        assert not b64.search(payload), topic
        assert base64.b64encode(jpeg[:48]) not in payload
        assert len(payload) < 4096, topic


def test_homeassistant_discovery_and_removal(broker):
    sub = Subscriber(broker.port, "homeassistant/#", "sub-ha")
    sub.wait_connected()
    sink = MqttSink.from_url(broker.url, device_id="kitchen-pi", homeassistant=True, homeassistant_remove_on_close=True)
    assert sink.wait_connected(5)
    res = make_result(1)
    sink.publish(res)
    assert _wait(lambda: len(sub.messages) >= 9)
    configs = {m[0]: json.loads(m[1]) for m in sub.messages if m[1]}
    assert "homeassistant/sensor/kitchen-pi/emotion/config" in configs
    emo = configs["homeassistant/sensor/kitchen-pi/emotion/config"]
    assert emo["state_topic"] == "edgefer/kitchen-pi/state" and emo["availability_topic"] == "edgefer/kitchen-pi/availability"
    assert emo["device"]["identifiers"] == ["edgefer_kitchen-pi"]
    assert len({c["unique_id"] for c in configs.values()}) == len(configs) == 9
    state = Subscriber(broker.port, "edgefer/kitchen-pi/state", "sub-ha-state")
    state.wait_connected()
    doc = json.loads(state.on("state")[0][1])
    assert doc["emotion"] == "happy" and set(doc["intensity"]) == set(res.faces[0].to_dict()["intensity"])
    state.close()
    sink.close()
    # removed cleanly: empty retained payloads; a newcomer sees no retained config at all
    assert _wait(lambda: sum(1 for m in sub.messages if m[1] == b"") == 9)
    late = Subscriber(broker.port, "homeassistant/#", "sub-ha-late")
    late.wait_connected()
    assert late.messages == []
    late.close()
    sub.close()


def test_refused_login_during_run_keeps_buffering(tmp_path, caplog, monkeypatch):
    caplog.set_level("INFO", logger="edgefer.mqtt")
    b = Mosquitto(users={"cam": "right"})
    b.start()
    try:
        monkeypatch.setenv("EDGEFER_MQTT_PASSWORD", "wrong")
        sink = MqttSink.from_url(b.url, username="cam", device_id="refused", close_timeout_s=0)
        for i in range(50):
            sink.publish(make_result(i))
            time.sleep(0.02)
        time.sleep(1.5)  # several reconnection attempts
        s = sink.stats()
        print("refused login:", json.dumps(s))
        assert not s["connected"] and s["buffered"] == 50 and s["dropped"] == 0
        assert "refused the login" in s["last_error"]
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "refused the login: Not authorized" in errors[0].getMessage()
        sink.close()
    finally:
        b.cleanup()


def test_close_flushes_what_is_buffered(broker):
    sub = Subscriber(broker.port, "edgefer/+/faces", "sub-flush")
    sub.wait_connected()
    sink = MqttSink.from_url(broker.url, device_id="flush")
    for i in range(300):
        sink.publish(make_result(i))
    sink.close()  # returns once all 300 are acknowledged (or close_timeout_s)
    assert sink.stats()["delivered"] == 300
    assert sub.wait_ids(set(range(300)), 5) == set()
    sub.close()


def test_numpy_values_in_events_are_serialised(broker):
    sink = MqttSink.from_url(broker.url, device_id="np")
    sink.event({"type": "emotion_changed", "track_id": np.int64(3), "probability": np.float32(0.5), "v": np.zeros(2)})
    sink.close()
    assert sink.stats()["delivered"] == 1


def test_frame_result_without_faces(broker):
    sink = MqttSink.from_url(broker.url, device_id="empty", homeassistant=True)
    sink.publish(FrameResult(Frame(np.zeros((1, 1, 3), np.uint8), 0, time.time(), time.monotonic())))
    sink.close()
    assert sink.stats()["delivered"] == 1
