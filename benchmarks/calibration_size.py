"""How many calibration faces are enough: INT8 drift against FP32 for growing calibration sets.

    python benchmarks/calibration_size.py [--model MODEL] [--sizes 2,5,20,50,100,300] [--method minmax]

For each per-class size: build a calibration set from Training rows of the shared npz, quantise,
and measure drift on the PublicTest rows. Prints faces, top-1 agreement, accuracy change and
intensity RMSE change. (The default set is 100 per class: 700 faces.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEFER_SHARED", ROOT.parent / "shared"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--data", type=Path, default=SHARED / "data/fer2013/fer2013_trainval.npz")
    ap.add_argument("--sizes", default="2,5,20,50,100,300")
    ap.add_argument("--method", default="minmax")
    args = ap.parse_args()

    from edgefer.calibration.build import build_calibration_set
    from edgefer.calibration.reader import ArrayDataReader
    from edgefer.convert.drift import classifier_drift
    from edgefer.convert.quantize import quantize_int8
    from edgefer.data import load_faces
    from edgefer.edge.classifier import default_model_path
    from edgefer.modelinfo import read_onnx_info

    model = args.model or default_model_path()
    spec = read_onnx_info(model).input
    held_out = load_faces(args.data).split("PublicTest")
    print(f"{'per class':>9} {'faces':>6} {'agreement':>10} {'acc change':>11} {'int. RMSE change':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        for per_class in (int(v) for v in args.sizes.split(",")):
            calib = Path(tmp) / f"c{per_class}.npz"
            import logging

            logging.disable(logging.WARNING)
            try:
                cset = build_calibration_set([args.data], calib, spec, per_class=per_class)
            except Exception as exc:  # too few faces is refused: report it as a row
                print(f"{per_class:>9} {'-':>6} refused: {exc}")
                continue
            finally:
                logging.disable(logging.NOTSET)
            out = Path(tmp) / f"m{per_class}.onnx"
            quantize_int8(model, out, ArrayDataReader(spec.name, cset.inputs(spec)), method=args.method)
            d = classifier_drift(model, out, held_out)
            print(f"{per_class:>9} {len(cset):>6} {100 * d['top1_agreement']:>9.2f}% {-d['accuracy_drop_points']:>+10.2f} "
                  f"{d.get('intensity_rmse_increase', float('nan')):>+17.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
