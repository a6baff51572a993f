"""Synthetic clips made of real model outputs, for the smoothing acceptance test and benchmark.

A "steady face" clip is one FER-2013 PublicTest face shown for N seconds at some frame rate with
small per-frame jitter of the kind a camera and detector add (sub-pixel to 2 px shifts, +-3 degree
rotation, +-4 % scale, brightness and contrast flicker, sensor noise, occasional blur), each frame
classified by the real embedded model (`Classifier.open()`). A "change" clip is face A for a while,
then face B whose dominant class (by the model, over its jittered frames) differs: a real change of
expression. Frames can be dropped at random to check robustness to frame-rate changes.

Used by `tests/edge/test_tracker.py` (short) and `benchmarks/smoothing.py` (long); no figure
depends on a particular model's weights: faces are chosen by what the current model outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgefer.contract import CLASS_NAMES
from edgefer.edge.tracker import Tracker, TrackerConfig
from edgefer.types import Face, FaceResult, Frame, FrameResult


def jitter(face: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n jittered copies of a gray uint8 face (S x S)."""
    s = face.shape[0]
    out = np.empty((n, s, s), np.uint8)
    for k in range(n):
        angle = rng.normal(0, 1.5)
        scale = 1 + rng.normal(0, 0.02)
        m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
        m[:, 2] += rng.normal(0, 0.8, 2)
        img = cv2.warpAffine(face, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        img = img.astype(np.float32) * (1 + rng.normal(0, 0.04)) + rng.normal(0, 5)
        img += rng.normal(0, 3, img.shape)
        if rng.random() < 0.1:
            img = cv2.GaussianBlur(img, (3, 3), 0.8)
        out[k] = np.clip(img, 0, 255).astype(np.uint8)
    return out


@dataclass
class Clip:
    times: np.ndarray  # monotonic seconds of the frames kept
    probs: np.ndarray  # n x 7 from the real model
    intensity: np.ndarray  # n x 7
    switch_t: float | None = None  # when face B replaced face A
    b_class: str | None = None


def load_public_test(npz_path) -> np.ndarray:
    with np.load(npz_path, allow_pickle=False) as d:
        return d["pixels"][d["usage"].astype(str) == "PublicTest"]


def make_clip(
    classifier,
    faces: list[np.ndarray],
    seconds: list[float],
    fps: float,
    rng: np.random.Generator,
    drop: float = 0.0,
) -> Clip:
    """Face i shown for seconds[i]; `drop` is the fraction of frames lost at random."""
    times, crops, bounds = [], [], []
    t0 = 0.0
    for face, dur in zip(faces, seconds):
        n = int(round(dur * fps))
        t = t0 + np.arange(n) / fps
        keep = rng.random(n) >= drop
        times.append(t[keep])
        crops.append(jitter(face, int(keep.sum()), rng))
        bounds.append(t0)
        t0 += dur
    x = np.concatenate(crops)
    probs, inten = [], []
    for i in range(0, len(x), 256):
        p, v, _ = classifier.classify(x[i : i + 256])
        probs.append(p)
        inten.append(v)
    return Clip(np.concatenate(times), np.concatenate(probs), np.concatenate(inten), bounds[1] if len(bounds) > 1 else None)


def run_tracker(clip: Clip, config: TrackerConfig | None = None) -> tuple[list[str], list[str], list[dict]]:
    """Feed the clip through a Tracker (one face, its box jittering by a pixel or two).
    Returns per-frame raw argmax, per-frame stable emotion, and the events."""
    tracker = Tracker(config or TrackerConfig())
    rng = np.random.default_rng(0)
    raw, stable, events = [], [], []
    for i, (t, p, v) in enumerate(zip(clip.times, clip.probs, clip.intensity)):
        box = np.array([200, 120, 96, 96], np.float32) + rng.normal(0, 1.0, 4).astype(np.float32)
        fr = FaceResult(Face(box, 0.9, np.zeros((5, 2), np.float32)), p, v)
        res = FrameResult(Frame(np.zeros((1, 1, 3), np.uint8), i, 1e9 + float(t), float(t)), [fr])
        for ev in tracker.update(res):
            ev["t"] = float(t)
            events.append(ev)
        raw.append(fr.emotion)
        stable.append(fr.stable_emotion)
    return raw, stable, events


def changes(labels: list[str]) -> int:
    return sum(1 for a, b in zip(labels, labels[1:]) if a != b)


def dominant(classifier, face: np.ndarray, rng: np.random.Generator, n: int = 30) -> tuple[str, float]:
    """The class the model gives this face under jitter, and its mean probability."""
    p, _, _ = classifier.classify(jitter(face, n, rng))
    m = p.mean(axis=0)
    return CLASS_NAMES[int(np.argmax(m))], float(m.max())


def steady_figures(classifier, faces: np.ndarray, seconds: float, fps: float, seed: int, drop: float = 0.0,
                   config: TrackerConfig | None = None) -> dict:
    """Raw argmax changes vs reported (stable) emotion changes over steady clips of these faces."""
    rng = np.random.default_rng(seed)
    raw_changes = stable_changes = frames = flippy = 0
    for face in faces:
        clip = make_clip(classifier, [face], [seconds], fps, rng, drop)
        raw, stable, events = run_tracker(clip, config)
        rc = changes(raw)
        raw_changes += rc
        flippy += rc > 0
        stable_changes += sum(1 for e in events if e["type"] == "emotion_changed")
        frames += len(raw)
    return {
        "faces": len(faces),
        "faces_with_raw_flips": flippy,
        "seconds_each": seconds,
        "fps": fps,
        "drop": drop,
        "frames": frames,
        "raw_changes": raw_changes,
        "reported_changes": stable_changes,
        "ratio": round(raw_changes / stable_changes, 1) if stable_changes else float("inf"),
    }


def change_pairs(classifier, pool: np.ndarray, n_pairs: int, seed: int, min_prob: float = 0.5) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Pairs (A, B, B's class) of faces with clear, different dominant classes (by this model,
    under jitter), spread over as many classes as the model gives clearly."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(pool))[:1500]
    p, _, _ = classifier.classify(pool[idx])
    by_class: dict[str, list[np.ndarray]] = {}
    for j in np.argsort(-p.max(axis=1)):
        cls = CLASS_NAMES[int(p[j].argmax())]
        if p[j].max() < min_prob or len(by_class.get(cls, [])) >= n_pairs:
            continue
        dom, q = dominant(classifier, pool[idx[j]], rng)
        if dom == cls and q >= min_prob:
            by_class.setdefault(cls, []).append(pool[idx[j]])
    classes = sorted(by_class, key=lambda c: -len(by_class[c]))
    pairs: list[tuple[np.ndarray, np.ndarray, str]] = []
    if len(classes) < 2:
        return pairs
    k = 0
    while len(pairs) < n_pairs and k < 10 * n_pairs:
        ca, cb = classes[k % len(classes)], classes[(k + 1 + k // len(classes)) % len(classes)]
        k += 1
        if ca == cb:
            continue
        a = by_class[ca][k % len(by_class[ca])]
        b = by_class[cb][(k // 2) % len(by_class[cb])]
        pairs.append((a, b, cb))
    return pairs


def change_figures(classifier, pairs, fps: float, seed: int, drop: float = 0.0, before: float = 3.0, after: float = 3.0,
                   config: TrackerConfig | None = None) -> dict:
    """Latency from a real change of expression (A -> B) to the `emotion_changed` event to B's class."""
    rng = np.random.default_rng(seed)
    lat = []
    for a, b, cb in pairs:
        clip = make_clip(classifier, [a, b], [before, after], fps, rng, drop)
        _, _, events = run_tracker(clip, config)
        hits = [e["t"] - clip.switch_t for e in events if e["type"] == "emotion_changed" and e["to"] == cb and e["t"] >= clip.switch_t]
        lat.append(hits[0] if hits else float("inf"))
    arr = np.array(lat)
    return {
        "pairs": len(pairs),
        "fps": fps,
        "drop": drop,
        "reported": int(np.isfinite(arr).sum()),
        "median_s": round(float(np.median(arr)), 3) if len(arr) else None,
        "p90_s": round(float(np.percentile(arr, 90)), 3) if len(arr) else None,
        "max_s": round(float(arr.max()), 3) if len(arr) else None,
        "within_0.5s": int((arr <= 0.5).sum()),
    }
