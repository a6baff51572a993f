"""On a machine with TensorRT (a Jetson, or x86 with an NVIDIA GPU): build both engines, evaluate
each with `edgefer eval`, and print drift and latency against the FP32 ONNX model.

    python scripts/trt_check.py [--model MODEL.onnx] [--data NPZ] [--workdir DIR] [--detector YUNET.onnx]

Steps, each through the public commands so the check covers what users run:
  1. edgefer calibration build   (Training rows of the shared npz)
  2. edgefer convert --to trt-fp16 / trt-int8 --eval NPZ   (drift report beside each engine)
  3. edgefer eval NPZ --split PublicTest --model ENGINE --json   (and the FP32 ONNX for reference)
  4. latency: median ms per call at batch 1 and 8 through the backend protocol
With --detector, the YuNet engines are built too and their drift on --photos is printed.
Exit status 1 when a conversion fails or INT8 drops more than --max-drop points.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEFER_SHARED", ROOT.parent / "shared"))


def edgefer(*args: object) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edgefer", *map(str, args)]
    print("$", " ".join(cmd[2:]), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr.strip(), file=sys.stderr)
    return r


def latency_ms(path: Path, batch: int, seconds: float = 2.0) -> float:
    from edgefer.edge.backends import open_backend

    be = open_backend(path)
    spec = be.inputs[0]
    shape = tuple(batch if d is None or isinstance(d, str) else d for d in spec.shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(20):
        be.infer({spec.name: x})
    times = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        be.infer({spec.name: x})
        times.append(1000 * (time.perf_counter() - t0))
    be.close()
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="FP32 ONNX (default: the embedded model)")
    ap.add_argument("--data", type=Path, default=SHARED / "data/fer2013/fer2013_trainval.npz")
    ap.add_argument("--workdir", type=Path, default=Path("trt-check"))
    ap.add_argument("--max-drop", type=float, default=0.5)
    ap.add_argument("--detector", type=Path, help="YuNet ONNX: also build and check its engines")
    ap.add_argument("--photos", type=Path, default=SHARED / "data/photos")
    args = ap.parse_args()

    from edgefer.edge.classifier import default_model_path

    model = args.model or default_model_path()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    calib = work / "calib.npz"
    if edgefer("calibration", "build", "--from", args.data, "--out", calib, "--model", model, "--force").returncode:
        return 1
    ok = True
    rows = []
    ref = edgefer("eval", args.data, "--split", "PublicTest", "--model", model, "--json")
    ref_acc = json.loads(ref.stdout)["accuracy"] if ref.returncode == 0 else float("nan")
    rows.append(("fp32 onnx", model, ref_acc, None))
    for target in ("trt-fp16", "trt-int8"):
        engine = work / f"model.{target}.engine"
        r = edgefer("convert", "--model", model, "--to", target, "--calib", calib, "--eval", args.data,
                    "--max-drop", args.max_drop, "--timing-cache", work / "timing.cache", "--out", engine, "--force",
                    "--json")
        if r.returncode != 0:
            ok = False
            continue
        drift = json.loads(r.stdout)["drift"]
        ev = edgefer("eval", args.data, "--split", "PublicTest", "--model", engine, "--json")
        acc = json.loads(ev.stdout)["accuracy"] if ev.returncode == 0 else float("nan")
        rows.append((target, engine, acc, drift))
    print()
    print(f"{'artifact':<10} {'accuracy':>9} {'agree':>7} {'d acc':>7} {'d int':>8} {'ms b1':>7} {'ms b8':>7}")
    for name, path, acc, d in rows:
        agree = f"{100 * d['top1_agreement']:.2f}" if d else "-"
        dacc = f"{-d['accuracy_drop_points']:+.2f}" if d else "-"
        dint = f"{d.get('intensity_rmse_increase', float('nan')):+.4f}" if d else "-"
        print(f"{name:<10} {100 * acc:>8.2f}% {agree:>7} {dacc:>7} {dint:>8} "
              f"{latency_ms(path, 1):>7.3f} {latency_ms(path, 8):>7.3f}")
    if args.detector:
        for target in ("trt-fp16", "trt-int8"):
            engine = work / f"yunet.{target}.engine"
            r = edgefer("convert", "--model", args.detector, "--to", target, "--calib", args.photos, "--eval",
                        args.photos, "--max-drop", 1, "--out", engine, "--force", "--json")
            if r.returncode != 0:
                ok = False
                continue
            d = json.loads(r.stdout)["drift"]
            print(f"yunet {target}: faces found {100 * d['faces_found_reference']:.2f}% -> "
                  f"{100 * d['faces_found_converted']:.2f}%, mean IoU {d['mean_iou']:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
