"""FP16: weights and activations in float16, inputs and outputs kept float32.

Uses ONNX Runtime's own converter (`onnxruntime.transformers.float16`, the same code as
`onnxconverter_common.float16`, shipped with onnxruntime, so no extra dependency). Runs on GPUs
(TensorRT compiles it strongly typed) and on CPUs that execute FP16 (ONNX Runtime inserts casts
on CPUs that do not, so it is not a CPU speed-up).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def to_fp16(model: Any, keep_float: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """A float16 copy of `model` (ModelProto) with float32 I/O; `keep_float` names nodes kept in
    float32. Returns (model, what was done)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    keep_float = list(keep_float or [])
    out = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep_float or None,
                                   disable_shape_infer=False)
    done = {"format": "fp16", "io": "float32", "keep_float": keep_float,
            "converter": "onnxruntime.transformers.float16"}
    log.info("converted to FP16 (%s)", done)
    return out, done
