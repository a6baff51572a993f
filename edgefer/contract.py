"""The model contract: class names, label mappings, the input spec and the one preprocessing function.

Every model artifact (FP32/FP16/INT8 ONNX, TensorRT engine sidecar) carries an `InputSpec` in its
metadata. `preprocess` is the single function that turns face crops into the network's input; the
training recipe, calibration, evaluation and the daemon all call it, so a deployed model sees
exactly what it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Output order of both heads, everywhere in edgefer.
CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: FER-2013 label ids (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral)
#: mapped to edgefer class indices.
FER2013_TO_EDGEFER: np.ndarray = np.array([0, 1, 2, 3, 5, 6, 4], dtype=np.int64)

#: FER+ vote columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
#: For each edgefer class, the FER+ column holding its votes.
FERPLUS_COLUMN_OF_CLASS: np.ndarray = np.array([4, 5, 6, 1, 0, 3, 2], dtype=np.int64)
FERPLUS_UNKNOWN, FERPLUS_NOT_FACE = 8, 9
#: The other way round: for each of the ten FER+ columns, its edgefer class index (-1: contempt,
#: unknown, not-a-face).
CLASS_OF_FERPLUS_COLUMN: np.ndarray = np.full(10, -1, dtype=np.int64)
CLASS_OF_FERPLUS_COLUMN[FERPLUS_COLUMN_OF_CLASS] = np.arange(len(CLASS_NAMES))


def ferplus_shares(votes: np.ndarray) -> np.ndarray:
    """FER+ votes (N x 10) -> intensity targets (N x 7): the share of *all* annotators per emotion."""
    votes = np.asarray(votes, dtype=np.float32)
    total = np.maximum(votes.sum(axis=1, keepdims=True), 1.0)
    return (votes / total)[:, FERPLUS_COLUMN_OF_CLASS]


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """FER+ majority label as an edgefer class index, or -1 where the majority is contempt,
    unknown or not-a-face (ties resolve to the first FER+ column, as `argmax` does)."""
    return CLASS_OF_FERPLUS_COLUMN[np.asarray(votes).argmax(axis=1)]


def ferplus_at_top(votes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Whether each row's class `classes[i]` has as many FER+ votes as the most voted column: the
    prediction agrees with the annotators' majority, counting either class of a tie at the top
    (where `ferplus_majority` picks the first column)."""
    votes = np.asarray(votes)
    mine = votes[np.arange(len(votes)), FERPLUS_COLUMN_OF_CLASS[np.asarray(classes)]]
    return mine == votes.max(axis=1)


def ferplus_clear_majority(votes: np.ndarray) -> np.ndarray:
    """The FER+ label under the test protocol of Barsoum et al., ICMI 2016 (arXiv 1608.01041; the
    "majority" mode of github.com/microsoft/FERPlus, src/ferplus.py): single votes are dropped as
    outliers and a face is labelled only if its top emotion then holds more than half of the votes
    left. An edgefer class index, or -1 where there is no such majority or it is contempt, unknown
    or not-a-face. Ambiguous faces (a tenth of PublicTest's) are left out of what this scores."""
    v = np.asarray(votes, dtype=np.int64)
    v = np.where(v <= 1, 0, v)
    clear = v.max(axis=1) * 2 > v.sum(axis=1)
    return np.where(clear, CLASS_OF_FERPLUS_COLUMN[v.argmax(axis=1)], -1)


def ferplus_usable(votes: np.ndarray) -> np.ndarray:
    """Rows whose votes describe a face: fewer than half the annotators said unknown or not-a-face."""
    votes = np.asarray(votes)
    return (votes[:, FERPLUS_UNKNOWN] + votes[:, FERPLUS_NOT_FACE]) * 2 < votes.sum(axis=1)


@dataclass(frozen=True)
class InputSpec:
    """What the network expects: N x 1 x size x size float32, ((gray / 255) - mean) / std."""

    name: str = "input"
    size: int = 48
    mean: float = 0.5
    std: float = 0.5
    gray: str = "cv2.COLOR_BGR2GRAY"  # conversion rule for colour frames (ITU-R BT.601 luma)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputSpec":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def to_gray(image: np.ndarray) -> np.ndarray:
    """BGR (H x W x 3), BGRA or gray image -> gray uint8 (H x W), with OpenCV's BT.601 weights."""
    import cv2

    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"not an image array: shape {image.shape}")


def preprocess(faces: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Gray uint8 face crops (N x S x S, already at `spec.size`) -> network input N x 1 x S x S float32.

    The single preprocessing function of the project: training, calibration, evaluation and the
    daemon call it. Crops come from the aligner (deployment) or straight from FER-2013 (training).
    """
    faces = np.asarray(faces)
    if faces.ndim != 3 or faces.shape[1:] != (spec.size, spec.size):
        raise ValueError(f"expected N x {spec.size} x {spec.size} gray crops, got shape {faces.shape}")
    x = faces.astype(np.float32) * np.float32(1.0 / 255.0)
    x = (x - np.float32(spec.mean)) / np.float32(spec.std)
    return x[:, None, :, :]
