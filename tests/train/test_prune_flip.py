"""A cheaper network for the same budget: `--prune-to` narrows a trained network, keeping its most useful
channels; `export --flip` averages each face with its mirror image inside the ONNX graph. The MACs
per face are read from the exported graph itself, which is what the 150 MFLOP limit is about."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from edgefer_cli import cli

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")

from edgefer.contract import InputSpec, preprocess  # noqa: E402
from edgefer.edge.classifier import default_model_path  # noqa: E402
from edgefer.modelinfo import read_onnx_info  # noqa: E402
from edgefer.train.export import onnx_macs_per_face  # noqa: E402
from edgefer.train.from_onnx import network_from_onnx  # noqa: E402
from edgefer.train.model import EmotionNet, count_macs  # noqa: E402
from edgefer.train.prune import block_widths, keep_channels, prune  # noqa: E402


@pytest.fixture(scope="module")
def faces(fer_npz) -> torch.Tensor:
    d = np.load(fer_npz)
    return torch.from_numpy(preprocess(d["pixels"][d["usage"] == "Training"][:512], InputSpec(size=48)))


@pytest.fixture(scope="module")
def embedded_net(faces) -> EmotionNet:
    return network_from_onnx(default_model_path(), calib=faces[:256])


def test_embedded_model_is_within_150_mflops_per_face():
    """Counted on the shipped graph (convolutions and heads at batch 1), not on the PyTorch module."""
    macs = onnx_macs_per_face(onnx.load(default_model_path()))
    assert 2 * macs <= 150e6
    config = read_onnx_info(default_model_path()).extra["config"]
    net = EmotionNet(tuple(config["widths"]), depths=tuple(config.get("depths", (1, 2, 2, 1))))
    assert macs == count_macs(net, 48)


def test_pruning_to_the_same_widths_changes_nothing(embedded_net, faces):
    same = prune(embedded_net, embedded_net.widths, faces[:256])
    with torch.no_grad():
        for a, b in zip(same(faces[256:]), embedded_net(faces[256:])):
            torch.testing.assert_close(a, b)


def test_pruning_keeps_useful_channels(embedded_net, faces):
    """Half the MACs: the kept channels (no fine-tuning yet) agree with the full network far more often than
    the same number of channels chosen at random, the baseline a useless score would match."""
    widths = (24, 44, 90, 180)
    small = prune(embedded_net, widths, faces[:256])
    assert small.widths == widths and small.depths == embedded_net.depths
    assert count_macs(small, 48) < 0.5 * count_macs(embedded_net, 48)
    with torch.no_grad():
        ref = embedded_net(faces[256:])[0].argmax(1)
        kept = float((small(faces[256:])[0].argmax(1) == ref).float().mean())
        rand = random_prune(embedded_net, widths, torch.Generator().manual_seed(0))
        chance = float((rand(faces[256:])[0].argmax(1) == ref).float().mean())
    assert kept > chance + 0.15, (kept, chance)


def random_prune(net: EmotionNet, widths: tuple[int, ...], gen: torch.Generator) -> EmotionNet:
    """The same slicing as `prune`, with channels chosen at random instead of by score."""
    outs = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    keep = [torch.randperm(n, generator=gen)[:w].sort().values for n, w in zip(outs, block_widths(widths, net.depths))]
    return keep_channels(net, widths, keep)


def test_pruning_wider_than_the_start_is_refused(embedded_net, faces):
    with pytest.raises(ValueError, match="none larger"):
        prune(embedded_net, (32, 64, 128, 512), faces[:64])


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory, small_slice) -> Path:
    """A fine-tune of the embedded model pruned to half its widths, a few steps, exported with --flip."""
    out = tmp_path_factory.mktemp("run")
    r = cli("train", "--data", small_slice, "--out", out, "--init", default_model_path(), "--prune-to", "16,32,64,128",
            "--epochs", "1", "--max-steps", "2", "--batch-size", "64", "--threads", "1")
    assert r.returncode == 0, r.stderr
    r = cli("export", "--checkpoint", out / "last.pt", "--out", out / "flip.onnx", "--flip", "--version", "0.0-test")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["parity_max_abs_diff"] < 1e-4
    r = cli("export", "--checkpoint", out / "last.pt", "--out", out / "plain.onnx", "--version", "0.0-test")
    assert r.returncode == 0, r.stderr
    return out


def test_flip_export_averages_a_face_and_its_mirror(pruned_run, small_slice):
    import onnxruntime as ort

    x = preprocess(np.load(small_slice)["pixels"][:16], InputSpec(size=48))
    flip = ort.InferenceSession(str(pruned_run / "flip.onnx"), providers=["CPUExecutionProvider"])
    plain = ort.InferenceSession(str(pruned_run / "plain.onnx"), providers=["CPUExecutionProvider"])
    lo, it = flip.run(["logits", "intensity"], {"input": x})
    lo_m, it_m = flip.run(["logits", "intensity"], {"input": x[..., ::-1].copy()})
    np.testing.assert_allclose(lo, lo_m, atol=1e-5)  # a mirror image gets the same answer
    np.testing.assert_allclose(it, it_m, atol=1e-6)
    np.testing.assert_allclose(np.exp(lo).sum(1), 1.0, atol=1e-5)  # logits are log-probabilities

    def probs(logits):
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    a_lo, a_it = plain.run(["logits", "intensity"], {"input": x})
    b_lo, b_it = plain.run(["logits", "intensity"], {"input": x[..., ::-1].copy()})
    np.testing.assert_allclose(np.exp(lo), (probs(a_lo) + probs(b_lo)) / 2, atol=1e-5)
    np.testing.assert_allclose(it, (a_it + b_it) / 2, atol=1e-6)


def test_flip_export_counts_two_passes_per_face(pruned_run):
    flip, plain = (onnx.load(pruned_run / f"{n}.onnx") for n in ("flip", "plain"))
    assert onnx_macs_per_face(flip) == 2 * onnx_macs_per_face(plain)
    assert onnx_macs_per_face(plain) == count_macs(EmotionNet((16, 32, 64, 128)), 48)
    info = read_onnx_info(pruned_run / "flip.onnx")
    assert info.extra["test_time_flip"] is True and info.extra["macs_per_face"] == onnx_macs_per_face(flip)
    assert tuple(info.extra["config"]["widths"]) == (16, 32, 64, 128)


def test_flip_model_evaluates_end_to_end(pruned_run, small_slice):
    r = cli("eval", small_slice, "--model", pruned_run / "flip.onnx", "--split", "PublicTest", "--json")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["n"] == 128 and 0 <= m["accuracy"] <= 1 and m["intensity_rmse"] < 0.5


def test_prune_without_init_is_one_line(small_slice, tmp_path):
    r = cli("train", "--data", small_slice, "--out", tmp_path / "run", "--prune-to", "16,32,64,128", "--max-steps", "1")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "--init" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_flip_model_converts_to_int8_for_tensorrt(pruned_run, small_slice, tmp_path):
    """The averaging tail (Concat of the mirror, Softmax, ReduceMean, Log) passes the Q/DQ check that
    guards TensorRT INT8 builds, and the INT8 model still answers with probabilities."""
    import onnxruntime as ort

    r = cli("calibration", "build", "--from", small_slice, "--out", tmp_path / "calib.npz", "--model",
            pruned_run / "flip.onnx", "--per-class", "8")
    assert r.returncode == 0, r.stderr
    r = cli("convert", "--model", pruned_run / "flip.onnx", "--to", "onnx-int8", "--calib", tmp_path / "calib.npz",
            "--out", tmp_path / "flip.int8.onnx", "--threads", "1")
    assert r.returncode == 0, r.stderr
    x = preprocess(np.load(small_slice)["pixels"][:8], InputSpec(size=48))
    sess = ort.InferenceSession(str(tmp_path / "flip.int8.onnx"), providers=["CPUExecutionProvider"])
    lo, it = sess.run(["logits", "intensity"], {"input": x})
    assert lo.shape == it.shape == (8, 7)
    np.testing.assert_allclose(np.exp(lo).sum(1), 1.0, atol=0.02)
    assert ((it >= 0) & (it <= 1)).all()
