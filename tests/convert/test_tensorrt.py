"""TensorRT: pure helpers here; building and running real engines where TensorRT and a GPU exist
(marked `tensorrt`: skipped with a reason elsewhere, a failure with EDGEFER_REQUIRE_TRT=1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgefer.convert.trt_build import profile_shapes
from edgefer.edge.backends.base import TensorSpec
from edgefer.edge.backends.tensorrt import check_feed, spec_shape
from edgefer.errors import ConfigError, UserError


def test_profile_shapes() -> None:
    assert profile_shapes(("N", 1, 48, 48)) == ((1, 1, 48, 48), (8, 1, 48, 48), (32, 1, 48, 48))
    assert profile_shapes((-1, 1, 48, 48), (1, 4, 16)) == ((1, 1, 48, 48), (4, 1, 48, 48), (16, 1, 48, 48))
    assert profile_shapes((1, 3, 640, 640)) is None
    with pytest.raises(UserError, match="dynamic dimensions besides the batch"):
        profile_shapes((1, 3, -1, -1))


def test_spec_shape_and_feed_checks() -> None:
    assert spec_shape([-1, 1, 48, 48]) == (None, 1, 48, 48)
    specs = [TensorSpec("input", (None, 1, 48, 48), np.dtype(np.float32))]
    fed = check_feed(specs, {"input": np.zeros((3, 1, 48, 48), np.float64)})
    assert fed["input"].dtype == np.float32 and fed["input"].flags.c_contiguous
    with pytest.raises(ConfigError, match="missing"):
        check_feed(specs, {"x": np.zeros((1, 1, 48, 48))})
    with pytest.raises(ConfigError, match="expects shape"):
        check_feed(specs, {"input": np.zeros((1, 1, 64, 64))})


def test_tensorrt_backend_refuses_without_tensorrt_or_sidecar(tmp_path: Path) -> None:
    from edgefer.edge.backends import open_backend

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(UserError):  # TensorRT missing here (install hint) or no sidecar on a Jetson
        open_backend(engine)


@pytest.mark.tensorrt
@pytest.mark.parametrize("target", ["trt-fp16", "trt-int8"])
def test_build_and_run_engine(target: str, fer_npz: Path, tmp_path: Path, edgefer_cli, calib_set: Path) -> None:
    """Build the engine with `edgefer convert`, run `edgefer eval` on it, compare with FP32."""
    out = tmp_path / f"model.{target}.engine"
    r = edgefer_cli("convert", "--to", target, "--calib", calib_set, "--eval", fer_npz, "--out", out,
                    "--timing-cache", tmp_path / "timing.cache", "--json")
    assert r.returncode == 0, r.stderr
    sidecar = json.loads(Path(str(out) + ".json").read_text())
    assert sidecar["key"]["precision"] == target.split("-")[1]
    r = edgefer_cli("eval", fer_npz, "--split", "PublicTest", "--model", out, "--json")
    assert r.returncode == 0, r.stderr
    ref = json.loads(edgefer_cli("eval", fer_npz, "--split", "PublicTest", "--json").stdout)
    assert abs(json.loads(r.stdout)["accuracy"] - ref["accuracy"]) <= 0.005
    # a tampered engine is refused, never loaded
    out.write_bytes(out.read_bytes() + b"\0")
    r = edgefer_cli("eval", fer_npz, "--split", "PublicTest", "--model", out)
    assert r.returncode != 0 and "sha256" in r.stderr


@pytest.mark.tensorrt
def test_engine_cache_builds_once_then_reuses(int8_run, tmp_path: Path) -> None:
    from edgefer.convert.device_engine import ensure_engine
    from edgefer.edge.classifier import Classifier

    onnx_path, _ = int8_run
    first = ensure_engine(onnx_path, tmp_path)
    mtime = first.stat().st_mtime_ns
    assert ensure_engine(onnx_path, tmp_path) == first and first.stat().st_mtime_ns == mtime
    clf = Classifier.open(first)
    probs, inten, finite = clf.classify(np.zeros((3, clf.size, clf.size), np.uint8))
    assert probs.shape == (3, 7) and finite.all()
    clf.close()
