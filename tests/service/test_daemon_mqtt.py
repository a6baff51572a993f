"""The real daemon publishing to a real Mosquitto: every frame delivered, status/heartbeats, no image
data on the wire, `offline` published on SIGTERM within the 5 s stop budget."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
from broker import Subscriber


def test_daemon_to_broker_and_offline_on_sigterm(tmp_path, broker, yunet_path, photos_dir):
    photo = cv2.imread(str(sorted((photos_dir / "happy").glob("*.jpg"))[0]))
    clip = tmp_path / "face.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    for i in range(40):
        f = np.full((240, 320, 3), 80, np.uint8)
        f[20:220, 40 + i:240 + i] = cv2.resize(photo, (200, 200))
        w.write(f)
    w.release()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[source]
uri = "{clip}"
[detector]
model = "{yunet_path}"
[mqtt]
device_id = "testcam"
[service]
stats_interval_s = 0.5
""")
    sub = Subscriber(broker.port, "edgefer/testcam/#", client_id="edgefer-test-sub")
    assert sub.wait_connected()
    jsonl = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edgefer", "run", "--config", str(cfg), "--mqtt", broker.url,
                             "--jsonl", str(jsonl), "--loop"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while len(sub.ids()) < 60 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(sub.ids()) >= 60
    finally:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
        took = time.monotonic() - t0
        err = proc.stderr.read()
    assert rc == 0 and took < 5.0, err
    produced = [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()]
    # Every processed frame reached the broker (frame numbers restart when the looping file restarts).
    assert not sub.wait_ids(set(produced), timeout=5)
    assert len(sub.ids()) >= len(produced)
    availability = sub.on("availability")
    assert availability[-1][1] == b"offline", availability[-3:]
    statuses = [json.loads(m[1]) for m in sub.on("status")]
    assert statuses and any(s.get("state") == "streaming" for s in statuses), statuses[-1:]
    # No image data anywhere on the wire unless asked for.
    for topic, payload, *_ in sub.messages:
        assert not payload.startswith((b"\xff\xd8\xff", b"\x89PNG")), topic
        assert not re.search(rb"[A-Za-z0-9+/]{512,}", payload), topic
    sub.close()
