"""Building a calibration set from labelled crops (npz, FER-2013 CSV) or from photos and videos.

npz / CSV rows are FER-2013-style crops already framed like the training data; photos and videos
go through the deployment path (detector -> aligner -> crop) so calibration sees what the device
will see. Selection is stratified by class (at most `per_class` faces of each class) and
deterministic (a seeded permutation per class), then capped at `limit` keeping the class mix.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.contract import CLASS_NAMES, InputSpec, ferplus_usable
from edgefer.data import FaceSet, load_faces
from edgefer.errors import UserError

from .dataset import DEFAULT_PER_CLASS, MIN_FACES, WARN_FACES, CalibrationSet, save

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def stratified_indices(labels: np.ndarray, per_class: int | None, limit: int | None, seed: int = 0) -> np.ndarray:
    """Row indices: up to `per_class` rows of each label (unlabelled rows, -1, form one group),
    chosen by a seeded permutation; then at most `limit` rows, taken round-robin across groups so
    the class mix survives the cap. Sorted, deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    groups = []
    for value in np.unique(labels):
        idx = np.nonzero(labels == value)[0]
        idx = idx[rng.permutation(len(idx))]
        groups.append(idx[:per_class] if per_class else idx)
    if limit is not None and sum(len(g) for g in groups) > limit:
        picked: list[int] = []
        depth = 0
        while len(picked) < limit:
            for g in groups:
                if depth < len(g) and len(picked) < limit:
                    picked.append(int(g[depth]))
            depth += 1
        return np.sort(np.array(picked, dtype=np.int64))
    return np.sort(np.concatenate(groups)) if groups else np.zeros(0, np.int64)


def resize_crops(pixels: np.ndarray, size: int) -> np.ndarray:
    """Crops to size x size (INTER_AREA when shrinking), as `edgefer.evaluate` does."""
    if pixels.shape[1:] == (size, size):
        return pixels
    import cv2

    interp = cv2.INTER_AREA if pixels.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(p, (size, size), interpolation=interp) for p in pixels]) if len(pixels) else \
        np.zeros((0, size, size), np.uint8)


def load_crops_source(path: Path, split: str | None) -> tuple[FaceSet, dict[str, Any]]:
    """An npz / CSV source: rows of `split` (when the file has splits), minus rows FER+ marks as
    not a face. Returns the rows and the source's manifest entry."""
    faces = load_faces(path)
    has_splits = bool((faces.usage != "").any())
    if split and has_splits:
        faces = faces.split(split)
    elif split:
        log.info("%s has no usage column; using all %d rows", path, len(faces))
    dropped = 0
    if faces.votes is not None and len(faces):
        usable = ferplus_usable(faces.votes)
        dropped = int((~usable).sum())
        faces = faces.select(usable)
    entry = {"path": str(path), "kind": path.suffix.lower().lstrip("."), "split": split if has_splits else None,
             "rows": len(faces), "dropped_not_a_face": dropped}
    return faces, entry


def load_media_source(path: Path, model: str | Path | None, detector: str | Path | None = None,
                      every: int = 15) -> tuple[FaceSet, dict[str, Any]]:
    """Photos (a class folder, or a flat folder of images) or a video (every `every`-th frame):
    the largest face of each image, found and aligned by the deployment pipeline
    (`edgefer.edge.pipeline`) for `model`. Labels come from class sub-folder names, else -1."""
    from edgefer.edge.pipeline import build_pipeline

    pipeline = build_pipeline(model=model, detector=detector)
    try:
        if path.is_dir() and any(d.is_dir() and not d.name.startswith(".") for d in path.iterdir()):
            from edgefer.edge.photos import load_photo_folder

            fs = load_photo_folder(path, pipeline)
            return fs, {"path": str(path), "kind": "photos", "images": len(fs) + fs.no_face,
                        "no_face": fs.no_face, "rows": len(fs)}
        crops, n_images, no_face = [], 0, 0
        for image in _iter_media(path, every):
            n_images += 1
            faces = pipeline.detector.detect(image)
            if faces:
                largest = max(faces, key=lambda f: float(f.box[2] * f.box[3]))
                crop, kept = pipeline.aligner.align(image, [largest])
                if len(kept):
                    crops.append(crop[0])
                    continue
            no_face += 1
    finally:
        pipeline.close()
    size = pipeline.aligner.size
    pixels = np.stack(crops).astype(np.uint8) if crops else np.zeros((0, size, size), np.uint8)
    fs = FaceSet(pixels, np.full(len(crops), -1, np.int64), np.full(len(crops), "", dtype=str), source=str(path))
    return fs, {"path": str(path), "kind": "video" if path.is_file() else "images", "images": n_images,
                "no_face": no_face, "rows": len(crops)}


def _iter_media(path: Path, every: int):
    """Frames of a video (every `every`-th) or the images of a flat folder, as BGR arrays."""
    import cv2

    if path.is_file():
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise UserError(f"{path}: cannot open video")
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % every == 0:
                yield frame
            i += 1
        cap.release()
        return
    for f in sorted(path.iterdir()):
        if f.suffix.lower() in IMAGE_SUFFIXES:
            image = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if image is not None:
                yield image


def build_calibration_set(sources: list[str | Path], out: str | Path, spec: InputSpec,
                          per_class: int | None = DEFAULT_PER_CLASS, limit: int | None = None,
                          split: str | None = "Training", seed: int = 0, model: str | Path | None = None,
                          detector: str | Path | None = None) -> CalibrationSet:
    """Collect faces from every source, select stratified and deterministic, save with a manifest.

    `spec` is the input spec of the model the set is for (crop size; stored in the manifest so a
    mismatched set is refused at conversion). Fewer than `MIN_FACES` faces is an error.
    """
    if not sources:
        raise UserError("give at least one --from SOURCE")
    pixels, labels, entries = [], [], []
    for src in sources:
        path = Path(src)
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
        if path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES:
            faces, entry = load_media_source(path, model, detector)
        else:
            faces, entry = load_crops_source(path, split)
        pixels.append(resize_crops(faces.pixels, spec.size))
        labels.append(faces.labels)
        entries.append(entry)
    all_pixels = np.concatenate(pixels)
    all_labels = np.concatenate(labels).astype(np.int64)
    idx = stratified_indices(all_labels, per_class, limit, seed)
    if len(idx) < MIN_FACES:
        raise UserError(f"only {len(idx)} faces found in the sources; a calibration set needs at least {MIN_FACES} "
                        f"(a few hundred recommended)")
    if len(idx) < WARN_FACES:
        log.warning("calibration set has only %d faces; %d+ give steadier activation ranges", len(idx), WARN_FACES)
    missing = [c for i, c in enumerate(CLASS_NAMES) if (all_labels >= 0).any() and not (all_labels[idx] == i).any()]
    if missing:
        log.warning("calibration set has no faces of: %s", ", ".join(missing))
    cset = CalibrationSet(all_pixels[idx], all_labels[idx], {
        "sources": entries, "split": split, "per_class": per_class, "limit": limit, "seed": seed,
        "input_spec": spec.to_dict(), "model": str(model or "embedded default"),
        "stored_as": "uint8 gray crops; network input = edgefer.contract.preprocess(pixels, model InputSpec)",
    })
    save(cset, Path(out))
    log.info("calibration set %s: %d faces %s", out, len(cset), cset.manifest["counts"])
    return cset
