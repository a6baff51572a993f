"""The real daemon with a broken INT8 artifact: the shadow check fails within the first faces, the
daemon falls back to FP32 and says so in one log line, on the MQTT status topic, on /healthz and in
the metrics; with `on_failure = "refuse"` it exits 78 with one line. A correct artifact passes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from broker import Subscriber, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "edge"))
from test_shadow import perturbed  # noqa: E402

from edgefer.edge.precision import embedded_int8_path  # noqa: E402


@pytest.fixture
def photos(photos_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for f in sorted((photos_dir / "happy").glob("*.jpg"))[:30]:
        shutil.copy(f, folder / f.name)
    return folder


def config(tmp_path: Path, yunet: Path, photos: Path, model: Path, on_failure: str, web: int, metrics: int) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[source]
uri = "{photos}"
loop = true
[detector]
model = "{yunet}"
[classifier]
model = "{model}"
[shadow]
faces = 20
on_failure = "{on_failure}"
[mqtt]
device_id = "shadowcam"
[web]
enabled = true
port = {web}
[metrics]
enabled = true
port = {metrics}
[service]
stats_interval_s = 0.3
""")
    return cfg


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


def run_until(proc: subprocess.Popen, sub: Subscriber, state: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        statuses = [json.loads(m[1]) for m in sub.on("status")]
        shadows = [s["shadow"] for s in statuses if "shadow" in s]
        if shadows and shadows[-1]["state"] == state:
            return shadows[-1]
        time.sleep(0.1)
    raise AssertionError(f"no status with shadow state {state!r}; last: {statuses[-1:] if statuses else None}")


@pytest.mark.parametrize("good", [False, True], ids=["broken", "correct"])
def test_daemon_shadow_check(good: bool, tmp_path, broker, yunet_path, photos) -> None:
    model = embedded_int8_path() if good else perturbed(embedded_int8_path(), tmp_path / "broken.int8.onnx")
    web, metrics = free_port(), free_port()
    cfg = config(tmp_path, yunet_path, photos, model, "fallback", web, metrics)
    sub = Subscriber(broker.port, "edgefer/shadowcam/#", client_id=f"shadow-sub-{good}")
    assert sub.wait_connected()
    proc = subprocess.Popen([sys.executable, "-m", "edgefer", "run", "--config", str(cfg), "--mqtt", broker.url],
                            stderr=subprocess.PIPE, text=True)
    try:
        shadow = run_until(proc, sub, "passed" if good else "failed")
        health = json.loads(get(f"http://127.0.0.1:{web}/healthz"))
        exposition = get(f"http://127.0.0.1:{metrics}/metrics").decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
        err = proc.stderr.read()
    assert rc == 0, err
    assert 20 <= shadow["faces"] <= 40
    assert health["shadow"]["state"] == shadow["state"]
    assert f'edgefer_shadow_check{{state="{shadow["state"]}"}} 1.0' in exposition
    if good:
        assert health["classifier"]["precision"] == "int8" and shadow["mean_prob_diff"] < 0.03
        assert "shadow check failed" not in err
    else:
        assert shadow["action"] == "fell back to FP32" and shadow["mean_prob_diff"] > 0.05
        assert health["classifier"]["precision"] == "fp32"
        lines = [ln for ln in err.splitlines() if "shadow check failed" in ln]
        assert len(lines) == 1 and "falling back to the FP32 model" in lines[0], err
    sub.close()


def test_daemon_refuses_a_broken_artifact_with_exit_78(tmp_path, broker, yunet_path, photos) -> None:
    model = perturbed(embedded_int8_path(), tmp_path / "broken.int8.onnx")
    cfg = config(tmp_path, yunet_path, photos, model, "refuse", free_port(), free_port())
    r = subprocess.run([sys.executable, "-m", "edgefer", "run", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 78, r.stderr
    assert "Traceback" not in r.stderr
    assert sum("shadow check failed" in ln for ln in r.stderr.splitlines()) >= 1


@pytest.mark.parametrize("precision", ["fp32", "int8", "auto"])
def test_run_precision_flag_picks_the_embedded_model(precision: str, yunet_path, photos) -> None:
    r = subprocess.run([sys.executable, "-m", "edgefer", "-v", "run", "--source", str(photos), "--precision", precision,
                        "--detector", str(yunet_path), "--max-frames", "2", "--jsonl", "-"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stderr.splitlines() if "edgefer.edge.runner: classifier:" in ln)
    if precision == "fp32":
        assert "embedded FP32, fp32" in line
    elif precision == "int8":
        assert "edgefer-fer-v1.int8.onnx, int8" in line
    else:
        assert "auto:" in line and "measured" in line  # the reason names the measurement
    assert len([ln for ln in r.stdout.splitlines() if ln.startswith("{")]) == 2
