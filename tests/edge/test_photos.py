"""Labelled photo folders through the deployment detector and aligner."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgefer.contract import CLASS_NAMES
from edgefer.edge.photos import load_photo_folder
from edgefer.errors import UserError


@pytest.fixture()
def small_folder(tmp_path, photos_dir):
    root = tmp_path / "labelled"
    for cls in ("happy", "sad"):
        (root / cls).mkdir(parents=True)
        for p in sorted((photos_dir / cls).glob("*.jpg"))[:3]:
            shutil.copy(p, root / cls / p.name)
    (root / "sad" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    blank = np.full((200, 300, 3), 128, np.uint8)
    import cv2

    cv2.imwrite(str(root / "happy" / "wall.png"), blank)
    return root


def test_small_folder(small_folder, pipeline):
    fs = load_photo_folder(small_folder, pipeline)
    assert len(fs) == 6 and fs.pixels.shape == (6, 48, 48) and fs.pixels.dtype == np.uint8
    assert sorted(fs.labels.tolist()) == [CLASS_NAMES.index("happy")] * 3 + [CLASS_NAMES.index("sad")] * 3
    assert fs.no_face == 1 and [p.split("/")[-1] for p in fs.no_face_paths] == ["wall.png"]
    assert [p.split("/")[-1] for p in fs.unreadable_paths] == ["broken.jpg"]
    assert len(fs.paths) == 6 and all("broken" not in p for p in fs.paths)


def test_largest_face_per_image(tmp_path, photos_dir, pipeline):
    import cv2

    a = cv2.imread(str(sorted((photos_dir / "happy").glob("*.jpg"))[0]))
    b = cv2.imread(str(sorted((photos_dir / "angry").glob("*.jpg"))[0]))
    canvas = np.full((420, 700, 3), 100, np.uint8)
    canvas[10:360, 10:360] = a
    canvas[100:275, 450:625] = cv2.resize(b, (175, 175))
    (tmp_path / "root" / "neutral").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "root" / "neutral" / "two.png"), canvas)
    fs = load_photo_folder(tmp_path / "root", pipeline)
    assert len(fs) == 1
    crops, _ = pipeline.aligner.align(canvas, pipeline.select(pipeline.detector.detect(canvas))[:1])
    assert np.array_equal(fs.pixels[0], crops[0])


def test_bad_folders(tmp_path, pipeline):
    with pytest.raises(UserError, match="no such folder"):
        load_photo_folder(tmp_path / "missing", pipeline)
    (tmp_path / "flat").mkdir()
    with pytest.raises(UserError, match="no class subfolders"):
        load_photo_folder(tmp_path / "flat", pipeline)
    (tmp_path / "bad" / "happyish").mkdir(parents=True)
    with pytest.raises(UserError, match="unknown class folder 'happyish'"):
        load_photo_folder(tmp_path / "bad", pipeline)
    (tmp_path / "empty" / "happy").mkdir(parents=True)
    with pytest.raises(UserError, match="no images"):
        load_photo_folder(tmp_path / "empty", pipeline)


def test_all_shared_photos(photos_dir, pipeline, capsys):
    fs = load_photo_folder(photos_dir, pipeline)
    total = len(fs) + fs.no_face + len(fs.unreadable_paths)
    with capsys.disabled():
        print(f"\nphoto folder: {len(fs)} faces from {total} images, no face in {fs.no_face}")
    assert total == 712 and len(fs) / total >= 0.98
    assert set(fs.labels.tolist()) == set(range(7))
