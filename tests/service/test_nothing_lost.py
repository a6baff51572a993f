"""Nothing is lost by default: the real daemon, a real Mosquitto, outages and restarts.

- A one-shot run that ends with messages it could not deliver says how many and exits 75.
- The installed service's defaults (the configuration `install-service` writes, and the
  `$STATE_DIRECTORY` that systemd gives the unit) keep the MQTT buffer on disk: a broker outage
  during which the daemon is restarted twice loses nothing once the broker is back.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from broker import Subscriber, free_port

from edgefer.systemd.install import render_config


def _clip(tmp_path: Path, photos_dir: Path, frames: int = 40) -> Path:
    photo = cv2.imread(str(sorted((photos_dir / "happy").glob("*.jpg"))[0]))
    clip = tmp_path / "face.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    for i in range(frames):
        f = np.full((240, 320, 3), 80, np.uint8)
        f[20:220, 40 + i : 240 + i] = cv2.resize(photo, (200, 200))
        w.write(f)
    w.release()
    return clip


def _edgefer(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgefer", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_one_shot_run_with_the_broker_down_exits_75_and_says_how_many(tmp_path, photos_dir, yunet_path):
    clip = _clip(tmp_path, photos_dir)
    url = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    proc = _edgefer("run", "--source", str(clip), "--detector", str(yunet_path), "--mqtt", url, "--max-frames", "5",
                    "--mqtt-wait", "0.5")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(r"edgefer: error: (\d+) MQTT messages were not delivered and are lost \((.+)\); set \[mqtt\] "
                     r"state_dir .*--mqtt-wait SECONDS", last)
    assert m, last
    assert int(m.group(1)) >= 5  # one `faces` message a frame, plus events
    assert "refused" in m.group(2)
    assert time.monotonic() - t0 < 30


def test_one_shot_run_keeping_messages_on_disk_says_where(tmp_path, photos_dir, yunet_path):
    clip = _clip(tmp_path, photos_dir)
    url = f"mqtt://127.0.0.1:{free_port()}"
    proc = _edgefer("run", "--source", str(clip), "--detector", str(yunet_path), "--mqtt", url, "--max-frames", "5",
                    "--mqtt-wait", "0", env={"STATE_DIRECTORY": str(tmp_path / "state")})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(rf"edgefer: error: \d+ MQTT messages not delivered yet \(.+\); kept in "
                        rf"{re.escape(str(tmp_path / 'state' / 'mqtt'))} and sent on the next start", last), last
    assert (tmp_path / "state" / "mqtt").is_dir()


def test_installed_service_defaults_lose_nothing_across_two_restarts_during_an_outage(
    tmp_path, broker, photos_dir, yunet_path
):
    clip = _clip(tmp_path, photos_dir)
    cfg = tmp_path / "config.toml"
    # What `edgefer install-service --source CLIP` writes, with the broker the user points it at.
    cfg.write_text(render_config(str(clip)) + f'\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ndevice_id = "svc"\n')
    env = {"STATE_DIRECTORY": str(tmp_path / "var-lib-edgefer")}  # as systemd sets it for StateDirectory=edgefer
    jsonl = tmp_path / "produced.jsonl"
    # The subscriber's persistent session exists before the outage (as a real consumer's would).
    sub = Subscriber(broker.port, "edgefer/svc/faces", "consumer")
    assert sub.wait_connected()
    sub.close()
    broker.stop()

    def produced() -> list[str]:
        return jsonl.read_text().splitlines() if jsonl.exists() else []

    def daemon_until(more: int, then=None) -> None:
        start = len(produced())
        proc = _edgefer("run", "--config", str(cfg), "--detector", str(yunet_path), "--jsonl", str(jsonl), "--loop",
                        env=env)
        try:
            deadline = time.monotonic() + 60
            while len(produced()) < start + more and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            assert len(produced()) >= start + more, proc.stderr.read() if proc.poll() is not None else "too slow"
            if then is not None:
                then()
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err

    daemon_until(30)  # broker down
    daemon_until(30)  # restarted, broker still down
    assert (tmp_path / "var-lib-edgefer" / "mqtt").is_dir()

    subs: list[Subscriber] = []

    def broker_back_and_all_delivered() -> None:
        broker.start()
        subs.append(Subscriber(broker.port, "edgefer/svc/faces", "consumer"))
        assert subs[0].wait_connected()
        want = collections.Counter(_key(json.loads(line)) for line in produced())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = collections.Counter(_key(json.loads(m[1])) for m in subs[0].on("faces"))
            if not want - got:
                return
            time.sleep(0.2)

    daemon_until(30, then=broker_back_and_all_delivered)  # restarted again, broker back while it runs
    sub = subs[0]
    time.sleep(1.0)
    want = collections.Counter(_key(json.loads(line)) for line in produced())
    got = collections.Counter(_key(json.loads(m[1])) for m in sub.on("faces"))
    missing = want - got  # at least once: duplicates are allowed, a missing frame is not
    sub.close()
    print(f"\nproduced {sum(want.values())}, delivered {sum((want & got).values())} distinct "
          f"({sum(got.values())} with duplicates), lost {sum(missing.values())}; daemon started 3 times")
    assert sum(want.values()) >= 90
    assert not missing, f"{sum(missing.values())} of {sum(want.values())} produced frames never reached the broker"


def _key(doc: dict) -> tuple[int, float]:
    """A frame's identity across runs and loops: its index and its timestamp."""
    return doc["frame"], doc["timestamp"]
