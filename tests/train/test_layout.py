"""The network's layout (`--widths`, `--depths`): other layouts train, export and come back from
ONNX exactly; the default layout keeps the module names of older checkpoints; bad layouts are one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgefer_cli import cli

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")

from edgefer.contract import InputSpec, preprocess  # noqa: E402
from edgefer.train.model import EmotionNet, count_macs  # noqa: E402


@pytest.fixture(scope="module")
def three_stage(tmp_path_factory, small_slice) -> Path:
    """A run of a three-stage network (8, 16, 16 channels; 1, 3, 2 convolutions), exported."""
    out = tmp_path_factory.mktemp("run")
    r = cli("train", "--data", small_slice, "--out", out, "--epochs", "1", "--max-steps", "2", "--batch-size", "64",
            "--threads", "1", "--widths", "8,16,16", "--depths", "1,3,2")
    assert r.returncode == 0, r.stderr
    r = cli("export", "--checkpoint", out / "last.pt", "--out", out / "m.onnx", "--version", "0.0-test")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["parity_max_abs_diff"] < 1e-4
    return out


def test_default_layout_keeps_the_module_names_of_older_checkpoints():
    net = EmotionNet()
    convs = [name for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [f"features.{i}.0" for i in (0, 2, 3, 5, 6, 8)]
    assert count_macs(net, 48) == 74_984_960


def test_stage9_layout_is_within_the_budget():
    """The re-balanced layout of docs/training-history.md (stage 9): 8 convolutions, <= 150 MFLOPs, <= 5 MB as FP32."""
    net = EmotionNet((32, 48, 96, 192), depths=(1, 2, 2, 3))
    assert 2 * count_macs(net, 48) <= 150e6
    assert 4 * sum(p.numel() for p in net.parameters()) <= 5e6
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 8


def test_other_layout_comes_back_from_onnx_exactly(three_stage, small_slice):
    import onnxruntime as ort

    from edgefer.train.from_onnx import network_from_onnx

    x = preprocess(np.load(small_slice)["pixels"][:32], InputSpec(size=48))
    net = network_from_onnx(three_stage / "m.onnx")
    assert (net.widths, net.depths) == ((8, 16, 16), (1, 3, 2))
    sess = ort.InferenceSession(str(three_stage / "m.onnx"), providers=["CPUExecutionProvider"])
    ref_logits, ref_int = sess.run(["logits", "intensity"], {"input": x})
    with torch.no_grad():
        logits, inten = net(torch.from_numpy(x))
    np.testing.assert_allclose(logits.numpy(), ref_logits, atol=1e-4)
    np.testing.assert_allclose(inten.numpy(), ref_int, atol=1e-5)


def test_fine_tune_keeps_the_layout_of_its_start(three_stage, small_slice, tmp_path):
    """--init of another layout than the (default) --widths/--depths: the run takes the start's layout."""
    r = cli("train", "--data", small_slice, "--out", tmp_path / "ft", "--init", three_stage / "m.onnx", "--epochs", "1",
            "--max-steps", "1", "--batch-size", "64", "--threads", "1")
    assert r.returncode == 0, r.stderr
    config = torch.load(tmp_path / "ft" / "last.pt", weights_only=False)["config"]
    assert (tuple(config["widths"]), tuple(config["depths"])) == ((8, 16, 16), (1, 3, 2))


def test_resume_with_another_layout_is_one_line(three_stage, small_slice):
    r = cli("train", "--data", small_slice, "--out", three_stage, "--resume", "--epochs", "2", "--threads", "1")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "another layout" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("widths, depths", [("32,64", "1,2,3"), ("32,64", "1,0")])
def test_bad_layout_is_refused(small_slice, tmp_path, widths, depths):
    r = cli("train", "--data", small_slice, "--out", tmp_path / "run", "--widths", widths, "--depths", depths)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "depth" in r.stderr
    assert not (tmp_path / "run").exists()


def test_the_two_sizes_are_within_their_budgets(small_slice, tmp_path):
    """Issue 24: fast <= 150 MFLOPs per face (the Pi's), large <= 1.5 GFLOPs; `--size large` trains that layout."""
    from edgefer.train.model import SIZES

    macs = {name: count_macs(EmotionNet(w, depths=d), 48) for name, (w, d) in SIZES.items()}
    assert macs["fast"] <= 75_000_000 < macs["large"] <= 750_000_000
    r = cli("train", "--data", small_slice, "--out", tmp_path / "run", "--size", "large", "--epochs", "1",
            "--max-steps", "1", "--batch-size", "32", "--threads", "1")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (tuple(cfg["widths"]), tuple(cfg["depths"])) == SIZES["large"]


@pytest.mark.parametrize("args, says", [(("--size", "large", "--widths", "8,16", "--depths", "1,1"), "not both"),
                                        (("--widths", "8,16"), "go together")])
def test_size_and_layout_options_conflict_in_one_line(small_slice, tmp_path, args, says):
    r = cli("train", "--data", small_slice, "--out", tmp_path / "run", *args)
    assert r.returncode != 0 and "Traceback" not in r.stderr and says in r.stderr
    assert not (tmp_path / "run").exists()


def test_another_layout_converts_and_drift_checks_as_the_default_does(three_stage, small_slice, tmp_path):
    """Issue 24: both sizes convert, calibrate and drift-check the same way; here a third layout, so that
    nothing in the conversion chain assumes the default network."""
    r = cli("calibration", "build", "--from", small_slice, "--split", "Training", "--out", tmp_path / "calib.npz")
    assert r.returncode == 0, r.stderr
    r = cli("convert", "--model", three_stage / "m.onnx", "--to", "onnx-int8", "--calib", tmp_path / "calib.npz",
            "--eval", small_slice, "--out", tmp_path / "m.int8.onnx", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["passed"] and "x86-avx2" in summary["int8"]["exact_on"]
    report = json.loads((tmp_path / "m.int8.onnx.drift.json").read_text())
    assert report["n"] == 128 and report["kind"] == "classifier" and report["non_finite_converted"] == 0
    assert report["intensity_rmse_between_models"] < 0.05
    from edgefer.modelinfo import read_onnx_info

    assert read_onnx_info(tmp_path / "m.int8.onnx").precision == "int8"
