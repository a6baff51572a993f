"""A stronger, fixed teacher: its outputs averaged over many views of each training crop.

The online teacher of the recipe sees each augmented batch and its mirror image (two views, computed
on every step). Averaging over more views is a stronger teacher (1.2.0 on PublicTest: 69.80% single,
70.52% with its mirror, 71.05% over the 18 views below), but too slow to run on every step on a CPU.
So these targets are computed once per original training crop before training, and serve as the
teacher's targets for every framing and augmentation of that face. Measured once (docs/training-history.md, stage 6):
distilled into 1.2.0 over 50 epochs it gave 69.60%, below 1.2.0, where the per-batch flip teacher
(which sees the same augmented view as the student) gained 0.7 points in stage 3. Measured again
(stage 7): a student trained from scratch on these targets and the labels for 60 epochs gave 67.59%,
below stage 1's 68.62% from the labels alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgefer.contract import CLASS_NAMES, InputSpec, preprocess

# (shift x, shift y in pixels of a 48-px crop, scale, rotation in degrees); each also mirrored.
VIEWS: tuple[tuple[float, float, float, float], ...] = (
    (0, 0, 1, 0), (2, 0, 1, 0), (-2, 0, 1, 0), (0, 2, 1, 0), (0, -2, 1, 0),
    (0, 0, 1.08, 0), (0, 0, 0.93, 0), (0, 0, 1, 6), (0, 0, 1, -6),
)


def view(pixels: np.ndarray, dx: float, dy: float, scale: float, angle: float) -> np.ndarray:
    """Gray crops (N x S x S uint8) shifted, scaled and rotated about their centre, edges reflected."""
    import cv2

    side = pixels.shape[1]
    if (dx, dy, scale, angle) == (0, 0, 1, 0):
        return pixels
    m = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, scale)
    m[:, 2] += (dx * side / 48, dy * side / 48)
    return np.stack([cv2.warpAffine(p, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                     for p in pixels])


Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def predictor(path: Path, network: torch.nn.Module | None = None, threads: int = 0) -> Predict:
    """Preprocessed faces -> (probabilities, intensities) of a teacher: an exported model through the
    project's classifier on ONNX Runtime (3x faster than PyTorch here: 1,290 vs 410 faces/s on 2 cores
    on 2026-12-03), a checkpoint as `network` (the recipe's loaded teacher; loaded here when not given)."""
    if path.suffix.lower() == ".onnx":
        from edgefer.edge.classifier import Classifier

        return Classifier.open(path, threads=threads).infer_input
    if network is None:
        from .checkpoint import load_checkpoint

        network = load_checkpoint(path)[0]

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            logits, inten = network(torch.from_numpy(x))
        return logits.softmax(1).numpy(), inten.numpy()

    return run


def multi_view_targets(predict: Predict, pixels: np.ndarray, spec: InputSpec,
                       batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and intensities (N x 7 float32 each) of a teacher per crop, averaged over
    `VIEWS` and their mirror images."""
    k = len(CLASS_NAMES)
    probs = np.zeros((len(pixels), k), np.float64)
    inten = np.zeros((len(pixels), k), np.float64)
    for i in range(0, len(pixels), batch):
        chunk = pixels[i:i + batch]
        for v in VIEWS:
            x = preprocess(view(chunk, *v), spec)
            for xx in (x, np.ascontiguousarray(x[..., ::-1])):
                p, it = predict(xx)
                probs[i:i + len(x)] += p
                inten[i:i + len(x)] += it
    n = 2 * len(VIEWS)
    return (probs / n).astype(np.float32), (inten / n).astype(np.float32)


def multi_view_targets_cached(teacher_path: Path, pixels: np.ndarray, spec: InputSpec, cache_dir: Path,
                              threads: int = 0, network: torch.nn.Module | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """`multi_view_targets` of the teacher file (run as `predictor` runs it), cached in `cache_dir` under
    a key of that file, the pixels and the views (so a resumed run does not redo them)."""
    h = hashlib.sha256()
    h.update(Path(teacher_path).read_bytes())
    h.update(np.ascontiguousarray(pixels).tobytes())
    h.update(repr((VIEWS, spec.to_dict())).encode())
    path = Path(cache_dir) / f"teacher-views-{h.hexdigest()[:16]}.npz"
    if not path.exists():
        probs, inten = multi_view_targets(predictor(Path(teacher_path), network, threads), pixels, spec)
        from edgefer.paths import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, probs=probs, intensity=inten)
    with np.load(path) as z:
        return torch.from_numpy(z["probs"]), torch.from_numpy(z["intensity"])
