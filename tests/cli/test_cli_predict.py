"""`edgefer predict` in a subprocess: JSON schema, overlays, and one-line errors for bad input."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edgefer.contract import CLASS_NAMES

EDGEFER = [sys.executable, "-m", "edgefer"]


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEFER, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "WARN:" not in ln]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory, photos_dir) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    (d / "sub").mkdir()
    shutil.copy(sorted((photos_dir / "happy").glob("*.jpg"))[0], d / "a.jpg")
    shutil.copy(sorted((photos_dir / "surprise").glob("*.jpg"))[0], d / "sub" / "b.jpg")
    return d


def test_json_lines_one_per_image(two_photos, yunet_path, tmp_path):
    p = cli("predict", two_photos, "--json", "--detector", yunet_path, "--annotate", tmp_path / "ann")
    assert p.returncode == 0, p.stderr
    lines = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert [Path(d["path"]).name for d in lines] == ["a.jpg", "b.jpg"]
    for d in lines:
        assert set(d) == {"path", "faces"} and len(d["faces"]) == 1
        face = d["faces"][0]
        assert set(face) == {"box", "score", "landmarks", "emotion", "probabilities", "intensity"}
        assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
        assert list(face["probabilities"]) == list(CLASS_NAMES) == list(face["intensity"])
        assert abs(sum(face["probabilities"].values()) - 1) < 1e-3
        assert face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)
    out = sorted(str(q.relative_to(tmp_path / "ann")) for q in (tmp_path / "ann").rglob("*.jpg"))
    assert out == ["a.jpg", "sub/b.jpg"]
    ann = cv2.imread(str(tmp_path / "ann" / "a.jpg"))
    assert ann.shape == cv2.imread(str(two_photos / "a.jpg")).shape
    assert not list((tmp_path / "ann").rglob("*.part"))


def test_plain_output(two_photos, yunet_path):
    p = cli("predict", two_photos / "a.jpg", "--detector", yunet_path)
    assert p.returncode == 0 and p.stdout.startswith(str(two_photos / "a.jpg") + ": ")
    assert any(name in p.stdout for name in CLASS_NAMES)


def test_sequence_tracks_across_the_listed_files_in_order(two_photos, yunet_path):
    """Two photos given as two files: without --sequence each is alone (no tracking fields, as the
    test above checks); with it they are frames 1/30 s apart of one scene, in argument order."""
    b, a = two_photos / "sub" / "b.jpg", two_photos / "a.jpg"
    p = cli("predict", b, a, "--json", "--sequence", "--detector", yunet_path)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert [Path(d["path"]).name for d in lines] == ["b.jpg", "a.jpg"]
    first, second = (d["faces"][0] for d in lines)
    assert first["track_id"] == second["track_id"] == 1
    assert first["smoothed_probabilities"] == first["probabilities"]
    alpha = 1 - math.exp(-(1 / 30) / 0.15)
    for n in CLASS_NAMES:
        p0, p1 = first["probabilities"][n], second["probabilities"][n]
        assert second["smoothed_probabilities"][n] == pytest.approx(p0 + alpha * (p1 - p0), abs=2e-4)
    assert second["smoothed_probabilities"] != second["probabilities"]
    plain = cli("predict", b, a, "--sequence", "--detector", yunet_path)
    assert plain.returncode == 0 and plain.stdout.splitlines()[1].startswith(f"{a}: track 1 ")


def test_missing_file(yunet_path, tmp_path):
    line = one_line_error(cli("predict", tmp_path / "nope.jpg", "--detector", yunet_path))
    assert "nope.jpg" in line


def test_unreadable_image(yunet_path, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    line = one_line_error(cli("predict", tmp_path / "bad.jpg", "--detector", yunet_path))
    assert "bad.jpg" in line and "not a readable image" in line


def test_folder_without_images(yunet_path, tmp_path):
    (tmp_path / "d").mkdir()
    line = one_line_error(cli("predict", tmp_path / "d", "--detector", yunet_path))
    assert "no images" in line


def test_corrupt_model_file(two_photos, yunet_path, tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x01garbage" * 50)
    p = cli("predict", two_photos / "a.jpg", "--detector", yunet_path, "--model", tmp_path / "m.onnx")
    assert "m.onnx" in one_line_error(p) and p.returncode == 78


def test_detector_with_wrong_sha256(two_photos, yunet_path, tmp_path):
    bad = tmp_path / yunet_path.name
    bad.write_bytes(yunet_path.read_bytes()[:-10])
    p = cli("predict", two_photos / "a.jpg", "--detector", bad)
    assert "sha256" in one_line_error(p) and p.returncode == 78


def test_no_detector_anywhere_names_the_file(two_photos, tmp_path):
    import os

    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), EDGEFER_OFFLINE="1")
    line = one_line_error(cli("predict", two_photos / "a.jpg", env=env))
    assert "face_detection_yunet_2026may.onnx" in line and str(tmp_path / "cache" / "edgefer") in line
