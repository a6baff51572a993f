"""`edgefer train --device`: a device this machine lacks is one line before anything is written; on a
CUDA machine a GPU run's checkpoint resumes, loads and exports on the CPU like any other."""

from __future__ import annotations

import pytest
from edgefer_cli import cli

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")


@pytest.mark.parametrize("device, message", [
    ("mps", "training runs on cpu or cuda"),
    ("tpu", "not a device name"),
    ("gpu0", "not a device name"),
    ("cuda:7", "CUDA GPU"),  # no CUDA here, or fewer than 8 GPUs
])
def test_a_device_this_machine_lacks_is_one_line(tmp_path, small_slice, device, message):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    out = tmp_path / "run"
    r = cli("train", "--data", small_slice, "--out", out, "--device", device, "--max-steps", "1")
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists(), "nothing may be written for a run that cannot start"


def test_train_device_names():
    from edgefer.train.config import train_device

    assert train_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        from edgefer.errors import UserError

        with pytest.raises(UserError, match="sees no CUDA GPU"):
            train_device("cuda")


@pytest.mark.cuda
def test_gpu_run_resumes_and_exports_on_the_cpu(tmp_path, small_slice):
    """Three steps on the GPU with a moving average, the rest of the epoch resumed on the CPU from
    that checkpoint, then export: the checkpoint is device-neutral and the figures are finite."""
    from edgefer.data import load_faces
    from edgefer.train.checkpoint import load_checkpoint
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    faces = load_faces(small_slice)
    small = dict(epochs=2, batch_size=64, threads=2, ema=0.9)
    train(faces, tmp_path / "r", TrainConfig(device="cuda", max_steps=3, **small), progress=False)
    ck = torch.load(tmp_path / "r" / "last.pt", map_location="cpu", weights_only=False)
    assert ck["step"] == 3 and "cuda_rng" in ck
    train(faces, tmp_path / "r", TrainConfig(device="cpu", **small), resume=True, progress=False)
    model, ck = load_checkpoint(tmp_path / "r" / "last.pt")
    assert ck["step"] > 3 and all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert 0 <= ck["history"][-1]["val_accuracy"] <= 1
    r = cli("export", "--checkpoint", tmp_path / "r" / "last.pt", "--out", tmp_path / "m.onnx")
    assert r.returncode == 0, r.stderr
