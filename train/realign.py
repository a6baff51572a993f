"""Training crops as the deployment pipeline frames them.

FER-2013 crops are not aligned: each is framed as its web photo happened to be cropped. Deployed
crops are aligned by the detector's landmarks onto the template. `realign` puts training crops
through exactly that path (upscaled and padded so the detector sees a whole face, then the
deployment detector and aligner), so the recipe can show the network deployment framing too
(`TrainConfig.realigned_frac`), and `benchmarks/framing.py` can measure the difference.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

UPSCALE = 4  # 48 px -> 192 px: YuNet finds few faces below ~60 px
PAD = 32  # replicated border so the face does not touch the image edge


def upscale_face(gray: np.ndarray, upscale: int = UPSCALE, pad: int = PAD) -> np.ndarray:
    """A gray crop -> BGR image of (side * upscale + 2 * pad) pixels a side, edges replicated."""
    import cv2

    big = cv2.resize(gray, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)


def central_face(faces, image_size: int):  # type: ignore[no-untyped-def]
    """The detected face whose box centre is nearest the image centre (None if no face)."""
    if not faces:
        return None
    c = image_size / 2.0
    return min(faces, key=lambda f: float(np.hypot(f.box[0] + f.box[2] / 2 - c, f.box[1] + f.box[3] / 2 - c)))


def realign(pixels: np.ndarray, detector, aligner, upscale: int = UPSCALE,  # type: ignore[no-untyped-def]
            pad: int = PAD, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Re-aligned crops (N x S x S uint8; zeros where no face was found) and the found mask."""
    from tqdm import tqdm

    side = pixels.shape[1] * upscale + 2 * pad
    size = aligner.size
    crops = np.zeros((len(pixels), size, size), np.uint8)
    found = np.zeros(len(pixels), bool)
    for i, gray in enumerate(tqdm(pixels, desc="realign", disable=not progress, mininterval=5, leave=False)):
        image = upscale_face(gray, upscale, pad)
        face = central_face(detector.detect(image), side)
        if face is None:
            continue
        crop, kept = aligner.align(image, [face])
        if len(kept):
            crops[i] = crop[0]
            found[i] = True
    return crops, found


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _realign_chunk(args: tuple[np.ndarray, str, list[list[float]], int]) -> tuple[np.ndarray, np.ndarray]:
    """One worker's share of `realigned_cached`: its own detector on one ONNX Runtime thread."""
    from edgefer.edge.align import Aligner
    from edgefer.edge.detector import YunetDetector

    pixels, detector_path, template, size = args
    return realign(pixels, YunetDetector.open(Path(detector_path), threads=1), Aligner(template, size))


def realigned_cached(pixels: np.ndarray, detector_path: Path, template: Sequence[Sequence[float]], size: int,
                     cache_dir: Path, progress: bool = True, workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`realign` with the deployment detector at its default settings, cached in `cache_dir` under a
    key of the pixels, the detector file and the template (so a resumed run does not redo it).
    `workers` processes share the faces (0: one per CPU core this process may use); each face is framed
    on its own, so sharing changes no crop beyond one grey level (ONNX Runtime on one thread per worker
    against its default)."""
    from edgefer.edge.align import Aligner
    from edgefer.edge.detector import YunetDetector

    h = hashlib.sha256()
    h.update(np.ascontiguousarray(pixels).tobytes())
    h.update(Path(detector_path).read_bytes())
    h.update(np.asarray(template, np.float64).round(4).tobytes())
    h.update(str((size, UPSCALE, PAD)).encode())
    path = Path(cache_dir) / f"realigned-{h.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["crops"], z["found"]
    workers = min(workers or usable_cores(), max(1, len(pixels) // 1000))
    if workers > 1:
        import multiprocessing

        tpl = [list(map(float, p)) for p in template]
        chunks = [(c, str(detector_path), tpl, size) for c in np.array_split(pixels, workers)]
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_realign_chunk, chunks)
        crops, found = np.concatenate([c for c, _ in parts]), np.concatenate([f for _, f in parts])
    else:
        detector = YunetDetector.open(detector_path)
        crops, found = realign(pixels, detector, Aligner(template, size), progress=progress)
    from edgefer.paths import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, crops=crops, found=found)
    return crops, found
