"""Derive the aligner's canonical 5-point template from the training data itself.

FER-2013 Training faces (48x48) are upscaled, padded so the detector sees a whole face, run through
the deployment detector (YuNet), and the median landmark positions are mapped back to 48x48 crop
pixels (OpenCV pixel-centre convention). The median is then refined so that the aligner's
least-squares fit maps the median training face onto itself (see `refine_template`). Deployed crops aligned onto this template are framed like
the crops the model learnt from; `benchmarks/framing.py` measures how well.

    python scripts/derive_template.py --data ../shared/data/fer2013/fer2013_trainval.npz \\
        --detector ../shared/models/face_detection_yunet_2026may.onnx --out train/alignment_template.json

The export (`train/export.py`) copies the result into the model's metadata (`ModelInfo.template`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgefer.train.realign import PAD, UPSCALE, central_face, upscale_face


def to_crop_coords(points: np.ndarray, upscale: int = UPSCALE, pad: int = PAD) -> np.ndarray:
    """Pixel coordinates in the upscaled, padded image -> coordinates in the original crop."""
    return (np.asarray(points, np.float64) - pad + 0.5) / upscale - 0.5


def landmarks_of(pixels: np.ndarray, detector, upscale: int = UPSCALE, pad: int = PAD) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (N x 5 x 2, crop coordinates; NaN where no face) and a found mask, per crop."""
    side = pixels.shape[1] * upscale + 2 * pad
    out = np.full((len(pixels), 5, 2), np.nan, np.float64)
    found = np.zeros(len(pixels), bool)
    for i, gray in enumerate(pixels):
        face = central_face(detector.detect(upscale_face(gray, upscale, pad)), side)
        if face is not None:
            out[i] = to_crop_coords(face.landmarks, upscale, pad)
            found[i] = True
    return out, found


def refine_template(landmarks: np.ndarray, template: np.ndarray, size: int, iters: int = 6) -> tuple[np.ndarray, list]:
    """Make the template consistent with the aligner: least-squares similarity fits of noisy
    landmarks shrink (the fitted scale is biased low), so aligning training faces onto the plain
    median template would frame them about 5% smaller than they were. Each round moves the template
    by the inverse of the median fitted transform, until the median training face needs no
    transform at all (scale 1, no rotation, no shift). Returns the template and the rounds' medians."""
    from edgefer.edge.align import Aligner

    tpl = np.asarray(template, np.float64)
    c = np.array([(size - 1) / 2.0] * 2)  # crop centre
    history = []
    for _ in range(iters):
        al = Aligner(tpl, size)
        fits = [m for m in (al.transform(lm) for lm in landmarks) if m is not None]
        scale = float(np.median([np.hypot(m[0, 0], m[1, 0]) for m in fits]))
        angle = float(np.median([np.arctan2(m[1, 0], m[0, 0]) for m in fits]))
        shift = np.median([m @ np.r_[c, 1.0] - c for m in fits], axis=0)
        history.append([round(scale, 4), round(float(np.degrees(angle)), 3), round(float(shift[0]), 3),
                        round(float(shift[1]), 3)])
        # median fit: x -> scale * R(angle) (x - c) + c + shift; move the template by its inverse
        r = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        tpl = (tpl - c - shift) @ r / scale + c  # R^-1 = R^T; (R^T v^T)^T = v R
    return tpl, history


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description="Derive the 5-point alignment template from FER-2013 Training faces.")
    ap.add_argument("--data", type=Path, default=here.parent / "shared/data/fer2013/fer2013_trainval.npz")
    ap.add_argument("--detector", type=Path, default=here.parent / "shared/models/face_detection_yunet_2026may.onnx")
    ap.add_argument("--out", type=Path, default=here / "train/alignment_template.json")
    ap.add_argument("--split", default="Training")
    ap.add_argument("--limit", type=int, default=8000, help="Random sample of this many faces (0: all).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--input-width", type=int, default=320, help="Detector input width (the deployment default).")
    a = ap.parse_args(argv)

    from edgefer.contract import ferplus_usable
    from edgefer.data import load_faces
    from edgefer.edge.detector import YunetDetector
    from edgefer.errors import UserError

    try:
        faces = load_faces(a.data).split(a.split)
        if faces.votes is not None:
            faces = faces.select(ferplus_usable(faces.votes))
        idx = np.arange(len(faces))
        if a.limit and a.limit < len(idx):
            idx = np.sort(np.random.default_rng(a.seed).choice(idx, a.limit, replace=False))
        det = YunetDetector.open(a.detector, threads=a.threads, input_width=a.input_width,
                                 score_threshold=0.6, min_face=0)
    except UserError as exc:
        print(f"derive_template: error: {exc}", file=sys.stderr)
        return 1
    size = int(faces.pixels.shape[1])
    lms, found = landmarks_of(faces.pixels[idx], det)
    if found.sum() < 100:
        print(f"derive_template: error: faces found in only {found.sum()} of {len(idx)} crops", file=sys.stderr)
        return 1
    good = lms[found]
    median = np.median(good, axis=0)
    mad = np.median(np.abs(good - median), axis=0)
    points, history = refine_template(good, median, size)
    result = {
        "size": size,
        "points": [[round(float(x), 3), round(float(y), 3)] for x, y in points],
        "n": int(found.sum()),
        "source": (f"median YuNet landmarks of {int(found.sum())} of {len(idx)} FER-2013 {a.split} faces "
                   f"(FER+ usable rows, seed {a.seed}), upscaled x{UPSCALE} with {PAD} px replicated border, "
                   f"detector {a.detector.name} at input width {a.input_width}; then moved by the inverse "
                   f"median similarity fit until the median training face needs no transform"),
        "median_landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in median],
        "refinement": {"columns": ["scale", "rotation_deg", "centre_dx", "centre_dy"], "rounds": history},
        "found_fraction": round(float(found.mean()), 4),
        "mad": [[round(float(x), 3), round(float(y), 3)] for x, y in mad],
        "order": ["right eye", "left eye", "nose tip", "right mouth corner", "left mouth corner"],
    }
    write_json_atomic(a.out, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
