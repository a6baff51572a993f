"""`edgefer train --holdout`: a seeded share of every class of the training rows is held out, never
trained on, and is what the run validates on, so that settings can be chosen without PublicTest."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from edgefer_cli import cli

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")


def test_holdout_mask_is_seeded_and_takes_every_class_alike():
    from edgefer.train.recipe import holdout_mask

    labels = np.concatenate([np.repeat(np.arange(7), [40, 4, 30, 100, 60, 50, 20]), [-1] * 10])
    mask = holdout_mask(labels, 0.25, seed=1)
    assert not mask[labels < 0].any()  # unlabelled rows are never held out
    assert np.array_equal(mask, holdout_mask(labels, 0.25, seed=1))
    assert not np.array_equal(mask, holdout_mask(labels, 0.25, seed=2))
    for c, n in enumerate([40, 4, 30, 100, 60, 50, 20]):
        assert mask[labels == c].sum() == round(0.25 * n), c


def test_run_validates_on_held_out_rows_it_never_trains_on(tmp_path, small_slice):
    from edgefer.data import load_faces
    from edgefer.train.checkpoint import load_checkpoint
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import evaluate_torch, holdout_mask, train

    faces = load_faces(small_slice)
    cfg = TrainConfig(epochs=1, batch_size=32, threads=2, holdout=0.25)
    train(faces, tmp_path / "r", cfg, progress=False)
    model, ck = load_checkpoint(tmp_path / "r" / "last.pt")
    tr = faces.split("Training")
    held = holdout_mask(tr.labels, 0.25, cfg.seed)
    trained = int(((tr.labels >= 0) & ~held).sum())
    assert 0 < held.sum() < len(held)
    assert ck["step"] == math.ceil(trained / 32)  # one epoch over the rows left, not all of them
    from edgefer.contract import InputSpec, preprocess

    x = torch.from_numpy(preprocess(tr.pixels[held], InputSpec(size=48)))
    val = evaluate_torch(model, x, tr.labels[held], tr.votes[held])
    assert ck["history"][-1]["val_accuracy"] == pytest.approx(val["accuracy"])
    assert ck["history"][-1]["val_intensity_rmse"] == pytest.approx(val["intensity_rmse"], rel=1e-5)


def test_cli_holdout_reaches_the_run_and_a_whole_split_is_refused(tmp_path, small_slice):
    r = cli("train", "--data", small_slice, "--out", tmp_path / "r", "--holdout", "0.2", "--max-steps", "1",
            "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r" / "config.json").read_text())["holdout"] == 0.2
    from edgefer.data import load_faces
    from edgefer.errors import UserError
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    with pytest.raises(UserError, match="share of the training rows"):
        train(load_faces(small_slice), tmp_path / "x", TrainConfig(holdout=1.0, max_steps=1), progress=False)
    assert not (tmp_path / "x").exists()


def test_resume_keeps_the_rows_it_started_with(tmp_path, small_slice):
    """Resuming a held-out run without --holdout (or with another seed) would train on the held-out
    rows and validate on others: refused in one line, the run left as it was."""
    from edgefer.data import load_faces
    from edgefer.errors import UserError
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    faces = load_faces(small_slice)
    cfg = TrainConfig(epochs=2, batch_size=64, threads=1, holdout=0.25, max_steps=1)
    train(faces, tmp_path / "r", cfg, progress=False)
    before = (tmp_path / "r" / "last.pt").read_bytes()
    for other in (TrainConfig(epochs=2, batch_size=64, threads=1), TrainConfig(epochs=2, batch_size=64, threads=1,
                                                                              holdout=0.25, seed=7)):
        with pytest.raises(UserError, match="resume it with the options it started with"):
            train(faces, tmp_path / "r", other, resume=True, progress=False)
    assert (tmp_path / "r" / "last.pt").read_bytes() == before
    train(faces, tmp_path / "r", TrainConfig(epochs=2, batch_size=64, threads=1, holdout=0.25), resume=True,
          progress=False)
