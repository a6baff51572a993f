"""Labelled face data: one loader layer for training, evaluation and calibration.

Formats:
- the npz of `shared/data/fer2013/` (arrays documented in its README; FER-2013 label ids);
- the original FER-2013 CSV (`emotion,pixels,Usage`, optionally FER+ vote columns);
- a folder with one subfolder per class name (full photos; faces found by the deployment
  detector and aligner, see `edgefer.edge.pipeline`).

All return a `FaceSet` whose labels are already in edgefer's class order.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .contract import CLASS_NAMES, FER2013_TO_EDGEFER
from .errors import UserError

NPZ_REQUIRED = ("pixels", "labels", "usage")


@dataclass
class FaceSet:
    """Face crops with labels in edgefer order (-1 where unknown) and optional FER+ votes."""

    pixels: np.ndarray  # N x H x W uint8 (gray crops)
    labels: np.ndarray  # N int64, edgefer class index or -1
    usage: np.ndarray  # N str, e.g. Training / PublicTest / "" when the source has no splits
    votes: np.ndarray | None = None  # N x 10 uint8 FER+ votes, when present
    source: str = ""
    paths: list[str] = field(default_factory=list)  # per row, for photo folders
    no_face: int = 0  # images in which no face was found (photo folders)

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, mask: np.ndarray) -> "FaceSet":
        return FaceSet(
            pixels=self.pixels[mask],
            labels=self.labels[mask],
            usage=self.usage[mask],
            votes=None if self.votes is None else self.votes[mask],
            source=self.source,
            paths=[p for p, m in zip(self.paths, mask) if m] if self.paths else [],
            no_face=self.no_face,
        )

    def split(self, name: str | None) -> "FaceSet":
        """Rows whose `usage` is `name` (all rows when `name` is None)."""
        if name is None:
            return self
        mask = self.usage == name
        if not mask.any():
            names = ", ".join(sorted(set(self.usage.tolist()))) or "none"
            raise UserError(f"{self.source}: no rows with usage {name!r} (splits present: {names})")
        return self.select(mask)


def load_npz(path: Path) -> FaceSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in NPZ_REQUIRED if k not in data.files]
            if missing:
                raise UserError(f"{path}: not an edgefer/FER-2013 npz, missing arrays: {', '.join(missing)}")
            pixels = data["pixels"]
            labels = data["labels"].astype(np.int64)
            usage = data["usage"].astype(str)
            votes = data["ferplus_votes"] if "ferplus_votes" in data.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path}: cannot read npz file ({exc})") from None
    if pixels.ndim != 3 or pixels.dtype != np.uint8 or len(pixels) != len(labels) or len(usage) != len(labels):
        raise UserError(f"{path}: malformed npz (pixels {pixels.shape} {pixels.dtype}, labels {labels.shape})")
    if len(labels) and (labels.min() < 0 or labels.max() > 6):
        raise UserError(f"{path}: labels must be FER-2013 ids 0..6")
    return FaceSet(pixels, FER2013_TO_EDGEFER[labels], usage, votes, source=str(path))


def load_csv(path: Path) -> FaceSet:
    """The original fer2013.csv (`emotion,pixels,Usage`); FER+ columns are used when present."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            if "emotion" not in header or "pixels" not in header:
                raise UserError(f"{path}: CSV needs columns 'emotion' and 'pixels' (found: {', '.join(header) or 'none'})")
            vote_cols = [c for c in ("neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                                     "fear", "contempt", "unknown", "NF") if c in header]
            labels, pixels, usage, votes = [], [], [], []
            for lineno, row in enumerate(reader, start=2):
                try:
                    values = np.array(row["pixels"].split(), dtype=np.int64)
                    label = int(row["emotion"])
                except (ValueError, AttributeError):
                    raise UserError(f"{path}:{lineno}: malformed row") from None
                side = int(round(len(values) ** 0.5))
                if side * side != len(values) or side == 0 or not 0 <= label <= 6 or values.min() < 0 or values.max() > 255:
                    raise UserError(f"{path}:{lineno}: malformed row (label {label}, {len(values)} pixels)")
                labels.append(label)
                pixels.append(values.astype(np.uint8).reshape(side, side))
                usage.append(row.get("Usage") or "")
                if len(vote_cols) == 10:
                    votes.append([int(row[c] or 0) for c in vote_cols])
    except OSError as exc:
        raise UserError(f"{path}: cannot read CSV ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text CSV file") from None
    if not labels:
        raise UserError(f"{path}: CSV has no rows")
    if len({p.shape for p in pixels}) != 1:
        raise UserError(f"{path}: rows have different image sizes")
    return FaceSet(
        np.stack(pixels),
        FER2013_TO_EDGEFER[np.array(labels)],
        np.array(usage, dtype=str),
        np.array(votes, dtype=np.uint8) if votes else None,
        source=str(path),
    )


def class_of_folder(name: str, path: Path) -> int:
    try:
        return CLASS_NAMES.index(name.lower())
    except ValueError:
        raise UserError(f"{path}: unknown class folder {name!r} (expected one of: {', '.join(CLASS_NAMES)})") from None


def load_faces(path: str | Path) -> FaceSet:
    """Load labelled crops from an npz or a FER-2013 CSV. Photo folders: see `edgefer.edge.pipeline.load_photo_folder`."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; photo folders go through the face pipeline (use 'edgefer eval')")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path)
    if suffix == ".csv":
        return load_csv(path)
    raise UserError(f"{path}: unknown data format (expected .npz, .csv or a class folder)")
