"""The static TensorRT Q/DQ check on a good graph and on deliberately broken ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgefer.calibration.reader import ArrayDataReader
from edgefer.convert.qdq_check import check_qdq
from edgefer.convert.quantize import quantize_int8


@pytest.fixture(scope="module")
def tiny_qdq(tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    """Conv -> Relu -> Flatten -> Gemm, quantised by our own INT8 step for TensorRT."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    g = numpy_helper.from_array(rng.standard_normal((3, 4 * 6 * 6)).astype(np.float32), "g")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "g"], ["y"], name="gemm", transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w, b, g])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    tmp = tmp_path_factory.mktemp("qdq")
    src, dst = tmp / "tiny.onnx", tmp / "tiny.int8.onnx"
    onnx.save(model, str(src))
    quantize_int8(src, dst, ArrayDataReader("x", rng.standard_normal((32, 1, 8, 8)).astype(np.float32)),
                  scheme="tensorrt")
    return onnx.load(str(dst))


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def set_init(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    init(model, name).CopyFrom(numpy_helper.from_array(value, name))


def first(model: onnx.ModelProto, op: str, weight: bool | None = None) -> onnx.NodeProto:
    names = {t.name for t in model.graph.initializer}
    return next(n for n in model.graph.node if n.op_type == op and (weight is None or (n.input[0] in names) == weight))


def test_our_quantiser_output_passes(tiny_qdq: onnx.ModelProto) -> None:
    rep = check_qdq(tiny_qdq)
    assert rep.ok, rep.problems
    assert rep.per_channel_weights == 2 and rep.quantize_nodes > 0


def test_float_model_is_not_a_qdq_model(tmp_path: Path) -> None:
    from edgefer.edge.classifier import default_model_path

    rep = check_qdq(onnx.load(str(default_model_path())))
    assert not rep.ok and "not a Q/DQ model" in rep.summary()


def test_old_opset(tiny_qdq: onnx.ModelProto) -> None:
    m = copy(tiny_qdq)
    m.opset_import[0].version = 11
    assert any("opset 11" in p for p in check_qdq(m).problems)


def test_nonzero_and_uint8_zero_points(tiny_qdq: onnx.ModelProto) -> None:
    m = copy(tiny_qdq)
    q = first(m, "QuantizeLinear")
    set_init(m, q.input[2], np.array(3, np.int8))
    assert any("zero point not 0" in p for p in check_qdq(m).problems)
    m = copy(tiny_qdq)
    q = first(m, "QuantizeLinear")
    set_init(m, q.input[2], np.array(0, np.uint8))
    assert any("TensorRT needs INT8" in p for p in check_qdq(m).problems)
    m = copy(tiny_qdq)
    q = first(m, "QuantizeLinear")
    del q.input[2]  # no zero point: the output would be uint8
    assert any("uint8" in p for p in check_qdq(m).problems)


def test_bad_scales(tiny_qdq: onnx.ModelProto) -> None:
    m = copy(tiny_qdq)
    q = first(m, "QuantizeLinear")
    set_init(m, q.input[1], np.array(-0.1, np.float32))
    assert any("positive" in p for p in check_qdq(m).problems)


def test_per_channel_on_activation_and_wrong_axis(tiny_qdq: onnx.ModelProto) -> None:
    m = copy(tiny_qdq)
    q = first(m, "QuantizeLinear")
    set_init(m, q.input[1], np.full(4, 0.1, np.float32))
    assert any("per-channel scale on an activation" in p for p in check_qdq(m).problems)
    m = copy(tiny_qdq)
    conv_w = first(m, "Conv").input[1]
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == conv_w)
    w = numpy_helper.to_array(init(m, dq.input[0]))
    set_init(m, dq.input[0], np.ascontiguousarray(np.repeat(w, 4, axis=1)))  # shape (4, 4, 3, 3): axis 1 fits too
    set_init(m, dq.input[1], np.full(4, 0.1, np.float32))
    for a in dq.attribute:
        if a.name == "axis":
            a.i = 1
    assert any("Conv needs axis 0" in p for p in check_qdq(m).problems)


def test_int32_bias_and_unsupported_op(tiny_qdq: onnx.ModelProto) -> None:
    m = copy(tiny_qdq)
    m.graph.initializer.append(numpy_helper.from_array(np.zeros(4, np.int32), "b_q"))
    m.graph.initializer.append(numpy_helper.from_array(np.full(4, 0.01, np.float32), "b_s"))
    m.graph.node.append(helper.make_node("DequantizeLinear", ["b_q", "b_s"], ["b_dq"], name="bias_dq", axis=0))
    assert any("int32" in p for p in check_qdq(m).problems)
    m = copy(tiny_qdq)
    m.graph.node.append(helper.make_node("NonMaxSuppression", ["y"], ["z"], name="nms"))
    assert any("NonMaxSuppression" in p for p in check_qdq(m).problems)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_every_calibration_method_gives_a_valid_qdq_graph(method: str, tmp_path: Path) -> None:
    from edgefer.edge.classifier import default_model_path

    rng = np.random.default_rng(0)
    out = tmp_path / f"m.{method}.onnx"
    done = quantize_int8(default_model_path(), out,
                         ArrayDataReader("input", rng.standard_normal((70, 1, 48, 48)).astype(np.float32)), method=method,
                         scheme="tensorrt")
    assert done["calibration_method"] == method
    assert check_qdq(onnx.load(str(out))).ok


@pytest.mark.parametrize("scheme", ["cpu", "tensorrt"], ids=["cpu_scheme", "trt_scheme"])
def test_schemes_keep_their_weight_range(scheme: str, tmp_path: Path) -> None:
    """cpu: every int8 weight within [-64, 64] (exact on every CPU kernel) and uint8 activations;
    tensorrt: the full int8 range, int8 activations, zero points 0."""
    from edgefer.convert.schemes import SCHEMES, weight_range_problems
    from edgefer.edge.classifier import default_model_path

    rng = np.random.default_rng(1)
    out = tmp_path / f"m.{scheme}.onnx"
    quantize_int8(default_model_path(), out, ArrayDataReader("input", rng.standard_normal((64, 1, 48, 48)).astype(np.float32)),
                  scheme=scheme)
    model = onnx.load(str(out))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) == 4]
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) == SCHEMES[scheme].weight_max
    assert not weight_range_problems(model, SCHEMES[scheme].weight_max)
    assert weight_range_problems(model, SCHEMES[scheme].weight_max - 1)  # the check can fail
    q_types = {t.data_type for t in model.graph.initializer if t.name.endswith("zero_point") and not t.dims}
    assert q_types == ({TensorProto.UINT8} if scheme == "cpu" else {TensorProto.INT8})
