"""Candidate models side by side, on the figures a decision rule chooses by (issue 24).

For each ONNX model: on the rows of `Training` that `edgefer train --holdout SHARE --seed SEED` kept
out of training, top-1 vs the FER-2013 labels, FER+ accuracy (intensity argmax vs the FER+ majority;
also with either class of a tie counted right, and on clear majorities only as the FER+ paper scores),
the classification head vs the FER+ majority and intensity RMSE; and on a folder of labelled photos
through the full pipeline (YuNet, aligner, classifier; an image without a face is an error), accuracy
and per-class recall. PublicTest is not read unless asked for (`--split PublicTest`): a decision rule
looks at it once, at the end, with `edgefer eval`.

    python benchmarks/candidates.py 1.3.0=edgefer/models/edgefer-fer-v1.onnx A=runs/i24-a.onnx \\
        --data ../shared/data/fer2013/fer2013_trainval.npz --holdout 0.1 --seed 20261122 \\
        --photos ../shared/data/photos --detector ../shared/models/face_detection_yunet_2026may.onnx

The photos are detected and aligned once (the crops do not depend on the classifier, only on the
detector and aligner, which all candidates share) and every classifier then sees the same crops,
which is what `edgefer eval PHOTOS --model M` computes for each of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgefer.contract import CLASS_NAMES
from edgefer.data import load_faces
from edgefer.edge.classifier import Classifier
from edgefer.errors import UserError
from edgefer.evaluate import evaluate


def held_out_rows(npz: Path, share: float, seed: int, split: str | None):
    faces = load_faces(npz)
    if split:
        return faces.split(split), split
    from edgefer.train.recipe import holdout_mask

    tr = faces.split("Training")
    return tr.select(holdout_mask(tr.labels, share, seed)), f"held out of Training ({share}, seed {seed})"


def photo_crops(photos: Path, model: Path, detector: Path | None):
    from edgefer.edge.photos import load_photo_folder
    from edgefer.edge.pipeline import build_pipeline

    return load_photo_folder(photos, build_pipeline(model=model, detector=detector))


def named_models(args: list[str]) -> list[tuple[str, str]]:
    """NAME=PATH (or a path, named by its file) -> [(name, path)]; a missing file is a UserError."""
    named = [tuple(m.split("=", 1)) if "=" in m else (Path(m).stem, m) for m in args]
    for _, p in named:
        if not Path(p).is_file():
            raise UserError(f"{p}: no such model file")
    return named  # type: ignore[return-value]


def write_json(path: Path | None, obj: object) -> None:
    if path is not None:
        from edgefer.evaluate import json_safe
        from edgefer.paths import write_text_atomic

        write_text_atomic(path, json.dumps(json_safe(obj), indent=1))


def run(main, prog: str) -> None:  # type: ignore[no-untyped-def]
    """`main()`'s exit status; a UserError as one line and exit 2."""
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def rows_arguments(doc: str) -> argparse.ArgumentParser:
    """The models and the rows they are measured on, as every script of this kind takes them."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=PATH.onnx (or a path, named by its file)")
    ap.add_argument("--data", type=Path, required=True, help="the FER-2013 npz with FER+ votes")
    ap.add_argument("--holdout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--split", help="evaluate this split instead of the held-out rows (e.g. PublicTest)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = rows_arguments(__doc__)
    ap.add_argument("--photos", type=Path, help="a folder of labelled photos (one subfolder per class)")
    ap.add_argument("--detector", type=Path)
    ap.add_argument("--json", type=Path, help="also write every figure here")
    a = ap.parse_args(argv)

    named = named_models(a.models)
    rows, rows_name = held_out_rows(a.data, a.holdout, a.seed, a.split)
    crops = photo_crops(a.photos, Path(named[0][1]), a.detector) if a.photos else None
    results = {}
    for name, path in named:
        clf = Classifier.open(Path(path))
        results[name] = {"rows": evaluate(clf, rows), "version": clf.info.version}
        if crops is not None:
            results[name]["photos"] = evaluate(clf, crops)

    print(f"rows: {rows_name}, {len(rows)} faces" + (f"; photos: {a.photos}, {len(crops) + crops.no_face} images"
                                                    if crops is not None else ""))
    print("| model | top-1 | FER+ acc. | FER+, ties either way | FER+, clear majorities (paper) | class head vs FER+ "
          "| RMSE | photos | photos angry | photos fear |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        m, ph = r["rows"], r.get("photos")
        print(f"| {name} | {pct(m['accuracy'])} | {pct(m.get('ferplus_accuracy'))} | {pct(m.get('ferplus_accuracy_ties'))} | "
              f"{pct(m.get('ferplus_accuracy_clear'))} | "
              f"{pct(m.get('ferplus_accuracy_cls'))} | {m.get('intensity_rmse', float('nan')):.4f} | "
              + (f"{pct(ph['accuracy'])} | {pct(ph['per_class_recall']['angry'])} | {pct(ph['per_class_recall']['fear'])} |"
                 if ph else "- | - | - |"))
    for part in ("rows", "photos"):
        if part == "photos" and crops is None:
            continue
        print(f"\nper-class recall, {part} (%)")
        print("| model | " + " | ".join(CLASS_NAMES) + " |")
        print("|---|" + "---|" * len(CLASS_NAMES))
        for name, r in results.items():
            rec = r[part]["per_class_recall"]
            print(f"| {name} | " + " | ".join(pct(rec[c]) for c in CLASS_NAMES) + " |")
    write_json(a.json, results)
    return 0


if __name__ == "__main__":
    run(main, "candidates")
