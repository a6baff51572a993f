"""Fixtures of the training tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def fer_slice(fer_npz) -> Callable[[Path, int, int], Path]:
    """Writes the first `n_train` Training and `n_val` PublicTest rows of the shared npz to `path`,
    in the same format, and returns `path`."""
    d = np.load(fer_npz)

    def write(path: Path, n_train: int, n_val: int) -> Path:
        idx = np.concatenate([np.flatnonzero(d["usage"] == "Training")[:n_train],
                              np.flatnonzero(d["usage"] == "PublicTest")[:n_val]])
        np.savez(path, **{k: d[k][idx] for k in ("pixels", "labels", "usage", "ferplus_votes")})
        return path

    return write


@pytest.fixture(scope="session")
def small_slice(tmp_path_factory, fer_slice) -> Path:
    """256 Training and 128 PublicTest rows: enough for a few training steps and an eval."""
    return fer_slice(tmp_path_factory.mktemp("data") / "small.npz", 256, 128)
