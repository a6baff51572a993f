"""Labelled photo folders (one subfolder per class name) turned into aligned face crops.

The faces go through the deployment detector and aligner, so evaluation on photos measures what the
device will see. Used by `edgefer eval FOLDER` and the calibration set builder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgefer.data import FaceSet, class_of_folder
from edgefer.errors import UserError

from .pipeline import Pipeline
from .sources.files import list_images, read_image

log = logging.getLogger(__name__)


def class_folders(path: Path) -> list[tuple[Path, int]]:
    """(subfolder, class index) pairs of a labelled folder, sorted by name; hidden folders ignored."""
    if not path.exists():
        raise UserError(f"{path}: no such folder")
    if not path.is_dir():
        raise UserError(f"{path}: not a folder (expected one subfolder per class name)")
    subs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise UserError(f"{path}: no class subfolders (expected one per class: angry, disgust, ...)")
    return [(p, class_of_folder(p.name, p)) for p in subs]


def load_photo_folder(path: str | Path, pipeline: Pipeline) -> FaceSet:
    """Aligned crops of the largest face in every image under `path/<class>/`.

    Images without a face are counted in `FaceSet.no_face` and listed in the returned set's extra
    attribute `no_face_paths`; unreadable images are skipped with a warning and listed in
    `unreadable_paths`. An unknown class folder or a folder without images is a `UserError`.
    """
    root = Path(path)
    folders = class_folders(root)
    files = [(img, label) for sub, label in folders for img in list_images(sub)]
    if not files:
        raise UserError(f"{root}: no images in its class subfolders")
    crops, labels, paths = [], [], []
    no_face: list[str] = []
    unreadable: list[str] = []
    for img_path, label in files:
        image = read_image(img_path)
        if image is None:
            log.warning("%s: not a readable image; skipped", img_path)
            unreadable.append(str(img_path))
            continue
        faces = pipeline.detector.detect(image)
        if not faces:
            no_face.append(str(img_path))
            continue
        largest = max(faces, key=lambda f: float(f.box[2] * f.box[3]))
        crop, kept = pipeline.aligner.align(image, [largest])
        if not len(kept):
            no_face.append(str(img_path))
            continue
        crops.append(crop[0])
        labels.append(label)
        paths.append(str(img_path))
    if not crops:
        raise UserError(f"{root}: no face found in any of its {len(files)} images")
    size = pipeline.aligner.size
    faces_set = FaceSet(
        pixels=np.stack(crops) if crops else np.zeros((0, size, size), np.uint8),
        labels=np.asarray(labels, np.int64),
        usage=np.full(len(labels), "", dtype=str),
        source=str(root),
        paths=paths,
        no_face=len(no_face),
    )
    faces_set.no_face_paths = no_face  # type: ignore[attr-defined]
    faces_set.unreadable_paths = unreadable  # type: ignore[attr-defined]
    return faces_set
