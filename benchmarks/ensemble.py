"""What averaging buys: each model alone, with its mirror image, and all of them averaged, on the rows
held out of training (as `benchmarks/candidates.py`; never PublicTest unless `--split` says so).

Averaging the outputs of several networks, or of a face and its mirror, is the cheapest way to a
stronger predictor, and a stronger teacher to distil. This prints top-1, the three FER+ readings
(`edgefer.evaluate.compute_metrics`) and RMSE for each model with and without the mirror, and for the
average of all of them.

    python benchmarks/ensemble.py v1.3.0=edgefer/models/edgefer-fer-v1.onnx H=runs/i24-h.onnx \\
        --data ../shared/data/fer2013/fer2013_trainval.npz
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from candidates import held_out_rows, named_models, pct, rows_arguments, run, write_json  # beside this file

from edgefer.data import FaceSet
from edgefer.edge.classifier import Classifier
from edgefer.evaluate import compute_metrics, predict_faceset


def main(argv: list[str] | None = None) -> int:
    ap = rows_arguments(__doc__)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    named = named_models(a.models)
    rows, rows_name = held_out_rows(a.data, a.holdout, a.seed, a.split)
    mirror = FaceSet(np.ascontiguousarray(rows.pixels[:, :, ::-1]), rows.labels, rows.usage, rows.votes, rows.source)
    outputs = {}  # name -> [(probs, intensity) of the faces, of their mirrors]
    for name, path in named:
        clf = Classifier.open(Path(path))
        outputs[name] = [predict_faceset(clf, rows)[:2], predict_faceset(clf, mirror)[:2]]

    def figures(names: list[str], views: int) -> dict:
        outs = [outputs[n][v] for n in names for v in range(views)]
        return compute_metrics(rows.labels, np.mean([o[0] for o in outs], axis=0),
                               np.mean([o[1] for o in outs], axis=0), None, rows.votes)

    results = {}
    for name in outputs:
        results[name] = figures([name], 1)
        results[f"{name} + mirror"] = figures([name], 2)
    if len(outputs) > 1:
        results["all, averaged"] = figures(list(outputs), 1)
        results["all + mirrors, averaged"] = figures(list(outputs), 2)
    print(f"rows: {rows_name}, {len(rows)} faces")
    print("| predictor | top-1 | FER+ acc. | FER+, ties either way | FER+, clear majorities | RMSE |")
    print("|---|---|---|---|---|---|")
    for name, m in results.items():
        print(f"| {name} | {pct(m['accuracy'])} | {pct(m['ferplus_accuracy'])} | {pct(m['ferplus_accuracy_ties'])} | "
              f"{pct(m['ferplus_accuracy_clear'])} | {m['intensity_rmse']:.4f} |")
    write_json(a.json, results)
    return 0


if __name__ == "__main__":
    run(main, "ensemble")
