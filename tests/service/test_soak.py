"""A short run of benchmarks/soak.py (the 10-minute version is the benchmark itself)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak_benchmark", SOAK)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_short_soak(soak, tmp_path, yunet_path, photos_dir):
    clip = soak.make_clip(tmp_path / "soak.avi", frames=60, photo=sorted((photos_dir / "happy").glob("*.jpg"))[0])
    samples = soak.soak(15.0, 1.0, clip, yunet_path, threads=1)
    summary = soak.summarise(samples, warmup_fraction=0.3)
    print("\n", summary)
    result = soak.checks(summary, max_growth_mb=10.0)  # 15 s is mostly warm-up (allocator steps of a few MB); the 10-minute benchmark checks < 1 MB
    assert all(result.values()), (result, summary)
