"""`scripts/train_on_gpu.{py,sh}`: any recipe on a lent GPU in calls of the device tool, resumable
across calls. Run here on the CPU (DEVICE=cpu): pack, a first call, a second that continues it on the
same machine, and a third on a "fresh" machine from the checkpoint brought back, which must end where
one uninterrupted run ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")
ROOT = Path(__file__).resolve().parents[2]


def call(tmp: Path, name: str, out: Path, work: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "DEVICE": "cpu", "GPU_DIR": str(tmp / "gpu"), "GPU_WORK": str(work),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out.mkdir(parents=True)
    return subprocess.run(["bash", "scripts/train_on_gpu.sh", name, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_pack_train_resume_and_bring_back(tmp_path, small_slice, yunet_path):
    py = [sys.executable, str(ROOT / "scripts" / "train_on_gpu.py")]
    r = subprocess.run([*py, "pack", "--data", str(small_slice), "--detector", str(yunet_path), "--dest",
                        str(tmp_path / "gpu")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "gpu" / "fer.npz.xz").stat().st_size < Path(small_slice).stat().st_size
    recipe = ("--epochs", "2", "--threads", "1", "--batch-size", "64", "--cls-target", "ferplus-soft", "--holdout", "0.25")

    first = call(tmp_path, "r1", tmp_path / "out1", tmp_path / "work", *recipe, "--max-steps", "3")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    kept = sorted(p.name for p in (tmp_path / "out1").iterdir())
    assert kept == ["last.pt", "logs.tar", "status.json", "weights-fp16.pt"]
    status = json.loads((tmp_path / "out1" / "status.json").read_text())
    assert status["epochs_done"] == 1 and status["epochs_planned"] == 2 and not status["cut_by_budget"]
    with tarfile.open(tmp_path / "out1" / "logs.tar") as t:
        assert {"history.json", "config.json", "train.log"} <= set(t.getnames())

    # the same machine, the next call: continues in its own folder
    second = call(tmp_path, "r1", tmp_path / "out2", tmp_path / "work", *recipe)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert json.loads((tmp_path / "out2" / "status.json").read_text())["epochs_done"] == 2
    assert "resumed from" in second.stdout

    # a fresh machine (another work folder) from the first call's checkpoint, carried back by `pack --resume`
    r = subprocess.run([*py, "pack", "--data", str(small_slice), "--detector", str(yunet_path), "--dest",
                        str(tmp_path / "gpu"), "--resume", f"r1={tmp_path / 'out1' / 'last.pt'}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    third = call(tmp_path, "r1", tmp_path / "out3", tmp_path / "fresh", *recipe)
    assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-2000:]
    a = torch.load(tmp_path / "out2" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "out3" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])

    from edgefer.train.checkpoint import load_checkpoint

    net, ck = load_checkpoint(tmp_path / "out3" / "weights-fp16.pt")
    assert net.widths == (32, 64, 128, 256) and ck["config"]["cls_target"] == "ferplus-soft"


def test_a_call_without_packed_data_says_so(tmp_path):
    r = call(tmp_path, "r1", tmp_path / "out", tmp_path / "work", "--epochs", "1")
    assert r.returncode == 2 and "fer.npz.xz missing" in r.stderr and "Traceback" not in r.stderr


def test_big_checkpoints_come_back_in_parts_and_join(tmp_path):
    py = [sys.executable, str(ROOT / "scripts" / "train_on_gpu.py")]
    blob = os.urandom(2 * 15 * 1024 * 1024 + 1000)
    for i, k in enumerate(range(0, len(blob), 15 * 1024 * 1024)):
        (tmp_path / f"last.pt.part-a{'abc'[i]}").write_bytes(blob[k:k + 15 * 1024 * 1024])
    r = subprocess.run([*py, "join", str(tmp_path / "last.pt.part-aa"), str(tmp_path / "joined.pt")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "joined.pt").read_bytes() == blob
