"""How to build an engine on a given TensorRT version: pure functions, tested without TensorRT.

- TensorRT >= 10: strongly typed networks (`NetworkDefinitionCreationFlag.STRONGLY_TYPED`): the
  precision comes from the ONNX itself (the FP16 ONNX, or the Q/DQ INT8 ONNX); no precision
  builder flags. TensorRT 11 removed the FP16/INT8 flags and implicit calibration altogether.
- TensorRT 10.x only: `--trt-fp16-flag` builds the FP32 ONNX with `BuilderFlag.FP16` (weakly
  typed), the older route some users know; deprecated, so not the default.
- TensorRT 8.6 / 9.x (older JetPacks): Q/DQ ONNX with `BuilderFlag.INT8` (explicit quantisation
  in a weakly typed network); FP16 ONNX or FP32 + `BuilderFlag.FP16`; `EXPLICIT_BATCH`.
- LEGACY FALLBACK, TensorRT < 10.1 only, on request: FP32 ONNX with `BuilderFlag.INT8` and an
  `IInt8EntropyCalibrator2` fed from the calibration set, with its calibration cache. Implicit
  calibration is deprecated since 10.1 and removed in 11; never chosen automatically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgefer.errors import UserError

TARGETS = ("trt-fp16", "trt-int8")
MIN_SUPPORTED = (8, 6)


def parse_version(text: str) -> tuple[int, int, int]:
    """'10.3.0.26' -> (10, 3, 0); refuses what is not a version."""
    m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not m:
        raise ValueError(f"not a TensorRT version: {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True)
class BuildPlan:
    """What to hand TensorRT: which ONNX (by precision), network flags, builder flags, calibrator."""

    onnx_precision: str  # "fp16", "int8" (Q/DQ) or "fp32"
    network_flags: tuple[str, ...] = ()  # NetworkDefinitionCreationFlag member names
    builder_flags: tuple[str, ...] = ()  # BuilderFlag member names
    legacy_calibrator: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def build_plan(version: str | tuple[int, ...], target: str, fp16_flag: bool = False,
               legacy_calibrator: bool = False) -> BuildPlan:
    """The build recipe for `target` on TensorRT `version` (see the module docstring)."""
    v = parse_version(version) if isinstance(version, str) else tuple(version)
    if target not in TARGETS:
        raise UserError(f"unknown TensorRT target {target!r} (choose from: {', '.join(TARGETS)})")
    if v[:2] < MIN_SUPPORTED:
        raise UserError(f"TensorRT {'.'.join(map(str, v))} is too old; edgefer needs TensorRT >= 8.6")
    if legacy_calibrator:
        if target != "trt-int8":
            raise UserError("the legacy calibrator applies to trt-int8 only")
        if v[:2] >= (10, 1):
            raise UserError(f"the legacy INT8 calibrator is only a fallback for TensorRT < 10.1 (this is "
                            f"{'.'.join(map(str, v))}); use the Q/DQ path (the default)")
        flags = ("EXPLICIT_BATCH",) if v[0] < 10 else ()
        return BuildPlan("fp32", flags, ("INT8", "FP16"), True,
                         ("LEGACY FALLBACK: implicit INT8 calibration (IInt8EntropyCalibrator2), deprecated",))
    if fp16_flag:
        if target != "trt-fp16":
            raise UserError("--trt-fp16-flag applies to trt-fp16 only")
        if v[0] >= 11:
            raise UserError("TensorRT 11 has no FP16 builder flag; drop --trt-fp16-flag (strongly typed FP16 ONNX is used)")
        flags = ("EXPLICIT_BATCH",) if v[0] < 10 else ()
        return BuildPlan("fp32", flags, ("FP16",), False, ("FP32 ONNX with the FP16 builder flag (weakly typed)",))
    precision = "fp16" if target == "trt-fp16" else "int8"
    if v[0] >= 10:
        return BuildPlan(precision, ("STRONGLY_TYPED",), (), False,
                         (f"strongly typed network from the {precision.upper()} ONNX",))
    # 8.6 / 9.x: weakly typed, explicit batch; Q/DQ needs the INT8 flag to be honoured.
    builder = ("FP16",) if precision == "fp16" else ("INT8",)
    return BuildPlan(precision, ("EXPLICIT_BATCH",), builder, False,
                     (f"weakly typed {precision.upper()} ONNX with builder flag {builder[0]} (TensorRT < 10)",))


def memory_pool_api(version: str | tuple[int, ...]) -> str:
    """Workspace limit: `set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)` on every supported
    version (`max_workspace_size` was removed in TensorRT 10)."""
    return "set_memory_pool_limit"


def execute_api(version: str | tuple[int, ...]) -> str:
    """Inference call: `execute_async_v3` with `set_tensor_address` from TensorRT 8.5 on (v2 and
    binding indices were removed in 10)."""
    return "execute_async_v3"


def install_hint() -> str:
    return ("TensorRT is not installed: on a Jetson install JetPack's python3-libnvinfer "
            "(apt install python3-libnvinfer python3-pycuda); elsewhere pip install 'edgefer[tensorrt]'")
