"""Nothing leaves the device unasked: ONNX Runtime's own usage telemetry is off under edgefer.

ONNX Runtime's official wheels (1.29 and later) keep a device id and queue events for upload under
~/.cache/Microsoft on Linux. `import edgefer` sets ORT_DISABLE_TELEMETRY=1 unless the user set it,
and the systemd unit sets it too. The check runs `edgefer predict` with a fresh HOME: first with the
user's explicit opt-in (ORT_DISABLE_TELEMETRY=0) to see that this ONNX Runtime collects at all, then
as installed, which must leave nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CI_VARS = ("CI", "CONTINUOUS_INTEGRATION", "GITHUB_ACTIONS", "TF_BUILD", "BUILD_ID", "JENKINS_URL", "GITLAB_CI")


def _predict(home: Path, photo: Path, yunet: Path, **env: str) -> Path:
    home.mkdir()
    # ONNX Runtime keeps quiet under CI (CI=true, as our CI sets): the child runs as on a user's device.
    base = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME", *CI_VARS)}
    r = subprocess.run([sys.executable, "-m", "edgefer", "predict", str(photo), "--json", "--detector", str(yunet)],
                       capture_output=True, text=True, timeout=120, env={**base, "HOME": str(home), **env}, cwd=home)
    assert r.returncode == 0, r.stderr[-2000:]
    return home / ".cache" / "Microsoft"


def test_onnxruntime_telemetry_is_off(tmp_path, photos_dir, yunet_path):
    photo = sorted((photos_dir / "happy").glob("*.jpg"))[0]
    if not _predict(tmp_path / "opted-in", photo, yunet_path, ORT_DISABLE_TELEMETRY="0").exists():
        pytest.skip("this ONNX Runtime keeps no telemetry state even when asked to: nothing to turn off")
    left = _predict(tmp_path / "default", photo, yunet_path)
    assert not left.exists(), sorted(str(p) for p in left.rglob("*"))


def test_the_unit_turns_it_off_too():
    unit = (ROOT / "systemd" / "edgefer.service").read_text()
    assert "Environment=ORT_DISABLE_TELEMETRY=1" in unit.splitlines()
