"""The shadow check: the device compares what its model computes with the FP32 model it came from.

An INT8 or FP16 artifact, or a TensorRT engine, is converted on one machine and run on another; a
CPU whose kernels saturate (x86 without VNNI running full-range INT8), a wrong engine or a
corrupted file computes something else while looking fine. So whenever the deployed classifier is
not an FP32 model, the first `faces` faces it classifies are also classified by its FP32 base
model on the CPU, in a background thread (off the hot path: a full queue skips a batch, never
blocks the frame), and the two outputs are compared:

- top-1 agreement, the mean and largest probability difference (total variation: half the summed
  absolute differences of the seven probabilities), the mean intensity difference;
- verdict after `faces` faces: passed when the mean probability difference is at most
  `max_mean_prob_diff`, the mean intensity difference at most `max_mean_intensity_diff` and the
  agreement at least `min_agreement`. (Video frames of one face are not independent: a face on a
  decision boundary can flip top-1 for hundreds of frames while its probabilities differ by a few
  hundredths, so agreement has a lenient default and the mean difference decides. Measured on
  PublicTest: a correct INT8 artifact differs by 0.013 on average, one run where it saturates by
  0.23.)

On failure the pipeline falls back to the FP32 model (`on_failure = "fallback"`) or stops the
daemon with a one-line error and exit 78 (`"refuse"`). Either way it is said in one log line and
in the status snapshot, which `systemctl status`, `/healthz`, the metrics and the MQTT status
topic all show. The FP32 base model is found by the sha256 the artifact's contract records: the
embedded model, or `[shadow] reference`.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgefer.errors import ConfigError

log = logging.getLogger(__name__)


class ShadowConfig(BaseModel):
    """The shadow check of a converted model (INT8, FP16, TensorRT) against its FP32 base."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(True, description="Compare the first faces of a converted model with its FP32 base model.")
    faces: int = Field(300, ge=10, le=100000, description="How many faces are compared before the verdict.")
    max_mean_prob_diff: float = Field(0.05, gt=0, le=1, description="Largest mean probability difference (total "
                                      "variation, 0..1) that passes; a correct INT8 model is near 0.015.")
    max_mean_intensity_diff: float = Field(0.05, gt=0, le=1, description="Largest mean absolute intensity difference that passes.")
    min_agreement: float = Field(0.8, ge=0, le=1, description="Smallest top-1 agreement that passes (lenient: video "
                                 "frames of one face are not independent).")
    on_failure: Literal["fallback", "refuse"] = Field("fallback", description="fallback: run the FP32 model instead; "
                                                      "refuse: stop with exit status 78.")
    reference: Path | None = Field(None, description="The FP32 model a converted model came from, when it is not the "
                                   "embedded one (checked by its sha256). Relative paths are relative to this file.")


class ShadowCheckFailed(ConfigError):
    """`on_failure = "refuse"` and the deployed model disagrees with its FP32 base (exit 78)."""


def reference_model(info: Any, configured: Path | None = None) -> tuple[Path | None, str]:
    """The FP32 model to compare a converted model with, and a reason when there is none.

    `info` is the deployed model's contract. The artifact records the sha256 of its FP32 source
    (`extra.conversion.source_sha256`); a configured reference must match it (else ConfigError),
    otherwise the embedded model is used when it matches."""
    from edgefer.convert.engine_cache import sha256_file
    from edgefer.edge.classifier import default_model_path

    if info.precision == "fp32":
        return None, "an FP32 model is its own reference"
    want = (info.extra.get("conversion") or {}).get("source_sha256")
    if configured is not None:
        if not Path(configured).is_file():
            raise ConfigError(f"{configured}: shadow.reference: no such file")
        got = sha256_file(configured)
        if want and got != want:
            raise ConfigError(f"{configured}: shadow.reference is not the FP32 model this {info.precision} model was "
                              f"converted from (sha256 {got[:12]}..., the model records {want[:12]}...)")
        return Path(configured), ""
    if not want:
        return None, "the model records no FP32 source (sha256); set [shadow] reference"
    embedded = default_model_path()
    if sha256_file(embedded) == want:
        return embedded, ""
    return None, (f"its FP32 source (sha256 {want[:12]}...) is not the embedded model; set [shadow] reference "
                  "to that file")


MIN_FACES = 10  # fewer faces than this are too few for a verdict


def judge(figures: dict[str, float], config: ShadowConfig) -> tuple[bool, str]:
    """(passed, one-line summary) of `compare`'s figures against the limits (pure)."""
    c = config
    ok = (figures["mean_prob_diff"] <= c.max_mean_prob_diff and figures["agreement"] >= c.min_agreement
          and figures["mean_intensity_diff"] <= c.max_mean_intensity_diff)
    return ok, (f"{figures['faces']} faces: top-1 agreement {100 * figures['agreement']:.1f}%, mean probability "
                f"difference {figures['mean_prob_diff']:.3f} (max {figures['max_prob_diff']:.3f}), mean intensity "
                f"difference {figures['mean_intensity_diff']:.3f}")


def compare(ref_p: np.ndarray, ref_i: np.ndarray, p: np.ndarray, i: np.ndarray) -> dict[str, float]:
    """Agreement and differences between two models' outputs on the same faces (pure)."""
    if len(p) == 0:
        return {"faces": 0}
    tv = 0.5 * np.abs(ref_p - p).sum(axis=1)
    return {
        "faces": int(len(p)),
        "agreement": float((ref_p.argmax(1) == p.argmax(1)).mean()),
        "mean_prob_diff": float(tv.mean()),
        "max_prob_diff": float(np.abs(ref_p - p).max()),
        "mean_intensity_diff": float(np.abs(ref_i - i).mean()),
    }


class ShadowCheck:
    """Compares the deployed classifier with `reference` (an open FP32 `Classifier`) on the first
    faces it classifies. Thread-safe: `submit` is called from the pipeline, the comparison runs in
    its own thread. `state`: checking, passed, failed, unavailable (no reference: said once)."""

    def __init__(self, reference: Any, config: ShadowConfig | None = None, *, reason: str = "") -> None:
        self.config = config or ShadowConfig()
        self.reference = reference
        self.state = "checking" if reference is not None else "unavailable"
        self.reason = reason
        self.skipped = 0  # batches not compared because the comparison was busy
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._n = 0
        self._result: dict[str, Any] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if reference is None:
            log.warning("shadow check unavailable: %s", reason)
        else:
            self._thread = threading.Thread(target=self._work, name="edgefer-shadow", daemon=True)
            self._thread.start()

    @classmethod
    def failed_now(cls, reference: Any, reason: str, config: ShadowConfig | None = None) -> "ShadowCheck":
        """A check that failed before any face (e.g. a model known to be inexact on this CPU)."""
        check = cls(None, config, reason=reason)
        check.reference, check.state = reference, "failed"
        log.error("shadow check failed: %s", reason)
        return check

    # -- pipeline side ------------------------------------------------------------------------

    def submit(self, crops: np.ndarray, probs: np.ndarray, intensity: np.ndarray) -> None:
        """Offer one batch (copied); skipped when the comparison is busy or done."""
        if self.state != "checking" or len(crops) == 0:
            return
        try:
            self._queue.put_nowait((np.array(crops), np.array(probs), np.array(intensity)))
        except queue.Full:
            self.skipped += 1

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    def result(self) -> dict[str, Any]:
        """For the status snapshot."""
        with self._lock:
            out: dict[str, Any] = {"state": self.state, "faces_needed": self.config.faces, **self._result}
        if self.reason:
            out["reason"] = self.reason
        if self.state == "failed":
            out["action"] = "fell back to FP32" if self.config.on_failure == "fallback" else "refused"
        if self.skipped:
            out["batches_skipped"] = self.skipped
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}

    # -- comparison thread --------------------------------------------------------------------

    def _work(self) -> None:
        while self.state == "checking" and not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                if item is not None:
                    self._compare(*item)
                    if self._n >= self.config.faces:
                        self._verdict()
            finally:
                self._queue.task_done()

    def _compare(self, crops: np.ndarray, probs: np.ndarray, intensity: np.ndarray) -> None:
        ref_p, ref_i, finite = self.reference.classify(crops)
        keep = finite & np.isfinite(probs).all(1) & np.isfinite(intensity).all(1)
        self._parts.append((ref_p[keep], ref_i[keep], probs[keep], intensity[keep]))
        self._n += int(keep.sum())
        figures = compare(*(np.concatenate(a) for a in zip(*self._parts)))
        with self._lock:
            self._result = figures

    def _verdict(self) -> None:
        c, f = self.config, self._result
        ok, summary = judge(f, c)
        if ok:
            log.info("shadow check passed against the FP32 model: %s", summary)
            self.state = "passed"
        else:
            self.reason = (f"disagrees with its FP32 model on {summary} (limits: mean difference "
                           f"{c.max_mean_prob_diff}, agreement {c.min_agreement})")
            log.error("shadow check failed: %s; %s", self.reason,
                      "falling back to the FP32 model" if c.on_failure == "fallback" else "refusing to run it")
            self.state = "failed"
        self._parts = []

    def finish(self, timeout: float = 30.0) -> None:
        """For finite runs (`predict`): compare what was submitted and judge it even if fewer than
        `faces` faces came (at least `MIN_FACES`; else the state stays `checking`)."""
        if self.state != "checking" or self._thread is None:
            return
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while self._queue.unfinished_tasks and not deadline.is_set() and self._thread.is_alive():
                deadline.wait(0.05)
        finally:
            timer.cancel()
        self._stop.set()
        self._thread.join(2.0)
        if self.state == "checking" and self._n >= MIN_FACES:
            self._verdict()

    def close(self) -> None:
        """Stop the comparison; the reference model stays open for a fallback (closed by its owner)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self.state == "checking":
            self.state = "stopped"

def shadow_for(classifier: Any, config: ShadowConfig | None, problem: str | None = None) -> ShadowCheck | None:
    """The shadow check for an open classifier (None for an FP32 model or when turned off).
    `problem`: the model is known to be computed wrongly here (`precision.Choice.problem`): the
    check fails at once, before any face."""
    from .classifier import Classifier

    if config is None or classifier.info.precision == "fp32":
        return None
    if not config.enabled:
        log.info("shadow check turned off ([shadow] enabled = false): the %s model is not compared with FP32",
                 classifier.info.precision)
        return None
    path, reason = reference_model(classifier.info, config.reference)
    reference = Classifier.open(path, threads=1) if path is not None else None
    if problem:
        return ShadowCheck.failed_now(reference, problem, config)
    return ShadowCheck(reference, config, reason=reason)


def check_faces(classifier: Any, crops: np.ndarray, config: ShadowConfig | None = None) -> dict[str, Any] | None:
    """The shadow check, synchronously, on the first `config.faces` of `crops` (`edgefer eval`):
    None for an FP32 model; else the figures, `state` passed/failed/unavailable and its reason."""
    from .classifier import Classifier

    config = config or ShadowConfig()
    if classifier.info.precision == "fp32" or not config.enabled:
        return None
    path, reason = reference_model(classifier.info, config.reference)
    if path is None:
        return {"state": "unavailable", "reason": reason}
    crops = np.asarray(crops)[: config.faces]
    reference = Classifier.open(path, threads=1)
    try:
        ref_p, ref_i, ref_f = reference.classify(crops)
    finally:
        reference.close()
    p, i, f = classifier.classify(crops)
    keep = ref_f & f
    figures = compare(ref_p[keep], ref_i[keep], p[keep], i[keep])
    if figures["faces"] < MIN_FACES:
        return {"state": "unavailable", "reason": f"only {figures['faces']} faces", **figures}
    ok, summary = judge(figures, config)
    return {"state": "passed" if ok else "failed", "faces_needed": config.faces, **figures,
            **({} if ok else {"reason": f"disagrees with its FP32 model on {summary}"})}
