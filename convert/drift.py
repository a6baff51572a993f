"""Drift of a converted artifact against the FP32 model, on held-out data, end to end.

Classifier: the same faces through both models (`edgefer.evaluate.predict_faceset`, the per-row
API behind `edgefer eval`): top-1 agreement, accuracy change, per-class recall change, intensity
RMSE (against FER+ vote shares) change, and the intensity RMSE between the two models.
Detector: the same photos through both YuNet models: images with a face found, faces found, and
the IoU of each FP32 face's best match in the converted model's output.
Reports are JSON plus Markdown with a PNG plot beside them.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.contract import CLASS_NAMES
from edgefer.evaluate import json_safe

log = logging.getLogger(__name__)

#: Acceptance thresholds (issue 4); `--max-drop` overrides the accuracy one for the exit status.
THRESHOLDS = {"accuracy_drop_points": 0.5, "top1_agreement": 0.97, "intensity_rmse_increase": 0.005,
              "detector_found_drop_points": 1.0}


def predictions(classifier: Any, faces: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row probabilities, intensities and finite mask (delegates to `edgefer.evaluate`)."""
    from edgefer.evaluate import predict_faceset

    return predict_faceset(classifier, faces)


def compare_predictions(labels: np.ndarray, votes: np.ndarray | None, ref: tuple, cand: tuple) -> dict[str, Any]:
    """Drift figures from two models' per-row outputs on the same faces (pure function)."""
    from edgefer.evaluate import compute_metrics

    m_ref = compute_metrics(labels, *ref, votes=votes)
    m_cand = compute_metrics(labels, *cand, votes=votes)
    p_ref, i_ref, f_ref = ref
    p_cand, i_cand, f_cand = cand
    both = f_ref & f_cand
    agree = float((p_ref[both].argmax(1) == p_cand[both].argmax(1)).mean()) if both.any() else float("nan")
    out: dict[str, Any] = {
        "n": int(len(labels)),
        "top1_agreement": agree,
        "accuracy_reference": m_ref["accuracy"],
        "accuracy_converted": m_cand["accuracy"],
        "accuracy_drop_points": 100.0 * (m_ref["accuracy"] - m_cand["accuracy"]),
        "per_class_recall_change_points": {
            c: (None if m_ref["per_class_recall"][c] is None else
                100.0 * (m_cand["per_class_recall"][c] - m_ref["per_class_recall"][c])) for c in CLASS_NAMES},
        "per_class_recall_reference": m_ref["per_class_recall"],
        "per_class_recall_converted": m_cand["per_class_recall"],
        "probability_max_abs_diff": float(np.abs(p_ref[both] - p_cand[both]).max()) if both.any() else float("nan"),
        "intensity_rmse_between_models": float(np.sqrt(((i_ref[both] - i_cand[both]) ** 2).mean())) if both.any() else float("nan"),
        "non_finite_converted": int((~f_cand).sum()),
    }
    if "intensity_rmse" in m_ref:
        out["intensity_rmse_reference"] = m_ref["intensity_rmse"]
        out["intensity_rmse_converted"] = m_cand["intensity_rmse"]
        out["intensity_rmse_increase"] = m_cand["intensity_rmse"] - m_ref["intensity_rmse"]
    return out


def classifier_drift(reference: Path, converted: Path, faces: Any, threads: int = 0) -> dict[str, Any]:
    """Run both artifacts on `faces` (a FaceSet) and compare them."""
    from edgefer.edge.classifier import Classifier

    results = []
    for path in (reference, converted):
        onnx_opts = {"threads": threads} if threads and Path(path).suffix == ".onnx" else {}
        clf = Classifier.open(path, **onnx_opts)
        try:
            results.append(predictions(clf, faces))
        finally:
            clf.close()
    drift = compare_predictions(faces.labels, faces.votes, results[0], results[1])
    drift.update({"kind": "classifier", "reference": str(reference), "converted": str(converted),
                  "data": faces.source})
    return drift


# --------------------------------------------------------------------------------------------- detector


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a (N x 4) and b (M x 4), both x, y, w, h."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0][:, None], b[:, 0][None]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1][:, None], b[:, 1][None]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return (inter / np.maximum(union, 1e-9)).astype(np.float32)


def compare_detections(ref: list[np.ndarray], cand: list[np.ndarray], iou_match: float = 0.5) -> dict[str, Any]:
    """Per-image box lists (x, y, w, h) of two detectors -> drift figures (pure function).

    "faces found" is the share of images with at least one face (the photos hold one face each);
    recall is the share of reference faces matched (IoU >= `iou_match`) by a converted face."""
    n = len(ref)
    found_ref = sum(len(r) > 0 for r in ref)
    found_cand = sum(len(c) > 0 for c in cand)
    ious, matched = [], 0
    for r, c in zip(ref, cand):
        if len(r) == 0:
            continue
        best = box_iou(np.asarray(r), np.asarray(c)).max(axis=1) if len(c) else np.zeros(len(r))
        ious.extend(best.tolist())
        matched += int((best >= iou_match).sum())
    total_ref = sum(len(r) for r in ref)
    return {
        "images": n,
        "faces_found_reference": found_ref / n if n else float("nan"),
        "faces_found_converted": found_cand / n if n else float("nan"),
        "found_drop_points": 100.0 * (found_ref - found_cand) / n if n else float("nan"),
        "faces_reference": total_ref,
        "faces_converted": int(sum(len(c) for c in cand)),
        "recall_vs_reference": matched / total_ref if total_ref else float("nan"),
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "min_iou": float(np.min(ious)) if ious else float("nan"),
    }


def iter_images(folder: Path) -> list[Path]:
    exts = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in exts)


def detector_drift(reference: Path, converted: Path, images: Path, input_width: int = 320,
                   limit: int | None = None) -> dict[str, Any]:
    """Both YuNet models on every image under `images`: faces found and box IoU."""
    import cv2

    from edgefer.edge.backends import open_backend
    from edgefer.edge.detector import YunetDetector

    paths = iter_images(images)[:limit]
    boxes: list[list[np.ndarray]] = [[], []]
    for k, path in enumerate((reference, converted)):
        det = YunetDetector(open_backend(path), input_width=input_width)
        for p in paths:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            faces = det.detect(img) if img is not None else []
            boxes[k].append(np.array([f.box for f in faces], np.float32).reshape(-1, 4))
        det.close()
    drift = compare_detections(boxes[0], boxes[1])
    drift.update({"kind": "detector", "reference": str(reference), "converted": str(converted),
                  "data": str(images), "input_width": input_width})
    return drift


# --------------------------------------------------------------------------------------------- reports


def verdict(drift: dict[str, Any], max_drop: float | None) -> tuple[bool, list[str]]:
    """(passed, reasons): `--max-drop` (accuracy points, or faces-found points for a detector)."""
    if max_drop is None:
        return True, []
    key = "accuracy_drop_points" if drift["kind"] == "classifier" else "found_drop_points"
    value = drift[key]
    if not math.isfinite(value) or value > max_drop:
        return False, [f"{key} {value:.2f} > --max-drop {max_drop}"]
    return True, []


def markdown(drift: dict[str, Any], plot_name: str | None = None) -> str:
    """A readable report of one drift dict."""
    def pct(v):
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.2f}%"

    lines = [f"# Drift report: {Path(drift['converted']).name} vs {Path(drift['reference']).name}", "",
             f"Data: `{drift.get('data', '')}`", ""]
    if drift["kind"] == "classifier":
        lines += [
            "| figure | FP32 | converted | change | threshold |", "|---|---|---|---|---|",
            f"| accuracy | {pct(drift['accuracy_reference'])} | {pct(drift['accuracy_converted'])} | "
            f"{-drift['accuracy_drop_points']:+.2f} pts | drop <= {THRESHOLDS['accuracy_drop_points']} pts |",
            f"| top-1 agreement | | {pct(drift['top1_agreement'])} | | >= {pct(THRESHOLDS['top1_agreement'])} |",
        ]
        if "intensity_rmse_increase" in drift:
            lines.append(f"| intensity RMSE vs FER+ | {drift['intensity_rmse_reference']:.4f} | "
                         f"{drift['intensity_rmse_converted']:.4f} | {drift['intensity_rmse_increase']:+.4f} | "
                         f"increase <= {THRESHOLDS['intensity_rmse_increase']} |")
        lines += ["", f"Faces: {drift['n']}. Intensity RMSE between the two models: "
                  f"{drift['intensity_rmse_between_models']:.4f}; largest probability difference: "
                  f"{drift['probability_max_abs_diff']:.4f}.", "",
                  "| class | recall FP32 | recall converted | change (pts) |", "|---|---|---|---|"]
        for c in CLASS_NAMES:
            ch = drift["per_class_recall_change_points"][c]
            lines.append(f"| {c} | {pct(drift['per_class_recall_reference'][c])} | "
                         f"{pct(drift['per_class_recall_converted'][c])} | {'-' if ch is None else f'{ch:+.2f}'} |")
    else:
        lines += [
            "| figure | FP32 | converted |", "|---|---|---|",
            f"| images with a face | {pct(drift['faces_found_reference'])} | {pct(drift['faces_found_converted'])} |",
            f"| faces | {drift['faces_reference']} | {drift['faces_converted']} |",
            "", f"Images: {drift['images']}; drop in faces found: {drift['found_drop_points']:.2f} pts "
            f"(threshold {THRESHOLDS['detector_found_drop_points']}); recall vs FP32 (IoU >= 0.5): "
            f"{pct(drift['recall_vs_reference'])}; box IoU mean {drift['mean_iou']:.3f}, min {drift['min_iou']:.3f}.",
        ]
    if drift.get("verdict"):
        lines += ["", f"Verdict: **{drift['verdict']}**" + (f" ({'; '.join(drift['reasons'])})" if drift.get("reasons") else "")]
    if plot_name:
        lines += ["", f"![drift]({plot_name})"]
    return "\n".join(lines) + "\n"


def plot(drift: dict[str, Any], path: Path) -> bool:
    """Per-class recall (classifier) or IoU summary (detector) as a PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed; drift report without a plot")
        return False
    fig, ax = plt.subplots(figsize=(7, 3.6))
    if drift["kind"] == "classifier":
        x = np.arange(len(CLASS_NAMES))
        ref = [100 * (drift["per_class_recall_reference"][c] or 0) for c in CLASS_NAMES]
        cand = [100 * (drift["per_class_recall_converted"][c] or 0) for c in CLASS_NAMES]
        ax.bar(x - 0.2, ref, 0.4, label="FP32")
        ax.bar(x + 0.2, cand, 0.4, label="converted")
        ax.set_xticks(x, CLASS_NAMES, rotation=30)
        ax.set_ylabel("recall (%)")
        ax.set_title(f"agreement {100 * drift['top1_agreement']:.1f}%, accuracy {-drift['accuracy_drop_points']:+.2f} pts")
    else:
        vals = [100 * drift["faces_found_reference"], 100 * drift["faces_found_converted"],
                100 * drift["recall_vs_reference"], 100 * drift["mean_iou"]]
        ax.bar(["found FP32", "found conv.", "recall vs FP32", "mean IoU"], vals)
        ax.set_ylabel("%")
    ax.legend() if drift["kind"] == "classifier" else None
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def write_reports(drift: dict[str, Any], stem: Path) -> list[Path]:
    """`<stem>.drift.json`, `<stem>.drift.md` and `<stem>.drift.png`, each written atomically."""
    written = []
    png = stem.with_name(stem.name + ".drift.png")
    has_plot = plot(drift, png)
    if has_plot:
        written.append(png)
    for suffix, text in ((".drift.json", json.dumps(json_safe(drift), indent=2, sort_keys=True)),
                         (".drift.md", markdown(drift, png.name if has_plot else None))):
        target = stem.with_name(stem.name + suffix)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)
        written.append(target)
    return written
