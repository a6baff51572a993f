"""The small typed values that flow between pipeline stages.

source --Frame--> detector --Face--> aligner --crops--> classifier --FaceResult--> tracker --> sinks
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .contract import CLASS_NAMES


@dataclass(slots=True)
class Frame:
    """One captured image: BGR uint8 H x W x 3, its index in the stream and when it was captured.

    `monotonic` is the stream's clock, on the `time.monotonic()` scale, for tracking and smoothing:
    a live frame's capture time; for a file, its position in the media from when the file was
    opened, which runs ahead of real time when frames are processed faster than the media's frame
    rate and behind it when slower. Ages ("how long ago did the newest frame come in") are measured
    from `arrived`: `received`, the `time.monotonic()` at which a file source read the frame (None
    for live sources, where it is `monotonic`). `timestamp` is wall-clock time, for display only.

    `new_scene` marks a frame unrelated to the one before (the next still of a folder of photos):
    the run loop starts the tracker afresh on it, so nothing is tracked or smoothed across it."""

    image: np.ndarray
    index: int
    timestamp: float  # wall clock, seconds since the epoch (for payloads)
    monotonic: float  # stream time on the time.monotonic() scale (for tracking and smoothing)
    source: str = ""
    new_scene: bool = False
    received: float | None = None  # time.monotonic() when a file source read it

    @property
    def arrived(self) -> float:
        """`time.monotonic()` when the frame came from its source (the origin of its age)."""
        return self.monotonic if self.received is None else self.received


@dataclass(slots=True)
class Face:
    """A detected face in frame pixels: box (x, y, w, h), detector score, 5 landmarks (x, y):
    right eye, left eye, nose tip, right and left mouth corners (YuNet's order)."""

    box: np.ndarray  # (4,) float32 x, y, w, h
    score: float
    landmarks: np.ndarray  # (5, 2) float32


@dataclass(slots=True)
class FaceResult:
    """A classified face: per-class probabilities (softmax) and intensities (independent sigmoids),
    in `CLASS_NAMES` order. `track_id` and the smoothed values are set by the tracker."""

    face: Face
    probabilities: np.ndarray  # (7,) float32, sums to 1
    intensity: np.ndarray  # (7,) float32, each 0..1
    track_id: int | None = None
    smoothed_probabilities: np.ndarray | None = None
    smoothed_intensity: np.ndarray | None = None
    stable_emotion: str | None = None  # the emotion reported after hysteresis
    classified: bool = True  # False when the tracker reused an earlier classification

    @property
    def emotion(self) -> str:
        """The raw per-frame argmax."""
        return CLASS_NAMES[int(np.argmax(self.probabilities))]

    def to_dict(self) -> dict:
        """The face schema of `edgefer predict --json`, plus tracking fields when present."""
        d: dict = {
            "box": [round(float(v), 1) for v in self.face.box],
            "score": round(float(self.face.score), 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.face.landmarks],
            "emotion": self.emotion,
            "probabilities": {n: round(float(p), 4) for n, p in zip(CLASS_NAMES, self.probabilities)},
            "intensity": {n: round(float(v), 4) for n, v in zip(CLASS_NAMES, self.intensity)},
        }
        if self.track_id is not None:
            d["track_id"] = self.track_id
        if self.stable_emotion is not None:
            d["stable_emotion"] = self.stable_emotion
        if self.smoothed_probabilities is not None:
            d["smoothed_probabilities"] = {n: round(float(p), 4) for n, p in zip(CLASS_NAMES, self.smoothed_probabilities)}
        if self.smoothed_intensity is not None:
            d["smoothed_intensity"] = {n: round(float(v), 4) for n, v in zip(CLASS_NAMES, self.smoothed_intensity)}
        return d


@dataclass(slots=True)
class FrameResult:
    """Everything the pipeline learnt from one frame."""

    frame: Frame
    faces: list[FaceResult] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    faces_detected: int = 0  # before the max_faces cut

    def to_dict(self) -> dict:
        return {
            "frame": self.frame.index,
            "timestamp": round(self.frame.timestamp, 3),
            "source": self.frame.source,
            "faces": [f.to_dict() for f in self.faces],
        }
