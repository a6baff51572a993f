"""The perception pipeline: detect -> align -> classify, one frame at a time.

`Pipeline` only wires stages together; tracking, smoothing and sinks live elsewhere and are driven by
the run loop, which calls `process` once per frame.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgefer.errors import ConfigError
from edgefer.types import Face, FaceResult, Frame, FrameResult

from .align import Aligner
from .classifier import Classifier
from .detector import Detector, YunetDetector


def _ms(t0: float, t1: float) -> float:
    return (t1 - t0) * 1000.0


class Pipeline:
    """Detector + aligner + classifier. All faces of a frame are classified in one backend call."""

    def __init__(self, detector: Detector, classifier: Classifier, aligner: Aligner | None = None,
                 max_faces: int = 8) -> None:
        if max_faces < 1:
            raise ConfigError(f"max_faces must be at least 1, got {max_faces}")
        self.detector = detector
        self.classifier = classifier
        self.aligner = aligner or Aligner.from_info(classifier.info)
        self.max_faces = max_faces
        self.non_finite = 0  # faces dropped because the classifier returned NaN/inf
        self.frames = 0

    @classmethod
    def open(cls, model: str | Path | None = None, detector: str | Path | None = None, threads: int = 0,
             **options) -> "Pipeline":
        """The usual pipeline; see `build_pipeline`."""
        return build_pipeline(model=model, detector=detector, threads=threads, **options)

    def select(self, faces: list[Face]) -> list[Face]:
        """The `max_faces` largest faces (by box area), largest first."""
        return sorted(faces, key=lambda f: -float(f.box[2] * f.box[3]))[: self.max_faces]

    def classify_faces(self, image: np.ndarray, faces: list[Face]) -> tuple[list[FaceResult], float, float]:
        """Align and classify given faces of `image`; returns results and align/classify ms."""
        t0 = time.perf_counter()
        crops, kept = self.aligner.align(image, faces)
        t1 = time.perf_counter()
        results: list[FaceResult] = []
        if len(crops):
            probs, intensity, finite = self.classifier.classify(crops)
            self.non_finite += int((~finite).sum())
            for j, i in enumerate(kept):
                if finite[j]:
                    results.append(FaceResult(face=faces[int(i)], probabilities=probs[j], intensity=intensity[j]))
        t2 = time.perf_counter()
        return results, _ms(t0, t1), _ms(t1, t2)

    def process(self, frame: Frame, decode_ms: float = 0.0) -> FrameResult:
        """One frame through detect -> align -> classify. `decode_ms` is the source's time to get
        the frame (reported as the `decode` stage)."""
        t0 = time.perf_counter()
        detected = self.detector.detect(frame.image)
        t1 = time.perf_counter()
        faces = self.select(detected)
        results, align_ms, classify_ms = self.classify_faces(frame.image, faces)
        t2 = time.perf_counter()
        self.frames += 1
        timings = {"decode": decode_ms, "detect": _ms(t0, t1), "align": align_ms, "classify": classify_ms,
                   "total": decode_ms + _ms(t0, t2)}
        return FrameResult(frame=frame, faces=results, timings_ms=timings, faces_detected=len(detected))

    def process_image(self, image: np.ndarray, index: int = 0, source: str = "") -> FrameResult:
        """Convenience for still images."""
        now = time.time()
        return self.process(Frame(image=image, index=index, timestamp=now, monotonic=time.monotonic(),
                                  source=source))

    def close(self) -> None:
        self.detector.close()
        self.classifier.close()


def build_pipeline(model: str | Path | None = None, detector: str | Path | None = None, threads: int = 0,
                   classifier: Classifier | None = None, max_faces: int = 8, input_width: int = 320,
                   score_threshold: float = 0.6, min_face: float = 24.0,
                   template: Sequence[Sequence[float]] | None = None) -> Pipeline:
    """YuNet (file from `detector`, else cache, else pinned download; see `resolve_detector_model`)
    and the classifier (`classifier` if already open, else `model` on its file type's backend, None:
    the embedded default), both with `threads` intra-op threads (0: the runtime's default). The
    aligner uses the model's template unless `template` is given (experiments only)."""
    det = YunetDetector.open(detector, threads=threads, input_width=input_width,
                             score_threshold=score_threshold, min_face=min_face)
    try:
        clf = classifier if classifier is not None else Classifier.open(model, threads=threads)
        aligner = Aligner.from_info(clf.info, template)
    except BaseException:
        det.close()
        raise
    return Pipeline(det, clf, aligner, max_faces=max_faces)
