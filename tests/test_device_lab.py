"""scripts/device-lab/lab.py: its cache keys and build folders here; the VM scenarios themselves
when asked for (EDGEFER_LAB=1: about 4-6 minutes on this machine kind)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[1] / "scripts" / "device-lab" / "lab.py"


@pytest.fixture(scope="module")
def lab():
    spec = importlib.util.spec_from_file_location("device_lab", LAB)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _wheel(path: Path, members: dict[str, bytes], when: tuple) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=when), data)
    return path


def test_a_rebuilt_wheel_of_the_same_sources_keeps_the_image_key(lab, tmp_path):
    a = _wheel(tmp_path / "a.whl", {"m.py": b"1"}, (2026, 1, 1, 0, 0, 0))
    b = _wheel(tmp_path / "b.whl", {"m.py": b"1"}, (2026, 12, 5, 1, 2, 4))
    c = _wheel(tmp_path / "c.whl", {"m.py": b"2"}, (2026, 1, 1, 0, 0, 0))
    assert a.read_bytes() != b.read_bytes()
    assert lab.content_digest(a) == lab.content_digest(b)
    assert lab.content_digest(a) != lab.content_digest(c)


def test_an_unfinished_build_is_removed_before_a_new_one(lab, tmp_path):
    dest = tmp_path / "image-abc"
    left = lab.fresh(dest)
    (left / "disk.img").write_bytes(b"half")
    again = lab.fresh(dest)
    assert again == left and list(again.iterdir()) == [] and not dest.exists()


def test_recipe_changes_change_the_base_key(lab):
    assert lab.digest(lab.SUITE, lab.PACKAGES, lab.MIRROR) != lab.digest(lab.SUITE, lab.PACKAGES + ["vim"], lab.MIRROR)


def _lab_missing() -> str | None:
    if os.geteuid() != 0:
        return "the device lab needs root"
    for tool in ("debootstrap", "qemu-system-x86_64", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.mark.slow
def test_service_scenarios_in_the_vm(lab, tmp_path):
    if os.environ.get("EDGEFER_LAB") != "1":
        pytest.skip("the device lab boots a VM for about 5 minutes: set EDGEFER_LAB=1 (or run scripts/device-lab/lab.py)")
    missing = _lab_missing()
    if missing:
        if os.environ.get("EDGEFER_REQUIRE_LAB") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    import subprocess

    t0 = time.monotonic()
    r = subprocess.run([sys.executable, str(LAB), "--boot-timeout", "1500"], capture_output=True, text=True, timeout=3600)
    print(r.stdout, f"\n{time.monotonic() - t0:.0f} s")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
