"""Issue 24's training parts: camera-robust augmentation (`train/camera.py`, `--camera-aug`) and the
classification head's target (`--cls-target`, `--cls-target-weight`), on real FER-2013 faces."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")


@pytest.fixture(scope="module")
def faces(fer_npz):
    with np.load(fer_npz) as d:
        return d["pixels"][:64].copy(), d["labels"][:64].copy(), d["ferplus_votes"][:64].copy()


def sharpness(f: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(f.astype(np.float32), cv2.CV_32F).var())


def test_each_camera_step_does_what_it_says(faces):
    from edgefer.train.camera import STEPS, CameraConfig, degrade_one

    px = faces[0]
    cfg = CameraConfig(p=1.0)
    rng = np.random.default_rng(0)
    out = {s: np.stack([degrade_one(f, cfg, rng, only=s) for f in px]) for s in STEPS}
    for s, o in out.items():
        assert o.shape == px.shape and o.dtype == np.uint8, s
        assert np.abs(o.astype(int) - px).mean() > 0.5, f"{s} left the faces as they were"
    sharp = np.mean([sharpness(f) for f in px])
    for s in ("lowres", "motion"):  # lose fine detail
        assert np.mean([sharpness(f) for f in out[s]]) < 0.7 * sharp, s
    assert np.mean([sharpness(f) for f in out["noise"]]) > sharp  # adds high frequencies
    # exposure moves the mean brightness, both ways across the faces
    d = out["exposure"].mean((1, 2)) - px.mean((1, 2))
    assert (d > 5).any() and (d < -5).any()


def test_h264_stream_loses_detail_as_the_bitrate_falls(photos_dir):
    """A real photo in a 640 x 480 picture, streamed through libx264: the lower the bitrate, the further
    the last frame is from the photo; seeded, so the same frame every time; gray in, gray out."""
    import sys
    from pathlib import Path

    import cv2

    from edgefer.train.camera import h264_stream

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from make_clips import background

    photo = cv2.imread(str(sorted((photos_dir / "happy").iterdir())[0]))
    photo = cv2.resize(photo, (160, 160), interpolation=cv2.INTER_AREA)
    canvas = background(640, 480)
    canvas[160:320, 240:400] = photo

    def psnr(kbps: int) -> float:
        out = h264_stream(canvas, kbps, np.random.default_rng(0), frames=8)
        assert out.shape == canvas.shape and out.dtype == np.uint8
        err = (out[160:320, 240:400].astype(float) - photo) ** 2
        return float(10 * np.log10(255**2 / err.mean()))

    p = {k: psnr(k) for k in (4000, 500, 250)}
    assert p[4000] > 36 and p[4000] - 3 > p[500] > p[250] + 3, p  # measured: 38.7, 32.6, 27.2 dB
    a = h264_stream(canvas, 250, np.random.default_rng(1))
    assert np.array_equal(a, h264_stream(canvas, 250, np.random.default_rng(1)))
    gray = h264_stream(cv2.cvtColor(canvas, cv2.COLOR_BGR2GRAY), 500, np.random.default_rng(0))
    assert gray.shape == canvas.shape[:2]


def test_degrade_touches_its_share_and_is_seeded(faces):
    from edgefer.train.camera import CameraConfig, degrade

    px = faces[0]
    a, chosen = degrade(px, CameraConfig(p=0.5), np.random.default_rng(3))
    b, chosen_b = degrade(px, CameraConfig(p=0.5), np.random.default_rng(3))
    assert np.array_equal(a, b) and np.array_equal(chosen, chosen_b)
    assert 16 < chosen.sum() < 48
    assert np.array_equal(a[~chosen], px[~chosen])  # the rest untouched, the input not modified
    assert not np.array_equal(a[chosen], px[chosen])


def test_augment_without_camera_draws_as_before(faces):
    """`--camera-aug 0` (the default) leaves the generator's stream, and so every earlier run, unchanged."""
    from edgefer.contract import InputSpec, preprocess
    from edgefer.train.augment import AugmentConfig, augment
    from edgefer.train.camera import CameraConfig

    spec = InputSpec()
    x = torch.from_numpy(preprocess(faces[0], spec))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = augment(x, spec.mean, spec.std, AugmentConfig(), g1)
    b = augment(x, spec.mean, spec.std, AugmentConfig(camera=CameraConfig(p=0.0)), g2)
    assert torch.equal(a, b) and torch.equal(g1.get_state(), g2.get_state())
    c = augment(x, spec.mean, spec.std, AugmentConfig(camera=CameraConfig(p=1.0)), torch.Generator().manual_seed(5))
    assert not torch.equal(a, c) and c.min() >= -1 - 1e-6 and c.max() <= 1 + 1e-6


def test_class_targets(faces):
    from edgefer.contract import FER2013_TO_EDGEFER, ferplus_majority, ferplus_shares, ferplus_usable
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import class_targets

    _, fer_ids, votes = faces
    labels = FER2013_TO_EDGEFER[fer_ids]
    assert class_targets(labels, votes, TrainConfig()) is None  # the recipe as it was
    maj = class_targets(labels, votes, TrainConfig(cls_target="ferplus"))
    soft = class_targets(labels, votes, TrainConfig(cls_target="ferplus-soft"))
    half = class_targets(labels, votes, TrainConfig(cls_target="ferplus-soft", cls_target_weight=0.5))
    for q in (maj, soft, half):
        assert q.shape == (64, 7) and np.allclose(q.sum(1), 1, atol=1e-5) and (q >= 0).all()
    m = ferplus_majority(votes)
    has = m >= 0
    assert (maj[has].argmax(1) == m[has]).all() and (maj[~has].argmax(1) == labels[~has]).all()
    ok = ferplus_usable(votes)
    s = ferplus_shares(votes)[ok]
    assert np.allclose(soft[ok], s / s.sum(1, keepdims=True), atol=1e-6)
    fer = np.eye(7)[labels] * 0.9 + 0.1 / 7
    assert np.allclose(half, 0.5 * fer + 0.5 * soft, atol=1e-6)
    # the faces where the two ground truths disagree are where the targets differ
    differ = has & (m != labels)
    assert differ.any() and (maj[differ].argmax(1) != labels[differ]).all()


def test_bad_target_options_fail_before_anything_is_written(tmp_path, small_slice):
    from edgefer.data import load_faces
    from edgefer.errors import UserError
    from edgefer.train.augment import AugmentConfig
    from edgefer.train.camera import CameraConfig
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    faces = load_faces(small_slice)
    for cfg, msg in [(TrainConfig(cls_target="votes"), "--cls-target 'votes'"),
                     (TrainConfig(cls_target="ferplus", cls_target_weight=1.5), "--cls-target-weight 1.5"),
                     (TrainConfig(augment=AugmentConfig(camera=CameraConfig(p=2.0))), "--camera-aug 2.0")]:
        with pytest.raises(UserError, match=msg.replace("(", r"\(")):
            train(faces, tmp_path / "r", cfg, progress=False)
        assert not (tmp_path / "r").exists()


def test_a_run_on_ferplus_targets_with_camera_aug_trains_and_resumes_bit_for_bit(tmp_path, small_slice):
    from edgefer.data import load_faces
    from edgefer.train.augment import AugmentConfig
    from edgefer.train.camera import CameraConfig
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    faces = load_faces(small_slice)
    kw = dict(batch_size=64, threads=1, cls_target="ferplus-soft", cls_target_weight=0.5, mixup=0.4,
              augment=AugmentConfig(camera=CameraConfig(p=0.5)))
    train(faces, tmp_path / "whole", TrainConfig(epochs=2, max_steps=6, **kw), progress=False)
    train(faces, tmp_path / "split", TrainConfig(epochs=2, max_steps=4, **kw), progress=False)  # first epoch
    train(faces, tmp_path / "split", TrainConfig(epochs=2, max_steps=6, **kw), resume=True, progress=False)
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    split = torch.load(tmp_path / "split" / "last.pt", weights_only=False)
    assert whole["step"] == split["step"] == 6
    assert all(torch.equal(whole["model"][k], split["model"][k]) for k in whole["model"])
    assert whole["config"]["cls_target"] == "ferplus-soft" and whole["config"]["augment"]["camera"]["p"] == 0.5
    assert "val_ferplus_accuracy_cls" in whole["history"][-1]
    plain = torch.load(_plain(tmp_path, faces), weights_only=False)
    assert not torch.equal(plain["model"]["features.0.0.weight"], whole["model"]["features.0.0.weight"])


def _plain(tmp_path, faces):
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    return train(faces, tmp_path / "plain", TrainConfig(epochs=2, max_steps=6, batch_size=64, threads=1, mixup=0.4),
                 progress=False)
