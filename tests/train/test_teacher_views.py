"""The fixed multi-view teacher (`--teacher-views multi`): its views, its targets on real faces through the
embedded model, its cache, and a recipe run that learns from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")

from edgefer.contract import InputSpec, preprocess  # noqa: E402
from edgefer.data import load_faces  # noqa: E402
from edgefer.edge.classifier import default_model_path  # noqa: E402
from edgefer.errors import UserError  # noqa: E402
from edgefer.train import teacher_views as tv  # noqa: E402
from edgefer.train.config import TrainConfig  # noqa: E402
from edgefer.train.recipe import train  # noqa: E402

SPEC = InputSpec(size=48)


@pytest.fixture(scope="module")
def faces(fer_npz):
    public = load_faces(fer_npz).split("PublicTest")
    return public.select(np.arange(len(public)) < 48)


def test_views_move_the_face_as_described():
    """A shift of +2 px moves a bright dot 2 px right; the identity view is the crop itself."""
    img = np.zeros((1, 48, 48), np.uint8)
    img[0, 20, 20] = 255
    assert tv.view(img, 0, 0, 1, 0) is img
    moved = tv.view(img, 2, 0, 1, 0)
    assert np.unravel_index(moved[0].argmax(), (48, 48)) == (20, 22)
    assert (0, 0, 1, 0) in tv.VIEWS and len(tv.VIEWS) * 2 == 18


def test_targets_are_distributions_and_mirror_invariant(faces):
    """Through the embedded model: probabilities sum to 1, intensities lie in 0..1, and since the views
    are symmetric (each shift, rotation and its mirror), a face and its mirror get the same targets."""
    predict = tv.predictor(Path(default_model_path()), threads=1)
    probs, inten = tv.multi_view_targets(predict, faces.pixels, SPEC)
    assert probs.shape == inten.shape == (len(faces), 7)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert inten.min() >= 0 and inten.max() <= 1
    probs_m, inten_m = tv.multi_view_targets(predict, np.ascontiguousarray(faces.pixels[:, :, ::-1]), SPEC)
    assert np.abs(probs - probs_m).max() < 1e-3 and np.abs(inten - inten_m).max() < 1e-3
    single = predict(preprocess(faces.pixels, SPEC))[0]
    assert np.abs(probs - single).max() > 0.05, "the average over views is not the single view"


def test_targets_are_cached_per_teacher_and_faces(tmp_path, faces, monkeypatch):
    model = Path(default_model_path())
    first = tv.multi_view_targets_cached(model, faces.pixels, SPEC, tmp_path, threads=1)
    assert len(list(tmp_path.glob("teacher-views-*.npz"))) == 1

    def recompute(*_a, **_k):
        raise AssertionError("cached targets were computed again")

    monkeypatch.setattr(tv, "multi_view_targets", recompute)
    again = tv.multi_view_targets_cached(model, faces.pixels, SPEC, tmp_path, threads=1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with pytest.raises(AssertionError, match="computed again"):  # other faces: another key
        tv.multi_view_targets_cached(model, faces.pixels[:10], SPEC, tmp_path, threads=1)


def test_recipe_learns_from_the_fixed_targets(tmp_path, fer_npz):
    """A run with the multi-view teacher at weight 1 caches the targets in its folder and ends with other
    weights than the same run with the per-batch flip teacher."""
    data = load_faces(fer_npz)
    keep = np.flatnonzero(data.usage == "Training")[:256].tolist() + np.flatnonzero(data.usage == "PublicTest")[:64].tolist()
    data = data.select(np.isin(np.arange(len(data)), keep))
    small = dict(epochs=1, batch_size=64, threads=1, max_steps=2, teacher=str(default_model_path()), distill=1.0)
    w = {}
    for mode in ("flip", "multi"):
        train(data, tmp_path / mode, TrainConfig(teacher_views=mode, **small), progress=False)
        w[mode] = torch.load(tmp_path / mode / "last.pt", weights_only=False)["model"]["features.0.0.weight"]
    assert len(list((tmp_path / "multi").glob("teacher-views-*.npz"))) == 1
    assert not list((tmp_path / "flip").glob("teacher-views-*.npz"))
    assert not torch.equal(w["flip"], w["multi"])


def test_unknown_teacher_views_is_a_user_error(tmp_path, fer_npz):
    with pytest.raises(UserError, match="teacher views must be"):
        train(load_faces(fer_npz), tmp_path, TrainConfig(teacher=str(default_model_path()), teacher_views="ten"),
              progress=False)


def test_checkpoint_teacher_matches_its_export(tmp_path, fer_npz, faces):
    """A checkpoint teacher (run in PyTorch) and its exported ONNX (run by the classifier) give the same targets."""
    from edgefer.train.export import export

    data = load_faces(fer_npz)
    data = data.select(np.isin(np.arange(len(data)), np.flatnonzero(data.usage == "Training")[:128].tolist()
                               + np.flatnonzero(data.usage == "PublicTest")[:32].tolist()))
    last = train(data, tmp_path / "run", TrainConfig(epochs=1, batch_size=64, threads=1, max_steps=2), progress=False)
    template = [[16.0, 20.0], [32.0, 20.0], [24.0, 28.0], [18.0, 36.0], [30.0, 36.0]]
    export(last, tmp_path / "m.onnx", template, "0.0.1")
    from_pt = tv.multi_view_targets(tv.predictor(last, threads=1), faces.pixels, SPEC)
    from_onnx = tv.multi_view_targets(tv.predictor(tmp_path / "m.onnx", threads=1), faces.pixels, SPEC)
    assert all(np.abs(a - b).max() < 1e-4 for a, b in zip(from_pt, from_onnx))
