"""The perception pipeline: detect -> align -> classify, one frame at a time.

`Pipeline` only wires stages together; tracking, smoothing and sinks live elsewhere and are driven by
the run loop, which calls `process` once per frame.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import ConfigError
from edgefer.types import Face, FaceResult, Frame, FrameResult

from .align import Aligner
from .classifier import Classifier
from .detector import AUTO_WIDTHS, Detector, YunetDetector, choose_input_width, timed_input_widths
from .shadow import ShadowCheck, ShadowCheckFailed


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
        self.shadow: ShadowCheck | None = None  # compares a converted classifier with its FP32 base
        self.choice: dict | None = None  # which classifier runs and why (`precision.Choice.to_dict`)
        self.detector_choice: dict | None = None  # the detector's input width and why (`build_pipeline`)
        self._fell_back = False

    def attach_shadow(self, shadow: ShadowCheck | None) -> None:
        """Check the classifier against its FP32 base on the first faces (see `shadow.py`)."""
        self.shadow = shadow
        self._follow_shadow()

    def _follow_shadow(self) -> None:
        """After a failed shadow check: run the FP32 reference instead, or refuse (exit 78)."""
        s = self.shadow
        if s is None or not s.failed or self._fell_back:
            return
        if s.config.on_failure == "refuse" or s.reference is None:
            raise ShadowCheckFailed(f"shadow check failed: {s.reason}")
        old, self.classifier = self.classifier, s.reference
        self._fell_back = True
        old.close()
        if self.choice is not None:
            self.choice = {**self.choice, "model": "embedded FP32 (shadow-check fallback)", "precision": "fp32"}

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
            self._follow_shadow()
            probs, intensity, finite = self.classifier.classify(crops)
            if self.shadow is not None and not self._fell_back:
                self.shadow.submit(crops, probs, intensity)
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
        if self.shadow is not None:
            self.shadow.close()
            if not self._fell_back and self.shadow.reference is not None:
                self.shadow.reference.close()


def build_pipeline(model: str | Path | None = None, detector: str | Path | None = None, threads: int = 0,
                   classifier: Classifier | None = None, max_faces: int = 8, input_width: int | str = 320,
                   score_threshold: float = 0.6, min_face: float = 24.0,
                   template: Sequence[Sequence[float]] | None = None) -> Pipeline:
    """YuNet (file from `detector`, else cache, else pinned download; see `resolve_detector_model`)
    and the classifier (`classifier` if already open, else `model` on its file type's backend, None:
    the embedded default), both with `threads` intra-op threads (0: the runtime's default). The
    aligner uses the model's template unless `template` is given (experiments only). `input_width`
    "auto": measured here (`detector.choose_input_width`); the width and why are in `detector_choice`."""
    auto = input_width == "auto"
    det = YunetDetector.open(detector, threads=threads, input_width=AUTO_WIDTHS[-1] if auto else int(input_width),
                             score_threshold=score_threshold, min_face=min_face)
    width_choice = {"input_width": det.input_width, "reason": "configured"}
    try:
        if auto:
            ms = timed_input_widths(det, threads)
            det.input_width, reason = choose_input_width(ms)
            det.upscale = False  # a frame narrower than the width chosen goes in at its own size
            width_choice = {"input_width": det.input_width, "reason": reason, "ms": ms}
        clf = classifier if classifier is not None else Classifier.open(model, threads=threads)
        aligner = Aligner.from_info(clf.info, template)
    except BaseException:
        det.close()
        raise
    pipe = Pipeline(det, clf, aligner, max_faces=max_faces)
    pipe.detector_choice = width_choice
    return pipe


def open_pipeline(model: str | Path | None = None, precision: str | None = None, shadow: Any = None,
                  threads: int = 0, facts: dict | None = None, **options: Any) -> Pipeline:
    """`build_pipeline` with the classifier chosen for this machine (`precision.choose`: a
    configured model as given, else the embedded FP32 model or, with precision auto/int8, INT8)
    and the shadow check of a converted model against its FP32 base (`shadow`: a ShadowConfig,
    None for none). The choice and its reason are in `pipeline.choice`."""
    from .precision import choose
    from .shadow import shadow_for

    choice = choose(Path(model) if model else None, precision, facts)
    clf = Classifier.open(choice.path, threads=threads)
    try:
        pipe = build_pipeline(classifier=clf, threads=threads, **options)
    except BaseException:
        clf.close()
        raise
    pipe.choice = choice.to_dict()
    try:
        pipe.attach_shadow(shadow_for(clf, shadow, choice.problem))
    except BaseException:
        pipe.close()
        raise
    return pipe
