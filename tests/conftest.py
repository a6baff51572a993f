"""Shared fixtures: where the shared data lives, and how optional hardware is gated."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # make_clips, derive_template, record_goldens


def _shared() -> Path:
    return Path(os.environ.get("EDGEFER_SHARED", ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = _shared()
    if not (path / "data").is_dir():
        pytest.fail(f"shared data folder not found at {path} (set EDGEFER_SHARED)")
    return path


@pytest.fixture(scope="session")
def fer_npz(shared_dir: Path) -> Path:
    return shared_dir / "data" / "fer2013" / "fer2013_trainval.npz"


@pytest.fixture(scope="session")
def photos_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "photos"


@pytest.fixture
def broker(tmp_path):
    """A running Mosquitto on 127.0.0.1 with its own config and persistence dir (tests/broker.py);
    stop/restart/pause it at will."""
    from broker import Mosquitto, have_mosquitto

    if not have_mosquitto():
        pytest.fail("mosquitto is not installed (apt-get install -y mosquitto mosquitto-clients)")
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.cleanup()


@pytest.fixture(scope="session")
def yunet_path(shared_dir: Path) -> Path:
    return shared_dir / "models" / "face_detection_yunet_2026may.onnx"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip TensorRT tests where TensorRT is absent, unless EDGEFER_REQUIRE_TRT=1 makes that a failure; skip
    GPU training tests where PyTorch has no CUDA device."""
    try:
        import tensorrt  # noqa: F401

        have_trt = True
    except ImportError:
        have_trt = False
    if not (have_trt or os.environ.get("EDGEFER_REQUIRE_TRT") == "1"):
        skip = pytest.mark.skip(reason="TensorRT is not installed here (set EDGEFER_REQUIRE_TRT=1 to fail instead)")
        for item in items:
            if "tensorrt" in item.keywords:
                item.add_marker(skip)
    if any("cuda" in item.keywords for item in items) and not _torch_has_cuda():
        skip = pytest.mark.skip(reason="PyTorch sees no CUDA GPU here")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


def _torch_has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
