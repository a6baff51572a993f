"""Static check that a Q/DQ ONNX graph is what TensorRT's explicit quantisation accepts.

Run on any machine, so mistakes show on a laptop rather than on the Jetson. Rules (TensorRT
developer guide, "Explicit quantization", and the ONNX parser's operator support):
- default-domain opset >= 13 (per-axis QuantizeLinear/DequantizeLinear);
- Q/DQ data type int8 (a QuantizeLinear without a zero point would produce uint8);
- zero points all 0 (TensorRT quantisation is symmetric);
- scales constant, float, positive and finite;
- activations quantised per tensor (scalar scale); per-channel only on constant weights, along the
  output-channel axis the consumer expects (Conv: 0, ConvTranspose: 1, Gemm: 0 with transB=1
  else 1, MatMul: last);
- biases not quantised to int32 (TensorRT dequantises int8 only and fuses float biases itself);
- every other op in the set the ONNX parser supports (a conservative list of what our models use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_OPSET = 13
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
#: Ops TensorRT's ONNX parser supports (onnx-tensorrt `docs/operators.md`), limited to the kind of
#: graphs edgefer converts (CNN classifier, YuNet). An op outside this list is reported.
SUPPORTED_OPS = frozenset({
    "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "Conv",
    "ConvTranspose", "DepthToSpace", "Div", "Exp", "Flatten", "Gather", "Gemm", "GlobalAveragePool",
    "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "Log", "MatMul", "Max", "MaxPool",
    "Min", "Mul", "Pad", "PRelu", "ReduceMean", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice",
    "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze", "Upsample",
} | QDQ_OPS)


@dataclass
class QdqReport:
    problems: list[str] = field(default_factory=list)
    quantize_nodes: int = 0
    dequantize_nodes: int = 0
    per_channel_weights: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and self.quantize_nodes > 0

    def summary(self) -> str:
        if self.quantize_nodes == 0 and not self.problems:
            return "no QuantizeLinear nodes: not a Q/DQ model"
        if self.ok:
            return (f"Q/DQ graph fits TensorRT: {self.quantize_nodes} Q, {self.dequantize_nodes} DQ, "
                    f"{self.per_channel_weights} per-channel weights")
        more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return "Q/DQ graph TensorRT would reject: " + "; ".join(self.problems[:3]) + more


def _expected_axis(consumer: Any, input_index: int, rank: int) -> int | None:
    attrs = {a.name: a for a in consumer.attribute}
    if input_index != 1:
        return None
    if consumer.op_type == "Conv":
        return 0
    if consumer.op_type == "ConvTranspose":
        return 1
    if consumer.op_type == "Gemm":
        return 0 if (attrs["transB"].i if "transB" in attrs else 0) else 1
    if consumer.op_type == "MatMul":
        return rank - 1
    return None


def check_qdq(model: Any) -> QdqReport:
    """All rule violations of a ModelProto (see module docstring); `report.ok` when none."""
    from onnx import TensorProto, numpy_helper

    rep = QdqReport()
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        rep.problems.append(f"opset {opset} < {MIN_OPSET}")
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for n in model.graph.node:
        for k, i in enumerate(n.input):
            consumers.setdefault(i, []).append((n, k))

    def const(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    def elem_type(name: str) -> int | None:
        if name in inits:
            return inits[name].data_type
        if name in consts:
            return consts[name].attribute[0].t.data_type
        return None

    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            rep.problems.append(f"{n.name or n.op_type}: custom domain {n.domain!r} op {n.op_type}")
            continue
        if n.op_type not in SUPPORTED_OPS:
            rep.problems.append(f"{n.name or n.op_type}: op {n.op_type} not in TensorRT's supported set")
            continue
        if n.op_type not in QDQ_OPS:
            continue
        label = n.name or n.op_type
        if n.op_type == "QuantizeLinear":
            rep.quantize_nodes += 1
        else:
            rep.dequantize_nodes += 1
        scale = const(n.input[1]) if len(n.input) > 1 else None
        if scale is None:
            rep.problems.append(f"{label}: scale is not a constant")
            continue
        if scale.dtype not in (np.float32, np.float16) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            rep.problems.append(f"{label}: scale must be positive finite float")
        zp_name = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if zp_name is None:
            if n.op_type == "QuantizeLinear":
                rep.problems.append(f"{label}: no zero point, so output is uint8 (TensorRT needs int8)")
        else:
            zp = const(zp_name)
            if zp is None:
                rep.problems.append(f"{label}: zero point is not a constant")
            else:
                if elem_type(zp_name) != TensorProto.INT8:
                    rep.problems.append(f"{label}: data type {TensorProto.DataType.Name(elem_type(zp_name))}, TensorRT needs INT8")
                if np.any(zp != 0):
                    rep.problems.append(f"{label}: zero point not 0 (TensorRT quantisation is symmetric)")
        weight = const(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if n.op_type == "DequantizeLinear" and weight is not None:
            dt = elem_type(n.input[0])
            if dt == TensorProto.INT32:
                rep.problems.append(f"{label}: int32 (bias) dequantisation; TensorRT dequantises int8 only "
                                    "(quantise with QuantizeBias=False)")
            elif dt != TensorProto.INT8:
                rep.problems.append(f"{label}: constant of type {TensorProto.DataType.Name(dt)}, TensorRT needs INT8")
        if scale.size > 1:
            attrs = {a.name: a.i for a in n.attribute}
            axis = attrs.get("axis", 1)
            if weight is None:
                rep.problems.append(f"{label}: per-channel scale on an activation (TensorRT: per tensor only)")
                continue
            axis = axis + weight.ndim if axis < 0 else axis
            if not 0 <= axis < weight.ndim or weight.shape[axis] != scale.size:
                rep.problems.append(f"{label}: {scale.size} scales do not match weight shape {weight.shape} on axis {axis}")
                continue
            rep.per_channel_weights += 1
            for consumer, idx in consumers.get(n.output[0], []):
                want = _expected_axis(consumer, idx, weight.ndim)
                if want is not None and want != axis:
                    rep.problems.append(f"{label}: per-channel axis {axis}, {consumer.op_type} needs axis {want}")
    return rep
