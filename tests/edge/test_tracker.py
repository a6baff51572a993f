"""Tracker and smoother: association, gaps, time-constant smoothing, hysteresis, events, and the
smoothing acceptance figure on clips made of real model outputs (tests/smoothing_clip.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import smoothing_clip as C

from edgefer.contract import CLASS_NAMES
from edgefer.edge.tracker import Tracker, TrackerConfig, iou
from edgefer.types import Face, FaceResult, Frame, FrameResult

HAPPY, SAD = CLASS_NAMES.index("happy"), CLASS_NAMES.index("sad")


def onehot(k: int, p: float = 0.8) -> np.ndarray:
    v = np.full(7, (1 - p) / 6, np.float32)
    v[k] = p
    return v


def frame(t: float, boxes, probs=None, classified=None) -> FrameResult:
    faces = []
    for i, b in enumerate(boxes):
        p = onehot(HAPPY) if probs is None else probs[i]
        fr = FaceResult(Face(np.array(b, np.float32), 0.9, np.zeros((5, 2), np.float32)), p, p.copy())
        if classified is not None:
            fr.classified = classified[i]
        faces.append(fr)
    return FrameResult(Frame(np.zeros((1, 1, 3), np.uint8), int(t * 1000), 1e9 + t, t), faces)


def test_iou():
    assert iou(np.array([0, 0, 10, 10]), np.array([0, 0, 10, 10])) == 1.0
    assert iou(np.array([0, 0, 10, 10]), np.array([20, 0, 10, 10])) == 0.0
    assert math.isclose(iou(np.array([0, 0, 10, 10]), np.array([5, 0, 10, 10])), 50 / 150)


def test_two_faces_keep_their_ids_and_events():
    tr = Tracker()
    a, b = [10, 10, 50, 50], [200, 10, 50, 50]
    ev = tr.update(r := frame(0.0, [a, b]))
    assert [e["type"] for e in ev] == ["track_started", "track_started"]
    assert [f.track_id for f in r.faces] == [1, 2]
    for k in range(1, 20):  # both drift a little; order in the frame swaps
        r = frame(k / 30, [[200 + k, 10, 50, 50], [10 + k, 10 + k, 50, 50]])
        assert tr.update(r) == []
        assert [f.track_id for f in r.faces] == [2, 1]
        assert all(f.stable_emotion == "happy" and f.smoothed_probabilities is not None for f in r.faces)


def test_gap_tolerance_and_track_end():
    tr = Tracker(TrackerConfig(max_gap_s=1.0))
    tr.update(frame(0.0, [[10, 10, 50, 50]]))
    assert tr.update(frame(0.5, [])) == []
    r = frame(0.9, [[12, 10, 50, 50]])
    assert tr.update(r) == [] and r.faces[0].track_id == 1  # back within the gap: same track
    ev = tr.update(frame(2.0, []))
    assert [(e["type"], e["track_id"]) for e in ev] == [("track_ended", 1)]
    assert ev[0]["duration_s"] == pytest.approx(0.9) and ev[0]["timestamp"] == pytest.approx(1e9 + 2.0)
    r = frame(2.1, [[12, 10, 50, 50]])
    assert tr.update(r)[0]["type"] == "track_started" and r.faces[0].track_id == 2
    assert [e["type"] for e in tr.end_all(1e9 + 3)] == ["track_ended"]


@pytest.mark.parametrize("fps", [5, 10, 30, 60])
def test_smoothing_is_in_seconds_not_frames(fps):
    """A step from happy to sad: after 1 tau, the smoothed sad probability has moved 63 % of the way,
    whatever the frame rate (and with frames dropped)."""
    tau = 0.3
    tr = Tracker(TrackerConfig(tau_s=tau))
    box = [[10, 10, 50, 50]]
    tr.update(frame(0.0, box, [onehot(HAPPY)]))
    rng = np.random.default_rng(fps)
    t, r = 0.0, None
    times = [k / fps for k in range(1, int(tau * fps) + 1)]
    for t in times:
        if rng.random() < 0.3 and t != times[-1]:
            continue  # dropped frame
        r = frame(t, box, [onehot(SAD)])
        tr.update(r)
    lo, hi = onehot(HAPPY)[SAD], onehot(SAD)[SAD]
    moved = (r.faces[0].smoothed_probabilities[SAD] - lo) / (hi - lo)
    assert moved == pytest.approx(1 - math.exp(-t / tau), abs=1e-4)


def test_hysteresis_needs_margin_and_hold():
    cfg = TrackerConfig(tau_s=0.0, switch_margin=0.1, switch_hold_s=0.2)
    tr = Tracker(cfg)
    box = [[10, 10, 50, 50]]
    tr.update(frame(0.0, box, [onehot(HAPPY, 0.5)]))
    close = np.full(7, 0.02, np.float32)
    close[HAPPY], close[SAD] = 0.42, 0.46  # sad wins the argmax, but not by the margin
    for k in range(1, 30):
        r = frame(k / 30, box, [close])
        assert tr.update(r) == [] and r.faces[0].stable_emotion == "happy" and r.faces[0].emotion == "sad"
    ev = []
    t0 = 1.0
    for k in range(10):  # now by a clear margin: switches after the hold time, once
        t = t0 + k / 30
        ev += tr.update(frame(t, box, [onehot(SAD, 0.7)]))
    assert len(ev) == 1 and ev[0]["type"] == "emotion_changed"
    assert (ev[0]["from"], ev[0]["to"], ev[0]["track_id"]) == ("happy", "sad", 1)
    assert ev[0]["timestamp"] == pytest.approx(1e9 + t0 + 0.2, abs=1 / 30 + 1e-6)


def test_needs_classification_contract():
    cfg = TrackerConfig(reclassify_interval_s=0.5, tau_s=0.1)
    tr = Tracker(cfg)
    box = [10, 10, 50, 50]
    assert tr.needs_classification(np.array(box), 0.0)  # unknown face
    tr.update(frame(0.0, [box], [onehot(HAPPY, 0.9)]))
    assert not tr.needs_classification(np.array(box), 0.1)  # stable and fresh: skip
    assert tr.needs_classification(np.array([300, 300, 50, 50]), 0.1)  # another face
    # the run loop passes the skipped face unclassified: it gets the track's last classification
    garbage = np.full(7, np.nan, np.float32)
    r = frame(0.1, [box], [garbage], classified=[False])
    tr.update(r)
    f = r.faces[0]
    assert f.track_id == 1 and not f.classified and np.allclose(f.probabilities, onehot(HAPPY, 0.9))
    assert np.isfinite(f.smoothed_probabilities).all()
    assert tr.needs_classification(np.array(box), 0.6)  # too old: classify again
    # an unclassified face that matches no track is dropped, not reported with garbage
    r = frame(0.2, [[400, 400, 50, 50]], [garbage], classified=[False])
    tr.update(r)
    assert r.faces == []
    # option off: always classify
    assert Tracker().needs_classification(np.array(box), 0.0)


def test_config_rejects_unknown_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        TrackerConfig(tau=1)


@pytest.fixture(scope="module")
def clf():
    from edgefer.edge.classifier import Classifier

    return Classifier.open()


@pytest.fixture(scope="module")
def pool(fer_npz):
    return C.load_public_test(fer_npz)


def test_smoothing_steady_faces_real_model(clf, pool):
    """Acceptance (short): steady jittered faces from FER-2013 PublicTest, real model outputs, 30 fps:
    the reported emotion changes at least 5x less often than the raw per-frame argmax."""
    rng = np.random.default_rng(1)
    faces = pool[rng.choice(len(pool), 8, replace=False)]
    r = C.steady_figures(clf, faces, seconds=6, fps=30, seed=1)
    print("steady:", r)
    assert r["raw_changes"] >= 20, "the clip must actually be jittery for the figure to mean anything"
    assert r["raw_changes"] >= 5 * r["reported_changes"]


@pytest.fixture(scope="module")
def pairs(clf, pool):
    return C.change_pairs(clf, pool, 6, seed=2)


@pytest.mark.parametrize(("fps", "drop"), [(30, 0.0), (15, 0.1)])
def test_smoothing_reports_real_change_fast(clf, pairs, fps, drop):
    """Acceptance (short): face A, then a face B of a different (clear) class: reported within 0.5 s."""
    assert len(pairs) >= 3
    r = C.change_figures(clf, pairs, fps=fps, seed=3, drop=drop, before=2.0, after=2.0)
    print("change:", r)
    assert r["reported"] == r["pairs"] and r["max_s"] <= 0.5


def test_new_scene_ends_every_track_and_restarts_ids():
    tr = Tracker()
    tr.update(frame(0.0, [[10, 10, 50, 50], [200, 10, 50, 50]]))
    tr.update(frame(1 / 30, [[11, 10, 50, 50], [201, 10, 50, 50]]))
    ended = tr.new_scene(1e9 + 0.1)
    assert [(e["type"], e["track_id"]) for e in ended] == [("track_ended", 1), ("track_ended", 2)]
    assert all(e["timestamp"] == 1e9 + 0.1 for e in ended)
    r = frame(2 / 30, [[11, 10, 50, 50]], probs=[onehot(SAD)])
    assert [e["type"] for e in tr.update(r)] == ["track_started"]
    f = r.faces[0]  # same place, next frame: without the cut it would continue track 1, blended with happy
    assert f.track_id == 1 and f.stable_emotion == "sad"
    assert np.array_equal(f.smoothed_probabilities, f.probabilities)
