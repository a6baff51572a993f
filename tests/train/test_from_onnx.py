"""A trainable network rebuilt from an exported ONNX model (`train/from_onnx.py`): exact in eval mode
against ONNX Runtime, close in train mode once calibrated, and usable as --init and --teacher."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")

from edgefer.contract import InputSpec, preprocess  # noqa: E402
from edgefer.data import load_npz  # noqa: E402
from edgefer.edge.classifier import default_model_path  # noqa: E402


@pytest.fixture(scope="module")
def faces(fer_npz) -> tuple[torch.Tensor, np.ndarray]:
    """512 preprocessed Training faces (calibration) and 512 PublicTest faces."""
    data = load_npz(fer_npz)
    spec = InputSpec(size=48)
    calib = preprocess(data.split("Training").pixels[:512], spec)
    return torch.from_numpy(calib), preprocess(data.split("PublicTest").pixels[:512], spec)


def _train_mode(net, x: np.ndarray) -> torch.Tensor:
    """Logits with batch norm on the batch's own statistics, as in training (dropout off)."""
    net.train()
    net.dropout.p = 0.0
    with torch.no_grad():
        return net(torch.from_numpy(x))[0]


def test_rebuilt_network_is_the_onnx_model_in_eval_mode(faces):
    import onnxruntime as ort

    from edgefer.train.from_onnx import network_from_onnx

    calib, x = faces
    sess = ort.InferenceSession(str(default_model_path()), providers=["CPUExecutionProvider"])
    ref_logits, ref_int = sess.run(None, {sess.get_inputs()[0].name: x})
    for c in (None, calib):
        net = network_from_onnx(default_model_path(), c)
        with torch.no_grad():
            logits, inten = net(torch.from_numpy(x))
        np.testing.assert_allclose(logits.numpy(), ref_logits, atol=1e-4)
        np.testing.assert_allclose(inten.numpy(), ref_int, atol=1e-5)


def test_calibration_makes_train_mode_start_where_the_model_is(faces):
    """Without calibration, batch statistics wreck the folded network in train mode; with it, train
    mode predicts what the model predicts on other faces than the calibration batch."""
    from edgefer.train.from_onnx import network_from_onnx

    calib, x = faces
    model = network_from_onnx(default_model_path(), calib)
    with torch.no_grad():
        expected = model(torch.from_numpy(x))[0].argmax(1)
    plain = (_train_mode(network_from_onnx(default_model_path()), x).argmax(1) == expected).float().mean()
    calibrated = (_train_mode(model, x).argmax(1) == expected).float().mean()
    assert calibrated >= 0.95, calibrated
    assert plain < 0.6, plain


def test_fine_tune_and_distil_from_the_default_model(tmp_path, fer_slice):
    """--init and --teacher take the exported default model: after two steps at a tiny learning rate
    the run validates near the default model's accuracy (a fresh network scores about 25%)."""
    npz = fer_slice(tmp_path / "slice.npz", 256, 512)
    model = default_model_path()
    r = subprocess.run([sys.executable, "-m", "edgefer", "train", "--data", npz, "--out", tmp_path / "run",
                        "--init", model, "--teacher", model, "--epochs", "1", "--max-steps", "2", "--lr", "1e-4",
                        "--batch-size", "64", "--threads", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["val_accuracy"] >= 0.6, history[-1]


def test_onnx_without_contract_is_refused(tmp_path, fer_npz, yunet_path):
    """Refused in one line, before the slow preparation of re-aligned crops (which would write a cache)."""
    import onnx

    proto = onnx.load(str(default_model_path()))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    r = subprocess.run([sys.executable, "-m", "edgefer", "train", "--data", fer_npz, "--out", tmp_path / "run",
                        "--init", str(bare), "--realigned-frac", "0.5", "--detector", yunet_path],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "not an edgefer model" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "run").glob("*realign*"))


def test_folding_the_intensity_head_into_the_class_head(faces, tmp_path):
    """`fold_heads` (issue 24, round 9): through ONNX Runtime on real faces, the folded model's logits are
    the source's plus alpha times the log-odds of its intensities, and its intensities are the source's
    bit for bit; the contract records the fold and drops the source's validation figures."""
    import onnxruntime as ort

    from edgefer.modelinfo import read_onnx_info
    from edgefer.train.export import fold_heads

    src, out = default_model_path(), tmp_path / "fold.onnx"
    info = fold_heads(src, out, 0.5, "test-fold")
    x = faces[1]

    def run(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})

    (lo0, it0), (lo1, it1) = run(src), run(out)
    assert np.array_equal(it0, it1)
    p = np.clip(it0.astype(np.float64), 1e-4, 1 - 1e-4)
    sure = (it0 > 1e-4).all(1) & (it0 < 1 - 1e-4).all(1)  # log-odds recoverable from the sigmoid's output
    assert sure.mean() > 0.5
    np.testing.assert_allclose(lo1[sure], (lo0 + 0.5 * np.log(p / (1 - p)))[sure], atol=2e-3)
    assert (lo1.argmax(1) != lo0.argmax(1)).any()
    back = read_onnx_info(out)
    assert back.version == "test-fold" and back.validation == {} and info.extra["fold_heads"]["alpha"] == 0.5
    assert back.extra["fold_heads"]["source_version"] == read_onnx_info(src).version
