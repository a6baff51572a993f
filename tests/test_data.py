"""Label mappings and data loaders, on the real shared data and on small files made here."""

from __future__ import annotations

import numpy as np
import pytest

from edgefer.contract import (
    CLASS_NAMES,
    FER2013_TO_EDGEFER,
    InputSpec,
    ferplus_at_top,
    ferplus_clear_majority,
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


def _votes(**named: int) -> list[int]:
    """One row of FER+ votes from column names."""
    cols = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
    return [named.get(c, 0) for c in cols]


# (votes, plurality label as ferplus_majority gives it, the FER+ paper's label, classes tied at the top)
HAND_MADE = [
    (_votes(neutral=4, sadness=4, happiness=2), "neutral", None, {"neutral", "sad"}),  # a tie: no clear majority
    (_votes(happiness=6, surprise=3, anger=1), "happy", "happy", {"happy"}),  # 6 of 9 once the single vote goes
    (_votes(neutral=5, sadness=1, anger=1, fear=1, disgust=1, surprise=1), "neutral", "neutral", {"neutral"}),
    (_votes(neutral=4, sadness=3, happiness=3), "neutral", None, {"neutral"}),  # 4 of 10: no clear majority
    (_votes(contempt=6, neutral=4), None, None, set()),  # contempt is not an edgefer class
    (_votes(unknown=1, NF=1, neutral=1), "neutral", None, {"neutral"}),  # single votes only: no label
]


def test_ferplus_labels_by_hand():
    """The three readings of the votes on rows worked out by hand: the plurality (ties to the first
    FER+ column), either class of a tie, and the FER+ paper's protocol (single votes dropped, more
    than half of the rest). The third row has a clear majority only because the single votes go."""
    votes = np.array([v for v, *_ in HAND_MADE], np.uint8)
    idx = {c: i for i, c in enumerate(CLASS_NAMES)}
    assert ferplus_majority(votes).tolist() == [idx.get(m, -1) for _, m, _, _ in HAND_MADE]
    assert ferplus_clear_majority(votes).tolist() == [idx.get(c, -1) if c else -1 for _, _, c, _ in HAND_MADE]
    for cls in CLASS_NAMES:
        at_top = ferplus_at_top(votes, np.full(len(votes), idx[cls]))
        assert at_top.tolist() == [cls in top for *_, top in HAND_MADE], cls


def test_fer_plus_metrics_by_hand():
    """`compute_metrics` scores the intensity argmax three ways: a prediction of sad on the 4-4 tie
    is wrong by the plurality, right with ties, and the tie is not scored by the paper's protocol."""
    from edgefer.evaluate import compute_metrics

    votes = np.array([v for v, *_ in HAND_MADE[:4]], np.uint8)
    pred = [CLASS_NAMES.index(c) for c in ("sad", "happy", "angry", "neutral")]
    intensity = np.eye(7, dtype=np.float32)[pred]
    m = compute_metrics(np.array(pred), intensity, intensity, votes=votes)
    assert m["ferplus_n"] == 4 and m["ferplus_accuracy"] == pytest.approx(2 / 4)
    assert m["ferplus_accuracy_ties"] == pytest.approx(3 / 4)
    assert m["ferplus_clear_n"] == 2 and m["ferplus_accuracy_clear"] == pytest.approx(1 / 2)


def test_clear_majorities_on_real_data(fer_npz):
    """On PublicTest about nine faces in ten have a clear FER+ majority, and where one exists it is
    the plurality label: the paper's protocol drops ambiguous faces and relabels none."""
    votes = load_faces(fer_npz).split("PublicTest").votes
    maj, clear = ferplus_majority(votes), ferplus_clear_majority(votes)
    assert ((clear == maj) | (clear == -1)).all()
    assert (clear >= 0).sum() == 3186 and (maj >= 0).sum() == 3529
