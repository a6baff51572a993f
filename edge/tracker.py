"""Tracker and smoother: stable track ids per face, time-constant smoothing, hysteresis, events.

Per-frame classification is jittery. This stage associates the faces of consecutive frames by
box overlap (IoU, greedy, best pairs first), keeps a track alive through short gaps (`max_gap_s`),
smooths each track's probabilities and intensities with an exponential average whose time
constant is in seconds (so 10 fps and 30 fps, or dropped frames, smooth alike), and switches the
reported emotion (`stable_emotion`) only when another emotion's smoothed probability beats the
current one by `switch_margin` for `switch_hold_s` seconds.

All time arithmetic uses `Frame.monotonic`; wall-clock `Frame.timestamp` only goes into events.
A frame marked `new_scene` (an unrelated still) gets a fresh tracker from the run loop
(`Tracker.new_scene`), so a photo's faces are never blended with the previous photo's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgefer.contract import CLASS_NAMES
from edgefer.types import FrameResult


class TrackerConfig(BaseModel):
    """How faces are tracked and how their emotions are smoothed."""

    model_config = ConfigDict(extra="forbid")

    iou_threshold: float = Field(0.3, gt=0.0, le=1.0, description="Minimum box IoU for a face to continue a track.")
    max_gap_s: float = Field(
        1.0, ge=0.0, description="A track survives this many seconds without a matching face before it ends."
    )
    tau_s: float = Field(
        0.15,
        ge=0.0,
        description="Time constant (seconds) of the exponential smoothing of probabilities and intensities; 0 = no smoothing.",
    )
    switch_margin: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="The reported emotion changes only when another emotion's smoothed probability beats it by this much.",
    )
    switch_hold_s: float = Field(
        0.1, ge=0.0, description="... and keeps beating it by the margin for this many seconds."
    )
    reclassify_interval_s: float = Field(
        0.0,
        ge=0.0,
        description=(
            "On a busy device, re-classify a stable face only every this many seconds "
            "(see Tracker.needs_classification); 0 = classify every face in every frame."
        ),
    )
    stable_min_probability: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A track counts as stable (may skip classification) when its reported emotion's smoothed probability is at least this.",
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed over time."""

    track_id: int
    box: np.ndarray
    started: float  # monotonic
    last_seen: float  # monotonic
    probabilities: np.ndarray  # smoothed
    intensity: np.ndarray  # smoothed
    raw_probabilities: np.ndarray  # last classification
    raw_intensity: np.ndarray
    last_classified: float  # monotonic
    emotion: str
    candidate: str | None = None
    candidate_since: float = 0.0
    hits: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def stable(self, min_probability: float) -> bool:
        return self.candidate is None and float(self.probabilities[CLASS_NAMES.index(self.emotion)]) >= min_probability


def match(boxes: list[np.ndarray], tracks: list[Track], threshold: float) -> dict[int, int]:
    """Greedy IoU association: face index -> index into `tracks`, best overlaps first."""
    pairs = []
    for i, box in enumerate(boxes):
        for j, tr in enumerate(tracks):
            v = iou(box, tr.box)
            if v >= threshold:
                pairs.append((v, i, j))
    pairs.sort(key=lambda p: -p[0])
    out: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in pairs:
        if i in out or j in used:
            continue
        out[i] = j
        used.add(j)
    return out


class Tracker:
    """Associates faces across frames, smooths them, reports stable emotions and events.

    `update(frame_result)` mutates each `FaceResult` in place (track_id, smoothed_probabilities,
    smoothed_intensity, stable_emotion) and returns the events of this frame, each a dict with
    `type` (`track_started`, `emotion_changed`, `track_ended`), `track_id`, `timestamp` (wall clock)
    and type-specific fields (`emotion`; `from`/`to`; `duration_s`).

    Skipping classification (`reclassify_interval_s > 0`), the contract with the run loop:
    for each detected face of a frame, call `needs_classification(face.box, frame.monotonic)`
    BEFORE `update` of that frame. Faces for which it returns False need not be classified: pass
    them to `update` as `FaceResult(face, probabilities=<anything>, intensity=<anything>,
    classified=False)`; `update` replaces their probabilities and intensities with the track's
    last classification and does not feed them to the smoother. An unclassified face that
    matches no track (it cannot happen if the contract is kept) is removed from the result.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self._next_id = 1

    # -- the skip-classification hook --------------------------------------------------------
    def needs_classification(self, box: np.ndarray, now: float) -> bool:
        """True unless `box` continues a stable track whose last classification is younger than
        `reclassify_interval_s` (always True when that option is 0)."""
        cfg = self.config
        if cfg.reclassify_interval_s <= 0:
            return True
        live = [t for t in self.tracks if now - t.last_seen <= cfg.max_gap_s]
        m = match([np.asarray(box, np.float32)], live, cfg.iou_threshold)
        if 0 not in m:
            return True
        tr = live[m[0]]
        return not (tr.stable(cfg.stable_min_probability) and now - tr.last_classified < cfg.reclassify_interval_s)

    # -- the main step ---------------------------------------------------------------------
    def update(self, frame_result: FrameResult) -> list[dict[str, Any]]:
        cfg = self.config
        now = frame_result.frame.monotonic
        wall = frame_result.frame.timestamp
        events: list[dict[str, Any]] = []

        events += self._expire(now, wall)
        faces = frame_result.faces
        m = match([np.asarray(f.face.box, np.float32) for f in faces], self.tracks, cfg.iou_threshold)
        keep = []
        for i, fr in enumerate(faces):
            box = np.asarray(fr.face.box, np.float32).copy()
            if i in m:
                tr = self.tracks[m[i]]
                tr.box = box
                tr.last_seen = now
                tr.hits += 1
                if fr.classified:
                    dt = max(0.0, now - tr.extra["smoothed_at"])
                    alpha = 1.0 if cfg.tau_s <= 0 else 1.0 - math.exp(-dt / cfg.tau_s)
                    p = np.asarray(fr.probabilities, np.float32)
                    v = np.asarray(fr.intensity, np.float32)
                    tr.probabilities = tr.probabilities + alpha * (p - tr.probabilities)
                    tr.intensity = tr.intensity + alpha * (v - tr.intensity)
                    tr.raw_probabilities, tr.raw_intensity = p.copy(), v.copy()
                    tr.last_classified = now
                    tr.extra["smoothed_at"] = now
                else:
                    fr.probabilities = tr.raw_probabilities.copy()
                    fr.intensity = tr.raw_intensity.copy()
                ev = self._hysteresis(tr, now, wall)
                if ev:
                    events.append(ev)
            else:
                if not fr.classified:
                    continue  # nothing known about this face: nothing to report
                p = np.asarray(fr.probabilities, np.float32).copy()
                v = np.asarray(fr.intensity, np.float32).copy()
                tr = Track(
                    track_id=self._next_id,
                    box=box,
                    started=now,
                    last_seen=now,
                    probabilities=p.copy(),
                    intensity=v.copy(),
                    raw_probabilities=p.copy(),
                    raw_intensity=v.copy(),
                    last_classified=now,
                    emotion=CLASS_NAMES[int(np.argmax(p))],
                    extra={"smoothed_at": now},
                )
                self._next_id += 1
                self.tracks.append(tr)
                events.append({"type": "track_started", "track_id": tr.track_id, "timestamp": wall, "emotion": tr.emotion})
            fr.track_id = tr.track_id
            fr.smoothed_probabilities = tr.probabilities.copy()
            fr.smoothed_intensity = tr.intensity.copy()
            fr.stable_emotion = tr.emotion
            keep.append(fr)
        if len(keep) != len(faces):
            frame_result.faces = keep
        return events

    def end_all(self, timestamp: float) -> list[dict[str, Any]]:
        """End every track (at shutdown): their `track_ended` events."""
        events = [self._ended(t, t.last_seen, timestamp) for t in self.tracks]
        self.tracks = []
        return events

    def new_scene(self, timestamp: float) -> list[dict[str, Any]]:
        """Start afresh for an unrelated frame (the next still of a photo folder): every track ends
        (their `track_ended` events are returned) and track ids start again at 1."""
        events = self.end_all(timestamp)
        self._next_id = 1
        return events

    # -- internals -------------------------------------------------------------------------
    def _expire(self, now: float, wall: float) -> list[dict[str, Any]]:
        alive, events = [], []
        for t in self.tracks:
            if now - t.last_seen > self.config.max_gap_s:
                events.append(self._ended(t, now, wall))
            else:
                alive.append(t)
        self.tracks = alive
        return events

    @staticmethod
    def _ended(t: Track, now: float, wall: float) -> dict[str, Any]:
        return {
            "type": "track_ended",
            "track_id": t.track_id,
            "timestamp": wall,
            "duration_s": round(t.last_seen - t.started, 3),
            "emotion": t.emotion,
        }

    def _hysteresis(self, tr: Track, now: float, wall: float) -> dict[str, Any] | None:
        cfg = self.config
        best = CLASS_NAMES[int(np.argmax(tr.probabilities))]
        cur = float(tr.probabilities[CLASS_NAMES.index(tr.emotion)])
        if best == tr.emotion or float(tr.probabilities[CLASS_NAMES.index(best)]) < cur + cfg.switch_margin:
            tr.candidate = None
            return None
        if tr.candidate != best:
            tr.candidate, tr.candidate_since = best, now
        if now - tr.candidate_since < cfg.switch_hold_s:
            return None
        old, tr.emotion, tr.candidate = tr.emotion, best, None
        return {
            "type": "emotion_changed",
            "track_id": tr.track_id,
            "from": old,
            "to": best,
            "timestamp": wall,
            "probability": round(float(tr.probabilities[CLASS_NAMES.index(best)]), 4),
        }
