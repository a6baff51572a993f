"""Calibration sets: stratified, deterministic, Training rows only, verified on load."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgefer.calibration.build import build_calibration_set, stratified_indices
from edgefer.calibration.dataset import MIN_FACES, load, save
from edgefer.calibration.reader import ArrayDataReader
from edgefer.contract import FER2013_TO_EDGEFER, InputSpec, preprocess
from edgefer.errors import UserError


def edgefer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefer", *args], capture_output=True, text=True)


@pytest.fixture()
def split_npz(tmp_path: Path) -> Path:
    """A small npz in the shared format: Training rows are all 10s, PublicTest rows all 200s."""
    rng = np.random.default_rng(1)
    n_train, n_test = 280, 70
    labels = np.concatenate([np.arange(n_train) % 7, rng.integers(0, 7, n_test)])
    pixels = np.concatenate([np.full((n_train, 48, 48), 10, np.uint8), np.full((n_test, 48, 48), 200, np.uint8)])
    usage = np.array(["Training"] * n_train + ["PublicTest"] * n_test)
    path = tmp_path / "faces.npz"
    np.savez(path, pixels=pixels, labels=labels, usage=usage)
    return path


def test_stratified_indices_are_deterministic_and_capped() -> None:
    labels = np.repeat(np.arange(7), [50, 5, 50, 50, 50, 50, 50])
    a = stratified_indices(labels, per_class=10, limit=None, seed=0)
    assert np.array_equal(a, stratified_indices(labels, per_class=10, limit=None, seed=0))
    assert not np.array_equal(a, stratified_indices(labels, per_class=10, limit=None, seed=1))
    counts = np.bincount(labels[a], minlength=7)
    assert counts.tolist() == [10, 5, 10, 10, 10, 10, 10]
    capped = stratified_indices(labels, per_class=10, limit=21, seed=0)
    assert len(capped) == 21
    assert np.bincount(labels[capped], minlength=7).tolist() == [3] * 7  # class mix kept under the cap


def test_build_uses_training_rows_only_and_roundtrips(split_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "calib.npz"
    cset = build_calibration_set([split_npz], out, InputSpec(), per_class=30, split="Training")
    assert len(cset) == 7 * 30
    assert (cset.pixels == 10).all(), "calibration must come from Training rows only"
    again = load(out)
    assert np.array_equal(again.pixels, cset.pixels) and np.array_equal(again.labels, cset.labels)
    m = again.manifest
    assert m["counts"] == {c: 30 for c in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")}
    assert m["sources"][0]["split"] == "Training" and m["input_spec"]["size"] == 48 and len(m["sha256"]) == 64
    # deterministic: the same command builds the same set
    other = build_calibration_set([split_npz], tmp_path / "again.npz", InputSpec(), per_class=30)
    assert other.sha256 == cset.sha256
    # network input comes from the one preprocessing function
    assert np.array_equal(again.inputs(InputSpec()), preprocess(again.pixels, InputSpec()))


def test_labels_are_mapped_to_edgefer_order(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(7), 10)
    pixels = np.stack([np.full((48, 48), fer_id, np.uint8) for fer_id in labels])  # pixel value = FER-2013 id
    path = tmp_path / "ids.npz"
    np.savez(path, pixels=pixels, labels=labels, usage=np.array(["Training"] * 70))
    cset = build_calibration_set([path], tmp_path / "c.npz", InputSpec(), per_class=None)
    assert np.array_equal(FER2013_TO_EDGEFER[cset.pixels[:, 0, 0]], cset.labels)


def test_csv_source(tmp_path: Path) -> None:
    csv = tmp_path / "fer.csv"
    rows = ["emotion,pixels,Usage"] + [f"{i % 7},{' '.join(['7'] * 2304)},Training" for i in range(70)]
    csv.write_text("\n".join(rows) + "\n")
    cset = build_calibration_set([csv], tmp_path / "c.npz", InputSpec(), per_class=5)
    assert len(cset) == 35 and (cset.pixels == 7).all()


def test_too_few_faces_is_refused_and_nothing_written(split_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.npz"
    with pytest.raises(UserError, match=f"at least {MIN_FACES}"):
        build_calibration_set([split_npz], out, InputSpec(), per_class=2)
    assert not out.exists() and not list(tmp_path.glob(".small*"))


def test_corrupt_empty_and_mismatched_sets_are_refused(split_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "calib.npz"
    cset = build_calibration_set([split_npz], out, InputSpec(), per_class=10)
    with np.load(out) as d:
        manifest = str(d["manifest"])
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, pixels=cset.pixels + 1, labels=cset.labels, manifest=np.array(manifest))
    with pytest.raises(UserError, match="sha256"):
        load(tampered)
    empty = tmp_path / "empty.npz"
    m = json.loads(manifest)
    cset.pixels, cset.labels, cset.manifest = cset.pixels[:0], cset.labels[:0], m
    save(cset, empty)
    with pytest.raises(UserError, match="empty"):
        load(empty)
    with pytest.raises(UserError, match="expects 64x64"):
        load(out).check_for(InputSpec(size=64))
    with pytest.raises(UserError, match="not an edgefer calibration set"):
        load(split_npz)


def test_reader_yields_batches_and_rewinds() -> None:
    reader = ArrayDataReader("input", np.zeros((10, 1, 48, 48), np.float32), batch=4)
    sizes = []
    while (b := reader.get_next()) is not None:
        sizes.append(len(b["input"]))
    assert sizes == [2] * 5  # equal batches (largest divisor of 10 up to 4)
    reader.rewind()
    assert len(reader.get_next()["input"]) == 2
    assert ArrayDataReader("input", np.zeros((700, 1, 4, 4), np.float32)).batch == 50


def test_cli_build_and_refusals(fer_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "calib.npz"
    r = edgefer("calibration", "build", "--from", str(fer_npz), "--out", str(out), "--per-class", "20")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["n"] == 140 and load(out).manifest["sources"][0]["split"] == "Training"
    r = edgefer("calibration", "build", "--from", str(fer_npz), "--out", str(out))
    assert r.returncode != 0 and "--force" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = edgefer("calibration", "build", "--from", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x.npz"))
    assert r.returncode != 0 and not (tmp_path / "x.npz").exists()


def test_photos_go_through_the_deployment_pipeline(photos_dir: Path, yunet_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for sub in sorted(photos_dir.iterdir()):
        (folder / sub.name).mkdir(parents=True)
        for f in sorted(sub.glob("*.jpg"))[:6]:
            shutil.copy(f, folder / sub.name / f.name)
    cset = build_calibration_set([folder], tmp_path / "c.npz", InputSpec(), per_class=6, detector=yunet_path)
    assert len(cset) >= 36 and cset.pixels.shape[1:] == (48, 48)
    assert cset.manifest["sources"][0]["kind"] == "photos"
    assert set(np.unique(cset.labels)) == set(range(7))


def test_video_source_goes_through_the_deployment_pipeline(photos_dir: Path, yunet_path: Path, tmp_path: Path) -> None:
    """A recorded clip as calibration source: every 15th frame, the largest face found and aligned
    exactly as the daemon would (same detector, same aligner); unlabelled rows kept as one group."""
    import cv2
    from make_clips import make_frames, write_clip

    from edgefer.edge.pipeline import build_pipeline

    photo = cv2.imread(str(sorted((photos_dir / "happy").glob("*.jpg"))[0]), cv2.IMREAD_COLOR)
    frames, _ = make_frames(photo, frames=480, width=640, height=480, face_height=240)
    clip = write_clip(frames, tmp_path / "room.avi")
    cset = build_calibration_set([clip], tmp_path / "c.npz", InputSpec(), per_class=None, detector=yunet_path)
    src = cset.manifest["sources"][0]
    assert src["kind"] == "video" and src["images"] == 32, src
    assert len(cset) == 32 - src["no_face"] and src["no_face"] <= 2, src
    assert (cset.labels == -1).all()
    # the stored crops are what the daemon's detector + aligner make of the decoded frames
    cap = cv2.VideoCapture(str(clip))
    for _ in range(16):  # frame 15: the second one sampled
        ok, frame = cap.read()
        assert ok
    cap.release()
    pipeline = build_pipeline(detector=yunet_path)
    try:
        largest = max(pipeline.detector.detect(frame), key=lambda f: float(f.box[2] * f.box[3]))
        crop, _ = pipeline.aligner.align(frame, [largest])
    finally:
        pipeline.close()
    assert any(np.array_equal(crop[0], c) for c in cset.pixels)
    # a file that is not a video: one clear error, nothing written
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(UserError, match="broken.mp4"):
        build_calibration_set([bad], tmp_path / "bad.npz", InputSpec(), detector=yunet_path)
    assert not (tmp_path / "bad.npz").exists()
