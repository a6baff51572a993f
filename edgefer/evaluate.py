"""Evaluation of any runnable model artifact on labelled faces: the figures behind `edgefer eval`,
the model card and the conversion drift report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .contract import CLASS_NAMES, ferplus_at_top, ferplus_clear_majority, ferplus_majority, ferplus_shares
from .data import FaceSet


def json_safe(obj: Any) -> Any:
    """Metrics as strict JSON: NaN and infinities become null, recursively."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    return obj


def predict_faceset(classifier: Any, faces: FaceSet, batch: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row probabilities (N x 7), intensities (N x 7) and a finite mask (N,), in batches."""
    if faces.pixels.shape[1:] != (classifier.size, classifier.size):
        import cv2

        faces = FaceSet(np.stack([cv2.resize(p, (classifier.size, classifier.size), interpolation=cv2.INTER_AREA)
                                  for p in faces.pixels]), faces.labels, faces.usage, faces.votes, faces.source)
    probs, inten, finite = [], [], []
    for i in range(0, len(faces), batch):
        p, it, f = classifier.classify(faces.pixels[i:i + batch])
        probs.append(p)
        inten.append(it)
        finite.append(f)
    k = len(CLASS_NAMES)
    if not probs:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.float32), np.zeros(0, bool)
    return np.concatenate(probs), np.concatenate(inten), np.concatenate(finite)


def compute_metrics(labels: np.ndarray, probs: np.ndarray, intensity: np.ndarray, finite: np.ndarray | None = None,
                    votes: np.ndarray | None = None, no_face: int = 0) -> dict[str, Any]:
    """Accuracy (no-face images and non-finite outputs count as errors), per-class recall and precision,
    confusion (rows: true class, columns: predicted), and with FER+ votes the intensity RMSE / MAE
    against vote shares and `ferplus_accuracy` (intensity argmax vs the FER+ majority label, ties to
    the first FER+ column); `ferplus_accuracy_ties` on the same rows counts either class of a tie, and
    `ferplus_accuracy_clear` scores the faces with a clear majority only, as the FER+ paper does."""
    k = len(CLASS_NAMES)
    finite = np.ones(len(labels), bool) if finite is None else finite
    labelled = labels >= 0
    pred = np.where(finite, probs.argmax(axis=1) if len(probs) else np.zeros(0, int), -1)
    y, p = labels[labelled], pred[labelled]
    confusion = np.zeros((k, k), dtype=np.int64)
    ok = p >= 0
    np.add.at(confusion, (y[ok], p[ok]), 1)
    correct = int((y == p).sum())
    n = int(labelled.sum())
    support = np.bincount(y, minlength=k)
    predicted = confusion.sum(axis=0)
    out: dict[str, Any] = {
        "n": n,
        "no_face": int(no_face),
        "non_finite": int((~finite).sum()),
        "accuracy": correct / (n + no_face) if n + no_face else float("nan"),
        "accuracy_on_faces": correct / n if n else float("nan"),
        "per_class_recall": {c: (float(confusion[i, i] / support[i]) if support[i] else None)
                             for i, c in enumerate(CLASS_NAMES)},
        "per_class_precision": {c: (float(confusion[i, i] / predicted[i]) if predicted[i] else None)
                                for i, c in enumerate(CLASS_NAMES)},
        "support": {c: int(s) for c, s in zip(CLASS_NAMES, support)},
        "confusion": confusion.tolist(),
        "class_names": list(CLASS_NAMES),
    }
    if votes is not None and len(votes):
        shares = ferplus_shares(votes)[finite]
        err = intensity[finite] - shares
        out["intensity_rmse"] = float(np.sqrt((err**2).mean()))
        out["intensity_mae"] = float(np.abs(err).mean())
        maj = ferplus_majority(votes)
        sel = (maj >= 0) & finite
        out["ferplus_n"] = int(sel.sum())
        out["ferplus_accuracy"] = float((intensity[sel].argmax(axis=1) == maj[sel]).mean()) if sel.any() else None
        # the emotion users are shown (the classification head) against the FER+ majority
        out["ferplus_accuracy_cls"] = float((pred[sel] == maj[sel]).mean()) if sel.any() else None
        # the same rows, a tie at the top of the votes counting either class
        top = ferplus_at_top(votes, intensity.argmax(axis=1))
        out["ferplus_accuracy_ties"] = float(top[sel].mean()) if sel.any() else None
        # the published FER+ test protocol: faces with a clear majority only
        clear = ferplus_clear_majority(votes)
        csel = (clear >= 0) & finite
        out["ferplus_clear_n"] = int(csel.sum())
        out["ferplus_accuracy_clear"] = (float((intensity[csel].argmax(axis=1) == clear[csel]).mean())
                                         if csel.any() else None)
    return out


def evaluate(classifier: Any, faces: FaceSet) -> dict[str, Any]:
    """All metrics of `classifier` on `faces` (see `compute_metrics`)."""
    probs, inten, finite = predict_faceset(classifier, faces)
    return compute_metrics(faces.labels, probs, inten, finite, faces.votes, faces.no_face)


def format_report(m: dict[str, Any], title: str = "") -> str:
    """Human-readable report: headline figures, per-class table, confusion matrix."""
    lines = [title] if title else []
    lines.append(f"faces: {m['n']}" + (f"   images without a face: {m['no_face']}" if m.get("no_face") else ""))
    lines.append(f"accuracy: {100 * m['accuracy']:.2f}%"
                 + (f"   (on found faces: {100 * m['accuracy_on_faces']:.2f}%)" if m.get("no_face") else ""))
    if "intensity_rmse" in m:
        lines.append(f"intensity vs FER+ vote shares: RMSE {m['intensity_rmse']:.4f}   MAE {m['intensity_mae']:.4f}")
        if m.get("ferplus_accuracy") is not None:
            lines.append(f"FER+ accuracy (intensity argmax vs FER+ majority, {m['ferplus_n']} rows): "
                         f"{100 * m['ferplus_accuracy']:.2f}%")
            if m.get("ferplus_accuracy_ties") is not None:
                lines.append(f"  the same, a tie at the top of the votes counting either class: "
                             f"{100 * m['ferplus_accuracy_ties']:.2f}%")
            if m.get("ferplus_accuracy_clear") is not None:
                lines.append(f"  FER+ test protocol of Barsoum et al. 2016 (clear majorities only, "
                             f"{m['ferplus_clear_n']} rows): {100 * m['ferplus_accuracy_clear']:.2f}%")
            if m.get("ferplus_accuracy_cls") is not None:
                lines.append(f"emotion (classification head) vs FER+ majority: {100 * m['ferplus_accuracy_cls']:.2f}%")
    lines.append("")
    lines.append(f"{'class':<10}{'support':>9}{'recall':>9}{'precision':>11}")
    for c in CLASS_NAMES:
        r, p = m["per_class_recall"][c], m["per_class_precision"][c]
        lines.append(f"{c:<10}{m['support'][c]:>9}{'-' if r is None else f'{100 * r:.1f}%':>9}"
                     f"{'-' if p is None else f'{100 * p:.1f}%':>11}")
    lines.append("")
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(" " * 10 + "".join(f"{c[:7]:>8}" for c in CLASS_NAMES))
    for c, row in zip(CLASS_NAMES, m["confusion"]):
        lines.append(f"{c:<10}" + "".join(f"{v:>8}" for v in row))
    return "\n".join(lines)


def plot_confusion(m: dict[str, Any], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix as a PNG (needs matplotlib), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(m["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    for i in range(len(CLASS_NAMES)):
        for j in range(len(CLASS_NAMES)):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {100 * m['accuracy']:.1f}% (n={m['n']}), % of row")
    fig.tight_layout()
    from .paths import atomic_path

    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
