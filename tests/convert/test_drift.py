"""Drift figures (pure functions) and reports; YuNet INT8 and FP16 conversions on real photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgefer.convert.drift import box_iou, compare_detections, compare_predictions, verdict, write_reports


def test_compare_predictions_counts_agreement_and_changes() -> None:
    labels = np.array([0, 1, 2, 3])
    p_ref = np.eye(7, dtype=np.float32)[[0, 1, 2, 4]]  # 3 of 4 right
    p_cand = np.eye(7, dtype=np.float32)[[0, 1, 5, 4]]  # 2 of 4 right, one prediction changed
    inten = np.zeros((4, 7), np.float32)
    ok = np.ones(4, bool)
    d = compare_predictions(labels, None, (p_ref, inten, ok), (p_cand, inten + 0.1, ok))
    assert d["top1_agreement"] == 0.75
    assert d["accuracy_drop_points"] == pytest.approx(25.0)
    assert d["per_class_recall_change_points"]["fear"] == pytest.approx(-100.0)
    assert d["intensity_rmse_between_models"] == pytest.approx(0.1)
    assert "intensity_rmse_increase" not in d  # no FER+ votes, no intensity error against them


def test_non_finite_outputs_count_as_errors() -> None:
    labels = np.array([0, 1])
    p = np.eye(7, dtype=np.float32)[[0, 1]]
    inten = np.zeros((2, 7), np.float32)
    d = compare_predictions(labels, None, (p, inten, np.ones(2, bool)), (p, inten, np.array([True, False])))
    assert d["non_finite_converted"] == 1 and d["accuracy_drop_points"] == pytest.approx(50.0)


def test_box_iou_and_detection_drift() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [100, 100, 5, 5]], np.float32)
    assert box_iou(a, b)[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0])
    ref = [a, a, np.zeros((0, 4), np.float32), a]
    cand = [a, np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32), b[1:2]]
    d = compare_detections(ref, cand)
    assert d["faces_found_reference"] == 0.75 and d["faces_found_converted"] == 0.5
    assert d["found_drop_points"] == pytest.approx(25.0)
    assert d["recall_vs_reference"] == pytest.approx(1 / 3)


def test_verdict_and_reports(tmp_path: Path) -> None:
    labels = np.array([0, 1])
    p = np.eye(7, dtype=np.float32)[[0, 1]]
    inten = np.zeros((2, 7), np.float32)
    d = compare_predictions(labels, None, (p, inten, np.ones(2, bool)), (p, inten, np.ones(2, bool)))
    d.update(kind="classifier", reference="a.onnx", converted="b.onnx")
    assert verdict(d, None) == (True, [])
    assert verdict(d, 0.5)[0] and not verdict(d, -1.0)[0]
    written = write_reports(d, tmp_path / "b.onnx")
    names = sorted(p.name for p in written)
    assert "b.onnx.drift.json" in names and "b.onnx.drift.md" in names
    assert json.loads((tmp_path / "b.onnx.drift.json").read_text())["top1_agreement"] == 1.0


@pytest.fixture(scope="module")
def photo_subset(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 photos per class (fear has 8): a quick stand-in for the 712 of the acceptance run."""
    folder = tmp_path_factory.mktemp("photos")
    for sub in sorted(p for p in photos_dir.iterdir() if p.is_dir()):
        (folder / sub.name).mkdir()
        for f in sorted(sub.glob("*.jpg"))[:10]:
            shutil.copy(f, folder / sub.name / f.name)
    return folder


@pytest.mark.parametrize("target", ["onnx-int8", "onnx-fp16"])
def test_yunet_conversion_finds_the_same_faces(target: str, yunet_path: Path, photo_subset: Path, tmp_path: Path,
                                               edgefer_cli) -> None:
    out = tmp_path / f"yunet.{target}.onnx"
    args = ["convert", "--model", yunet_path, "--to", target, "--eval", photo_subset, "--out", out, "--json"]
    if target == "onnx-int8":
        args += ["--calib", photo_subset]
    r = edgefer_cli(*args)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["kind"] == "detector"  # recognised by its outputs: YuNet has no contract
    d = summary["drift"]
    assert d["images"] == 68
    assert d["found_drop_points"] <= 1.5  # at most one image of 68
    assert d["recall_vs_reference"] >= 0.95 and d["mean_iou"] >= 0.85
