"""INT8 vs FP32 ONNX throughput of the classifier on one core, batch 1 and batch 8.

Run pinned to one core so the figure is per core (ONNX Runtime intra-op 1 thread):

    taskset -c 0 python benchmarks/int8_speed.py --int8 model.int8.onnx [--fp32 MODEL] [--seconds 3]

Without --int8 it quantises the FP32 model first (calibration from 700 Training faces of the
shared npz). Prints a table (faces/s and ms per call, median of repeats) and the INT8/FP32 ratio;
exits 1 if a ratio is below --min-ratio (1.5: the acceptance figure on a CPU with AVX-512 VNNI).
INT8 pays off only where the CPU has int8 dot-product instructions (x86 VNNI, Armv8.2 dot product
as on a Raspberry Pi 5); a Raspberry Pi 4 (Cortex-A72) lacks them and INT8 is no faster there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEFER_SHARED", ROOT.parent / "shared"))


def session(path: Path, opt_level: str = "all"):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                     "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                     "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[opt_level]
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def window(sess, x: np.ndarray, seconds: float) -> float:
    """Faces/s over one timed window."""
    name = sess.get_inputs()[0].name
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(None, {name: x})
        n += 1
    return n * len(x) / (time.perf_counter() - t0)


def throughputs(sessions: dict, x: np.ndarray, seconds: float, repeats: int = 7) -> dict[str, float]:
    """Median faces/s per session over `repeats` windows, the sessions' windows interleaved so a
    busy machine slows both alike (the ratio is what matters)."""
    for sess in sessions.values():
        window(sess, x, 0.1)  # warm-up
    rates: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(repeats):
        for k, sess in sessions.items():
            rates[k].append(window(sess, x, seconds / repeats))
    return {k: statistics.median(v) for k, v in rates.items()}


def make_int8(fp32: Path, out: Path) -> None:
    from edgefer.calibration.build import build_calibration_set
    from edgefer.calibration.reader import ArrayDataReader
    from edgefer.convert.quantize import quantize_int8
    from edgefer.modelinfo import read_onnx_info

    info = read_onnx_info(fp32)
    cset = build_calibration_set([SHARED / "data/fer2013/fer2013_trainval.npz"], out.with_suffix(".calib.npz"), info.input)
    quantize_int8(fp32, out, ArrayDataReader(info.input.name, cset.inputs(info.input)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32", type=Path, help="FP32 model (default: the embedded one)")
    ap.add_argument("--int8", type=Path, help="INT8 Q/DQ model (default: quantise --fp32 now)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model and batch")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--opt-level", default="all", choices=["all", "extended", "basic"])
    ap.add_argument("--min-ratio", type=float, default=1.5)
    args = ap.parse_args()

    from edgefer.edge.classifier import default_model_path

    fp32 = args.fp32 or default_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        int8 = args.int8
        if int8 is None:
            int8 = Path(tmp) / "model.int8.onnx"
            make_int8(fp32, int8)
        sessions = {"fp32": session(fp32, args.opt_level), "int8": session(int8, args.opt_level)}
        size = sessions["fp32"].get_inputs()[0].shape[2]
        rng = np.random.default_rng(0)
        affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
        print(f"# cores allowed: {affinity}; ORT intra-op threads 1; graph optimisation {args.opt_level}")
        print(f"{'batch':>5} {'fp32 faces/s':>13} {'int8 faces/s':>13} {'fp32 ms/call':>13} {'int8 ms/call':>13} {'ratio':>6}")
        ok = True
        for b in (int(v) for v in args.batches.split(",")):
            x = rng.standard_normal((b, 1, size, size)).astype(np.float32)
            rates = throughputs(sessions, x, args.seconds)
            r32, r8 = rates["fp32"], rates["int8"]
            ratio = r8 / r32
            ok &= ratio >= args.min_ratio
            print(f"{b:>5} {r32:>13.0f} {r8:>13.0f} {1000 * b / r32:>13.3f} {1000 * b / r8:>13.3f} {ratio:>6.2f}")
    print(f"# INT8 >= {args.min_ratio}x FP32 at every batch: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
