"""Face alignment: one similarity transform from the 5 detected landmarks onto the model's template.

The template (`ModelInfo.template`, in pixels of the model's S x S input crop) is derived from the
training data itself (`scripts/derive_template.py`), so deployed crops are framed like the crops the
model learnt from. Pixel convention: OpenCV's, pixel centres at integer coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgefer.contract import to_gray
from edgefer.errors import ConfigError
from edgefer.modelinfo import ModelInfo
from edgefer.types import Face


class Aligner:
    """Landmarks -> rotation + uniform scale + shift -> gray uint8 S x S crops."""

    def __init__(self, template: Sequence[Sequence[float]] | np.ndarray, size: int) -> None:
        tpl = np.asarray(template, np.float32)
        if tpl.shape != (5, 2) or not np.isfinite(tpl).all():
            raise ConfigError(f"alignment template must be 5 finite (x, y) points, got shape {tpl.shape}")
        if size <= 0:
            raise ConfigError(f"crop size must be positive, got {size}")
        self.template = tpl
        self.size = int(size)

    @classmethod
    def from_info(cls, info: ModelInfo, template: Sequence[Sequence[float]] | None = None) -> "Aligner":
        """The aligner a model expects: its template and crop size (`template` overrides, for experiments)."""
        tpl = template if template is not None else info.template
        if tpl is None or len(tpl) == 0:
            raise ConfigError("the model carries no alignment template; re-export it with one "
                              "(train/alignment_template.json) or pass a template")
        return cls(tpl, info.input.size)

    def transform(self, landmarks: np.ndarray) -> np.ndarray | None:
        """2 x 3 similarity matrix mapping frame landmarks onto the template (least squares over
        all five points), or None for degenerate landmarks."""
        import cv2

        src = np.asarray(landmarks, np.float32).reshape(5, 2)
        if not np.isfinite(src).all():
            return None
        # A reprojection threshold far above any face size keeps all five points as inliers, so the
        # final Levenberg-Marquardt refinement is a least-squares fit over all of them.
        m, _ = cv2.estimateAffinePartial2D(src, self.template, method=cv2.RANSAC,
                                           ransacReprojThreshold=1e6, maxIters=1, refineIters=20)
        if m is None or not np.isfinite(m).all() or abs(np.linalg.det(m[:, :2])) < 1e-12:
            return None
        return m

    def warp(self, gray: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.warpAffine(gray, matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def align(self, image: np.ndarray, faces: Sequence[Face]) -> tuple[np.ndarray, np.ndarray]:
        """Crops (N x S x S uint8) for the faces whose landmarks give a transform, and the indices
        (into `faces`) of those faces."""
        if not faces:
            return np.zeros((0, self.size, self.size), np.uint8), np.zeros(0, np.int64)
        gray = to_gray(image)
        crops, kept = [], []
        for i, face in enumerate(faces):
            m = self.transform(face.landmarks)
            if m is None:
                continue
            crops.append(self.warp(gray, m))
            kept.append(i)
        if not crops:
            return np.zeros((0, self.size, self.size), np.uint8), np.zeros(0, np.int64)
        return np.stack(crops), np.asarray(kept, np.int64)


def align_faces(image: np.ndarray, faces: Sequence[Face], size: int,
                template: Sequence[Sequence[float]] | None = None, template_size: int | None = None) -> np.ndarray:
    """Crops (N x size x size uint8) of `faces`; faces with degenerate landmarks are left out, so N
    may be smaller than len(faces) (use `Aligner.align` to know which). `template` (in `template_size` pixels, default `size`) defaults to the embedded
    default model's; pass the template of the model the crops are for."""
    if template is None:
        from edgefer.modelinfo import read_onnx_info

        from .classifier import default_model_path

        info = read_onnx_info(default_model_path())
        template, template_size = info.template, info.input.size
    tpl = np.asarray(template, np.float32) * (size / float(template_size or size))
    crops, _ = Aligner(tpl, size).align(image, faces)
    return crops
