"""Label mappings and data loaders, on the real shared data and on small files made here."""

from __future__ import annotations

import numpy as np
import pytest

from edgefer.contract import (
    CLASS_NAMES,
    FER2013_TO_EDGEFER,
    InputSpec,
    ferplus_majority,
    ferplus_shares,
    ferplus_usable,
    preprocess,
)
from edgefer.data import load_faces
from edgefer.errors import UserError


def test_class_order_is_alphabetical_project_order():
    assert CLASS_NAMES == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def test_fer2013_mapping_by_name():
    fer_names = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # FER-2013 id order
    for fer_id, name in enumerate(fer_names):
        assert CLASS_NAMES[FER2013_TO_EDGEFER[fer_id]] == name


def test_ferplus_columns_by_name(fer_npz):
    vote_names = [str(v) for v in np.load(fer_npz)["vote_names"]]
    ferplus_name = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                    "neutral": "neutral", "sad": "sadness", "surprise": "surprise"}
    votes = np.zeros((7, 10), np.uint8)
    for i, c in enumerate(CLASS_NAMES):
        votes[i, vote_names.index(ferplus_name[c])] = 10
    assert (ferplus_majority(votes) == np.arange(7)).all()
    np.testing.assert_allclose(ferplus_shares(votes), np.eye(7))


def test_mapping_agrees_with_ferplus_on_real_data(fer_npz):
    """FER-2013 labels agree with the FER+ majority on about 63% of validation rows (data README);
    a wrong mapping gives far less."""
    faces = load_faces(fer_npz).split("PublicTest")
    maj = ferplus_majority(faces.votes)
    ok = maj >= 0
    agree = (maj[ok] == faces.labels[ok]).mean()
    assert 0.60 < agree < 0.67


def test_mean_share_baseline_rmse(fer_npz):
    """The issue's reference figure: predicting mean shares gives RMSE 0.259 on PublicTest."""
    faces = load_faces(fer_npz)
    tr, va = faces.split("Training"), faces.split("PublicTest")
    mean = ferplus_shares(tr.votes).mean(axis=0)
    rmse = np.sqrt(((ferplus_shares(va.votes) - mean) ** 2).mean())
    assert abs(rmse - 0.259) < 0.001
    assert ferplus_usable(va.votes).mean() > 0.99


def test_preprocess_range_and_shape():
    spec = InputSpec()
    x = preprocess(np.array([np.zeros((48, 48)), np.full((48, 48), 255)], np.uint8), spec)
    assert x.shape == (2, 1, 48, 48) and x.dtype == np.float32
    assert x[0].min() == -1.0 and x[1].max() == 1.0
    with pytest.raises(ValueError):
        preprocess(np.zeros((2, 40, 40), np.uint8), spec)


def test_csv_roundtrip(tmp_path, fer_npz):
    faces = load_faces(fer_npz).split("PublicTest").select(np.arange(3579) < 20)
    inv = np.argsort(FER2013_TO_EDGEFER)
    path = tmp_path / "fer2013.csv"
    with open(path, "w") as fh:
        fh.write("emotion,pixels,Usage\n")
        for px, lab in zip(faces.pixels, faces.labels):
            fh.write(f"{inv[lab]},{' '.join(map(str, px.ravel()))},PublicTest\n")
    back = load_faces(path)
    assert (back.pixels == faces.pixels).all() and (back.labels == faces.labels).all()
    assert back.votes is None and (back.usage == "PublicTest").all()


@pytest.mark.parametrize("content, message", [
    ("label,pixels\n0,1 2 3 4\n", "needs columns 'emotion' and 'pixels'"),
    ("emotion,pixels,Usage\n0,1 2 3,Training\n", "malformed row"),
    ("emotion,pixels,Usage\n9,1 2 3 4,Training\n", "malformed row"),
    ("emotion,pixels,Usage\n", "no rows"),
])
def test_bad_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_faces(path)


def test_bad_paths(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_faces(tmp_path / "missing.npz")
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="cannot read npz"):
        load_faces(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", foo=np.zeros(3))
    with pytest.raises(UserError, match="missing arrays"):
        load_faces(tmp_path / "y.npz")
    (tmp_path / "z.txt").write_text("x")
    with pytest.raises(UserError, match="unknown data format"):
        load_faces(tmp_path / "z.txt")


def test_unknown_split(fer_npz):
    with pytest.raises(UserError, match="PrivateTest"):
        load_faces(fer_npz).split("PrivateTest")


def test_select_keeps_paths_with_their_rows():
    """A photo folder's rows carry their file paths; a selection must keep each path with its row
    (calibration selects usable rows of a folder)."""
    from edgefer.data import FaceSet

    faces = FaceSet(pixels=np.zeros((3, 48, 48), np.uint8), labels=np.array([0, 3, 5]),
                    usage=np.array(["", "", ""]), paths=["a.jpg", "b.jpg", "c.jpg"])
    sel = faces.select(np.array([True, False, True]))
    assert sel.paths == ["a.jpg", "c.jpg"] and sel.labels.tolist() == [0, 5]
