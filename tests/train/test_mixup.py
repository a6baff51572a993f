"""`--mixup`: each batch blended with a shuffled copy of itself, labels and targets alike, seeded by the
run's generator; not with fixed teacher targets."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")


def test_mix_batch_blends_faces_and_targets_alike():
    from edgefer.train.recipe import mix_batch

    x = torch.randn(16, 1, 48, 48)
    y = torch.arange(16) % 7
    t = torch.rand(16, 7)
    w = (torch.arange(16) % 2).float()
    xm, tm, wm, (y2, lam) = mix_batch(x, y, t, w, 0.4, torch.Generator().manual_seed(1))
    assert 0.5 <= lam <= 1
    # each mixed face is lam * its own face + (1 - lam) * the face whose label is y2
    partner = torch.tensor([next(j for j in range(16) if torch.allclose(xm[i], lam * x[i] + (1 - lam) * x[j],
                                                                        atol=1e-5)) for i in range(16)])
    assert torch.equal(y[partner], y2)
    assert torch.allclose(tm, lam * t + (1 - lam) * t[partner]) and torch.allclose(wm, lam * w + (1 - lam) * w[partner])
    again = mix_batch(x, y, t, w, 0.4, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], xm), "seeded: the same generator gives the same blend"


def test_mixup_changes_the_run_and_is_reproducible(tmp_path, small_slice):
    from edgefer.data import load_faces
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    faces = load_faces(small_slice)
    small = dict(epochs=1, batch_size=64, threads=1, max_steps=3)
    runs = {"plain": TrainConfig(**small), "mix": TrainConfig(mixup=0.4, **small),
            "mix2": TrainConfig(mixup=0.4, **small)}
    weights = {}
    for name, cfg in runs.items():
        train(faces, tmp_path / name, cfg, progress=False)
        weights[name] = torch.load(tmp_path / name / "last.pt", weights_only=False)["model"]
    w = "features.0.0.weight"
    assert not torch.equal(weights["plain"][w], weights["mix"][w])
    assert all(torch.equal(weights["mix"][k], weights["mix2"][k]) for k in weights["mix"])


def test_mixup_with_fixed_teacher_targets_is_refused(tmp_path, small_slice):
    """The multi-view teacher's targets belong to the unblended faces: the two do not go together."""
    from edgefer.data import load_faces
    from edgefer.errors import UserError
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    cfg = TrainConfig(mixup=0.4, teacher=str(tmp_path / "t.pt"), teacher_views="multi", max_steps=1)
    with pytest.raises(UserError, match="teacher-views flip"):
        train(load_faces(small_slice), tmp_path / "r", cfg, progress=False)
    assert not (tmp_path / "r").exists()
