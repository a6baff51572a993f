"""Measure what this CPU computes: is INT8 exact here, and is it faster here?

`exactness()` runs two tiny Q/DQ convolutions through ONNX Runtime, built so that their integer
sums overflow 16 bits wherever a kernel keeps 16-bit intermediate sums (the u8 x s8 ``vpmaddubsw``
path of x86 without VNNI), and compares each output with exact integer arithmetic:

- ``full_range``: int8 symmetric activations and weights at the ends of their range (127 x 127),
  the worst case of the ``tensorrt`` scheme;
- ``cpu``: uint8 activations at 255 and weights at 64, the worst case of the ``cpu`` scheme.

`speed()` times the embedded FP32 model against its shipped INT8 twin on one thread. Both are
quick (well under a second together) and run on the real runtime, so `edgefer doctor` and
``precision = "auto"`` report what this machine does, not what its flags suggest.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

CIN, COUT, SIDE = 32, 16, 6  # a 3 x 3 convolution like the classifier's


def probe_model(activations: str, weight_q: int) -> tuple[bytes, np.ndarray, float]:
    """A Q/DQ 3 x 3 convolution (ONNX bytes), its input, and the exact value of every output
    away from the border: every activation at the top of its range, every weight `weight_q`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    a_q = 255 if activations == "uint8" else 127
    a_np = np.uint8 if activations == "uint8" else np.int8
    s_a, s_w = 1.0 / a_q, 1.0 / weight_q  # x = 1.0 and w = 1.0 in real units
    exact = float(9 * CIN)  # 9 * CIN products of 1.0 each, for an interior output
    s_y = exact / 100.0  # the exact result is q = 100 of the output's int8 range
    inits = [
        numpy_helper.from_array(np.array(s_a, np.float32), "s_a"),
        numpy_helper.from_array(np.array(0, a_np), "z_a"),
        numpy_helper.from_array(np.full((COUT, CIN, 3, 3), weight_q, np.int8), "w_q"),
        numpy_helper.from_array(np.full(COUT, s_w, np.float32), "s_w"),
        numpy_helper.from_array(np.zeros(COUT, np.int8), "z_w"),
        numpy_helper.from_array(np.zeros(COUT, np.float32), "bias"),
        numpy_helper.from_array(np.array(s_y, np.float32), "s_y"),
        numpy_helper.from_array(np.array(0, a_np), "z_y"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_a", "z_a"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "s_a", "z_a"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["w"], axis=0),
        helper.make_node("Conv", ["x_dq", "w", "bias"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["y", "s_y", "z_y"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "s_y", "z_y"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CIN, SIDE, SIDE])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, COUT, SIDE, SIDE])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(), np.ones((1, CIN, SIDE, SIDE), np.float32), exact


def _session(model: bytes | str | Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                providers=["CPUExecutionProvider"])


def conv_error(activations: str, weight_q: int) -> float:
    """Relative error of the probe's interior outputs on this CPU (0.0: exact)."""
    model, x, exact = probe_model(activations, weight_q)
    y = _session(model).run(["out"], {"x": x})[0]
    interior = y[:, :, 1:-1, 1:-1]
    return float(np.abs(interior - exact).max() / exact)


@dataclass
class Exactness:
    full_range: bool  # int8 x int8 at full range (the tensorrt scheme) computed exactly
    cpu_scheme: bool  # uint8 x 7-bit int8 (the cpu scheme) computed exactly
    full_range_error: float
    cpu_scheme_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def exactness(tolerance: float = 0.02) -> Exactness:
    """Both probes on this CPU. A saturating kernel is off by far more than `tolerance` (the
    output's own rounding is 1%)."""
    full = conv_error("int8", 127)
    cpu = conv_error("uint8", 64)
    return Exactness(full <= tolerance, cpu <= tolerance, round(full, 4), round(cpu, 4))


@dataclass
class Speed:
    fp32_ms: float  # per face, batch 1, one thread
    int8_ms: float

    @property
    def ratio(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": round(self.ratio, 2)}


def speed(fp32: Path, int8: Path, seconds: float = 0.25) -> Speed:
    """Median ms per face of each model at batch 1 on one thread, over interleaved windows."""
    sessions = [_session(fp32), _session(int8)]
    name = sessions[0].get_inputs()[0].name
    size = sessions[0].get_inputs()[0].shape[2]
    x = np.random.default_rng(0).standard_normal((1, 1, size, size)).astype(np.float32)
    times: list[list[float]] = [[], []]
    for s in sessions:
        s.run(None, {name: x})  # warm-up
    for _ in range(5):
        for k, s in enumerate(sessions):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 10:
                s.run(None, {name: x})
                n += 1
            times[k].append((time.perf_counter() - t0) * 1000.0 / n)
    return Speed(round(float(np.median(times[0])), 4), round(float(np.median(times[1])), 4))
