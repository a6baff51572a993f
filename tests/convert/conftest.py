"""Fixtures for conversion tests: a calibration set and converted models, built once per session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run_edgefer(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefer", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def edgefer_cli():
    """Runs `python -m edgefer ARGS...` and returns the CompletedProcess."""
    return run_edgefer


@pytest.fixture(scope="session")
def conv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("convert")


@pytest.fixture(scope="session")
def calib_set(fer_npz: Path, conv_dir: Path) -> Path:
    from edgefer.calibration.build import build_calibration_set
    from edgefer.edge.classifier import default_model_path
    from edgefer.modelinfo import read_onnx_info

    out = conv_dir / "calib.npz"
    build_calibration_set([fer_npz], out, read_onnx_info(default_model_path()).input)
    return out


@pytest.fixture(scope="session")
def int8_run(fer_npz: Path, calib_set: Path, conv_dir: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """The acceptance command: INT8 with calibration from Training rows, drift on PublicTest."""
    out = conv_dir / "model.int8.onnx"
    r = run_edgefer("convert", "--to", "onnx-int8", "--calib", calib_set, "--eval", fer_npz,
                    "--split", "PublicTest", "--max-drop", "0.5", "--out", out, "--json")
    return out, r


@pytest.fixture(scope="session")
def small_eval(fer_npz: Path, conv_dir: Path) -> Path:
    """300 PublicTest rows in the shared npz format, for tests that need a drift run, not its figures."""
    import numpy as np

    with np.load(fer_npz) as d:
        idx = np.nonzero(d["usage"] == "PublicTest")[0][:300]
        arrays = {k: d[k][idx] for k in ("pixels", "labels", "usage", "ferplus_votes")}
    out = conv_dir / "small_eval.npz"
    np.savez(out, **arrays)
    return out
