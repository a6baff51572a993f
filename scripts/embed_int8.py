"""Build the INT8 twin of the embedded model that ships in the package (`precision = "auto"`).

    python scripts/embed_int8.py [--shared ../shared]

Runs the project's own conversion, exactly as a user would (`edgefer calibration build` on the
Training rows, then `edgefer convert --to onnx-int8`: the ``cpu`` scheme, exact on every CPU),
with the drift report on PublicTest and `--max-drop 0.3`, in a temporary folder; copies the
artifact to `edgefer/models/edgefer-fer-v1.int8.onnx` and prints the drift. Rerun it whenever the
embedded FP32 model changes: `tests/convert/test_embedded_int8.py` fails while the INT8 twin's
recorded source sha256 is not the FP32 model's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = ap.parse_args()
    npz = args.shared / "data" / "fer2013" / "fer2013_trainval.npz"
    target = ROOT / "edgefer" / "models" / "edgefer-fer-v1.int8.onnx"
    edgefer = [sys.executable, "-m", "edgefer"]
    with tempfile.TemporaryDirectory() as tmp:
        calib, out = Path(tmp) / "calib.npz", Path(tmp) / "edgefer-fer-v1.int8.onnx"
        subprocess.run([*edgefer, "calibration", "build", "--from", str(npz), "--out", str(calib)], check=True)
        r = subprocess.run([*edgefer, "convert", "--to", "onnx-int8", "--calib", str(calib), "--eval", str(npz),
                            "--max-drop", "0.3", "--out", str(out), "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr.strip(), file=sys.stderr)
            return r.returncode
        drift = json.loads(r.stdout)["drift"]
        shutil.copyfile(out, target)
    print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size} bytes): PublicTest accuracy "
          f"{100 * drift['accuracy_reference']:.2f}% -> {100 * drift['accuracy_converted']:.2f}%, top-1 agreement "
          f"{100 * drift['top1_agreement']:.2f}%, intensity RMSE {drift['intensity_rmse_increase']:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
