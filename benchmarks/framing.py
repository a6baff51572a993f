"""Framing check: do deployed crops look like the crops the model learnt from?

FER-2013 PublicTest faces are upscaled and padded (as `scripts/derive_template.py` does), put
through the deployment detector, aligner and classifier, and compared with the model's accuracy on
the original 48x48 crops. Acceptance: at most 1.5 points of accuracy lost.

    python benchmarks/framing.py --model edgefer/models/edgefer-fer-v1.onnx \\
        --detector ../shared/models/face_detection_yunet_2026may.onnx

Prints a table (or `--json`): faces found, accuracy on the original crops and on the re-aligned
crops (on the faces found, and with missed faces counted as errors), the drop in points, top-1
agreement, and the mean absolute pixel difference between original and re-aligned crops.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgefer.train.realign import realign

HERE = Path(__file__).resolve().parents[1]


def predict(classifier, crops: np.ndarray, batch: int = 256) -> np.ndarray:
    out = []
    for k in range(0, len(crops), batch):
        probs, _, _ = classifier.classify(crops[k:k + batch])
        out.append(probs.argmax(axis=1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def framing(pixels: np.ndarray, labels: np.ndarray, pipeline) -> dict:
    """The framing figures for crops `pixels` with edgefer `labels`."""
    crops, found = realign(pixels, pipeline.detector, pipeline.aligner)
    orig = predict(pipeline.classifier, pixels)
    new = predict(pipeline.classifier, crops)
    n, f = len(labels), found
    acc_orig = float((orig == labels).mean())
    acc_orig_found = float((orig[f] == labels[f]).mean()) if f.any() else float("nan")
    acc_new_found = float((new[f] == labels[f]).mean()) if f.any() else float("nan")
    acc_new_all = float(((new == labels) & f).mean())
    return {
        "faces": n,
        "found": int(f.sum()),
        "found_fraction": round(float(f.mean()), 4),
        "accuracy_original": round(acc_orig, 4),
        "accuracy_original_on_found": round(acc_orig_found, 4),
        "accuracy_realigned_on_found": round(acc_new_found, 4),
        "drop_points_on_found": round(100 * (acc_orig_found - acc_new_found), 2),
        "accuracy_realigned_missed_as_wrong": round(acc_new_all, 4),
        "drop_points_missed_as_wrong": round(100 * (acc_orig - acc_new_all), 2),
        "top1_agreement_on_found": round(float((orig[f] == new[f]).mean()), 4) if f.any() else None,
        "mean_abs_pixel_diff_on_found": round(float(np.abs(pixels[f].astype(np.int16) - crops[f]).mean()), 2)
        if f.any() and pixels.shape[1:] == crops.shape[1:] else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Accuracy on re-aligned FER-2013 PublicTest faces vs the original crops.")
    ap.add_argument("--model", type=Path, default=None, help="Classifier (default: the embedded model).")
    ap.add_argument("--detector", type=Path, default=HERE.parent / "shared/models/face_detection_yunet_2026may.onnx")
    ap.add_argument("--data", type=Path, default=HERE.parent / "shared/data/fer2013/fer2013_trainval.npz")
    ap.add_argument("--split", default="PublicTest")
    ap.add_argument("--limit", type=int, default=0, help="First N faces only (0: all).")
    ap.add_argument("--template", type=Path, default=None,
                    help="Template JSON to use instead of the model's (experiments, e.g. train/alignment_template.json).")
    ap.add_argument("--input-width", type=int, default=320)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    from edgefer.data import load_faces
    from edgefer.edge.pipeline import build_pipeline
    from edgefer.errors import UserError

    try:
        faces = load_faces(a.data).split(a.split)
        template = json.loads(a.template.read_text())["points"] if a.template else None
        pipeline = build_pipeline(model=a.model, detector=a.detector, threads=a.threads,
                                  input_width=a.input_width, template=template)
    except (UserError, OSError, KeyError, ValueError) as exc:
        print(f"framing: error: {exc}", file=sys.stderr)
        return 1
    pixels, labels = faces.pixels, faces.labels
    if a.limit:
        pixels, labels = pixels[: a.limit], labels[: a.limit]
    r = framing(pixels, labels, pipeline)
    r.update({"model": str(a.model or "embedded default"), "model_version": pipeline.classifier.info.version,
              "template": pipeline.aligner.template.astype(float).round(3).tolist(),
              "template_source": str(a.template or "model metadata"), "split": a.split,
              "detector": a.detector.name, "input_width": a.input_width})
    if a.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k:<36} {v}")
        ok = r["drop_points_on_found"] <= 1.5
        print(f"{'acceptance (drop <= 1.5 points)':<36} {'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
