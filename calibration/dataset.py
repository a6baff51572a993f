"""The calibration set: one npz file of face crops with a manifest.

Format (choice documented here and in the README): the set stores *uint8 gray crops* at the model's
crop size, not network input. They are turned into input by `edgefer.contract.preprocess` with the
model's own `InputSpec` when read (`CalibrationSet.inputs`), so the one preprocessing function is
the only place normalisation happens, and a set built for 48 x 48 crops refuses a 64 x 64 model.

Arrays: `pixels` (N x S x S uint8), `labels` (N int64, edgefer class order, -1 unknown) and
`manifest` (a 0-d unicode array holding JSON: sources, split, counts per class, crop size, the
InputSpec it was built for, seed, and `sha256` of pixels + labels, checked on load).

How many faces are enough: static INT8 calibration estimates one range per activation tensor
(MinMax, Percentile) or a histogram (Entropy). For edgefer's small CNN a few hundred faces
covering every class give stable ranges; `benchmarks/calibration_size.py` measures it (provisional
model, MinMax: 35 to 2100 faces all gave 98.3-98.7% top-1 agreement and -0.1 to -0.25 points).
The default is 100 per class (700 faces). Fewer than `MIN_FACES` (32) is refused: ranges from a
handful of faces clip real inputs; fewer than `WARN_FACES` (200) logs a warning; a class missing
from the set logs a warning. More than a few thousand only slows calibration (Entropy and
Percentile keep histograms). Calibrate on training rows or on deployment footage, never on the
rows you evaluate drift on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.contract import CLASS_NAMES, InputSpec, preprocess
from edgefer.errors import UserError
from edgefer.paths import atomic_path

log = logging.getLogger(__name__)

FORMAT = "edgefer-calibration"
FORMAT_VERSION = 1
MIN_FACES = 32
WARN_FACES = 200
DEFAULT_PER_CLASS = 100


def content_sha256(pixels: np.ndarray, labels: np.ndarray) -> str:
    """sha256 over the crops and labels (C order, fixed dtypes): the identity of a calibration set."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    h.update(repr(pixels.shape).encode())
    return h.hexdigest()


@dataclass
class CalibrationSet:
    """Gray uint8 crops (N x S x S) with labels and the manifest that describes them."""

    pixels: np.ndarray
    labels: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def sha256(self) -> str:
        return str(self.manifest.get("sha256", ""))

    def check_for(self, spec: InputSpec, where: str = "model") -> None:
        """Refuse a set that cannot calibrate a model with this input spec (one line)."""
        if len(self) == 0:
            raise UserError(f"{self.path or 'calibration set'}: calibration set is empty")
        if self.size != spec.size:
            raise UserError(f"{self.path or 'calibration set'}: crops are {self.size}x{self.size} but {where} "
                            f"expects {spec.size}x{spec.size}; rebuild it with --model {where}")

    def inputs(self, spec: InputSpec) -> np.ndarray:
        """Network input for a model with `spec` (N x 1 x S x S float32), via `contract.preprocess`."""
        self.check_for(spec)
        return preprocess(self.pixels, spec)


def counts_per_class(labels: np.ndarray) -> dict[str, int]:
    counts = {c: int((labels == i).sum()) for i, c in enumerate(CLASS_NAMES)}
    unknown = int((labels < 0).sum())
    if unknown:
        counts["unknown"] = unknown
    return counts


def save(cset: CalibrationSet, out: Path) -> Path:
    """Write atomically (`edgefer.paths.atomic_path`); the manifest gets `sha256`, counts and format."""
    out = Path(out)
    manifest = dict(cset.manifest)
    manifest.update({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n": len(cset),
        "crop_size": cset.size,
        "counts": counts_per_class(cset.labels),
        "sha256": content_sha256(cset.pixels, cset.labels),
    })
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, pixels=cset.pixels.astype(np.uint8), labels=cset.labels.astype(np.int64),
                            manifest=np.array(json.dumps(manifest, sort_keys=True)))
    cset.manifest = manifest
    cset.path = str(out)
    return out


def load(path: str | Path) -> CalibrationSet:
    """Read a calibration set, verifying format and sha256; every problem is one `UserError` line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: calibration set not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not {"pixels", "labels", "manifest"} <= set(data.files):
                raise UserError(f"{path}: not an edgefer calibration set (build one with 'edgefer calibration build')")
            pixels, labels = data["pixels"], data["labels"]
            manifest = json.loads(str(data["manifest"]))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path}: cannot read calibration set ({type(exc).__name__})") from None
    if manifest.get("format") != FORMAT:
        raise UserError(f"{path}: not an edgefer calibration set (format {manifest.get('format')!r})")
    if pixels.ndim != 3 or pixels.dtype != np.uint8 or pixels.shape[1] != pixels.shape[2] or len(labels) != len(pixels):
        raise UserError(f"{path}: malformed calibration set (pixels {pixels.shape} {pixels.dtype})")
    if content_sha256(pixels, labels) != manifest.get("sha256"):
        raise UserError(f"{path}: calibration set is corrupt (sha256 does not match its manifest)")
    if len(labels) == 0:
        raise UserError(f"{path}: calibration set is empty")
    return CalibrationSet(pixels, labels.astype(np.int64), manifest, str(path))
