"""INT8: explicit Q/DQ quantisation with ONNX Runtime's static quantiser, by scheme.

The scheme (`schemes.py`: ``cpu`` or ``tensorrt``) fixes the activation type, the weight range and
the default calibration; weights are per-channel, biases stay float. ``cpu`` runs exactly on every
CPU ONNX Runtime supports; ``tensorrt`` is the symmetric Q/DQ TensorRT compiles.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")


def calibrate_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}
    if name not in table:
        from edgefer.errors import UserError

        raise UserError(f"unknown calibration method {name!r} (choose from: {', '.join(METHODS)})")
    return table[name]


def head_nodes(model: Any, output: str) -> list[str]:
    """Names of the nodes that compute `output` and nothing else: walk back from the output while
    each tensor has a single consumer (e.g. the intensity head's Gemm and Sigmoid). These are the
    nodes `--keep-float auto` keeps in float when the intensity head drifts."""
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    graph_outputs = {o.name for o in model.graph.output}
    names: list[str] = []
    tensor = output
    while tensor in producers:
        node = producers[tensor]
        names.append(node.name)
        data_inputs = [i for i in node.input if i in producers]
        if len(data_inputs) != 1:
            break
        tensor = data_inputs[0]
        if consumers.get(tensor, 0) != 1 or tensor in graph_outputs:
            break
    return names


def quantize_int8(model_path: Path, out_path: Path, reader: Any, scheme: str = "cpu", method: str | None = None,
                  keep_float: list[str] | None = None, per_channel: bool = True,
                  preprocess: bool = True) -> dict[str, Any]:
    """Write a Q/DQ INT8 model of `model_path` to `out_path` by `scheme`; returns what was done
    (for `extra`). `method` overrides the scheme's calibration method.

    `preprocess` runs ORT's `quant_pre_process` (shape inference and graph clean-up) first, as the
    ORT documentation recommends. `keep_float` names nodes left in float (no Q/DQ around them).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .schemes import scheme as get_scheme

    sch = get_scheme(scheme)
    method = method or sch.method
    keep_float = list(keep_float or [])
    model_path, out_path = Path(model_path).absolute(), Path(out_path).absolute()  # we chdir below
    extra_options = {
        "ActivationSymmetric": sch.activations == "int8",
        "WeightSymmetric": True,
        "CalibMovingAverage": False,
        # TensorRT dequantises int8 (not int32): biases stay float, it folds them itself.
        "QuantizeBias": False,
    }
    if method == "percentile":
        extra_options["CalibPercentile"] = sch.percentile
    with tempfile.TemporaryDirectory(prefix="edgefer-q-") as tmp:
        src = Path(model_path)
        if preprocess:
            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            src = pre
        # The calibrator writes its augmented model into the working directory on some versions.
        # ORT's histogram calibrators print progress to stdout; keep stdout for our --json output
        # and stderr for one-line messages: their chatter goes to the debug log (-v).
        chatter = io.StringIO()
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            with contextlib.redirect_stdout(chatter):
                quantize_static(
                    str(src), str(out_path), reader,
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8 if sch.activations == "uint8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=per_channel,
                    reduce_range=sch.reduce_range,  # weights in [-64, 64]
                    calibrate_method=calibrate_method(method),
                    nodes_to_exclude=keep_float,
                    extra_options=extra_options,
                )
        finally:
            os.chdir(cwd)
            if chatter.getvalue().strip():
                log.debug("ONNX Runtime calibration: %s", " | ".join(chatter.getvalue().split("\n")))
    desc = sch.describe(method)
    done = {"format": "QDQ", "scheme": sch.name, "activations": desc["activations"],
            "weights": desc["weights"] + (" per-channel" if per_channel else " per-tensor"), "calibration_method": method,
            "keep_float": keep_float, "pre_process": preprocess}
    log.info("quantised %s -> %s (%s)", model_path, out_path, done)
    return done
