"""Building a TensorRT engine from an ONNX file: the thin part that touches TensorRT.

Steps (each a small function, as Polygraphy composes NetworkFromOnnxPath -> CreateConfig ->
EngineBytesFromNetwork -> SaveEngine): `parse_network`, `create_config`, `build_engine`. What to
ask TensorRT for comes from `trt_versions.build_plan` (pure); the cache key, sidecar and refusal
rules from `engine_cache` (pure). TensorRT and pycuda are imported here only, when used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefer.errors import UserError

from .trt_versions import BuildPlan, install_hint

if TYPE_CHECKING:  # type-checked in CI against tensorrt-stubs (scripts/check_trt_types.sh)
    import tensorrt as trt

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MB = 1024
#: Optimisation profile for the batch dimension of a dynamic-batch classifier: (min, opt, max).
DEFAULT_BATCH_PROFILE = (1, 8, 32)


def import_tensorrt() -> Any:
    """`tensorrt`, or a UserError naming what to install."""
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError(install_hint()) from None
    return trt


def runtime_identity() -> tuple[str, str]:
    """(TensorRT version, compute capability of GPU 0, e.g. "8.7"), for the engine cache key."""
    import_tensorrt()
    import tensorrt as trt

    try:
        import pycuda.driver as cuda
    except ImportError:
        raise UserError("pycuda is not installed: pip install 'edgefer[tensorrt]' (Jetson: apt install python3-pycuda)") from None
    cuda.init()
    major, minor = cuda.Device(0).compute_capability()
    return str(trt.__version__), f"{major}.{minor}"


def profile_shapes(input_shape: tuple, batch: tuple[int, int, int] = DEFAULT_BATCH_PROFILE) -> tuple | None:
    """(min, opt, max) shapes for an input whose only dynamic dimension is the batch; None when
    the shape is fully static. Other dynamic dimensions (e.g. YuNet's H x W) need explicit shapes."""
    dims = list(input_shape)
    if all(isinstance(d, int) and d > 0 for d in dims):
        return None
    if any(not (isinstance(d, int) and d > 0) for d in dims[1:]):
        raise UserError(f"input shape {tuple(input_shape)} has dynamic dimensions besides the batch; "
                        "give a fixed shape (--trt-shape)")
    return tuple(tuple([b] + dims[1:]) for b in batch)


def parse_network(builder: trt.Builder, onnx_path: Path, plan: BuildPlan,
                  logger: trt.ILogger) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    import tensorrt as trt

    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx_path}: TensorRT cannot parse this ONNX ({errors[:300]})")
    log.info("parsed %s into a %s network (%d layers)", onnx_path.name,
             "strongly typed" if "STRONGLY_TYPED" in plan.network_flags else "weakly typed", network.num_layers)
    return network, parser


def create_config(builder: trt.Builder, network: trt.INetworkDefinition, plan: BuildPlan, workspace_mb: int,
                  timing_cache: Path | None, shapes: dict[str, tuple] | None = None,
                  calibrator: Any = None) -> tuple[trt.IBuilderConfig, trt.ITimingCache]:
    import tensorrt as trt

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)
    profile = builder.create_optimization_profile()
    needs_profile = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        given = (shapes or {}).get(tensor.name)
        dims = tensor.shape
        prof = tuple(given) if given else profile_shapes(tuple(dims[k] for k in range(len(dims))))
        if prof is not None:
            profile.set_shape(tensor.name, *prof)
            needs_profile = True
    if needs_profile:
        config.add_optimization_profile(profile)
    if calibrator is not None:
        config.int8_calibrator = calibrator  # LEGACY FALLBACK (TensorRT < 10.1 only)
        if needs_profile:
            config.set_calibration_profile(profile)
    log.info("builder config: workspace %d MB, flags %s, timing cache %s (%d bytes)", workspace_mb,
             ",".join(plan.builder_flags) or "none", timing_cache or "-", len(cache_bytes))
    return config, cache


def build_engine(onnx_path: Path, out: Path, plan: BuildPlan, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                 timing_cache: Path | None = None, shapes: dict[str, tuple] | None = None,
                 calibration: np.ndarray | None = None, calibration_cache: Path | None = None) -> dict[str, Any]:
    """Build and write `out` (atomically) from `onnx_path` following `plan`; update the timing
    cache file. `shapes` maps an input name to its (min, opt, max) profile shapes (default: the
    batch profile for a dynamic-batch input). Returns build details for the sidecar."""
    import_tensorrt()
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = parse_network(builder, onnx_path, plan, logger)
    calibrator = None
    if plan.legacy_calibrator:
        if calibration is None:
            raise UserError("the legacy INT8 calibrator needs --calib")
        from .trt_legacy_calibrator import make_entropy_calibrator

        log.warning("LEGACY FALLBACK: implicit INT8 calibration (IInt8EntropyCalibrator2); deprecated in TensorRT 10.1")
        calibrator = make_entropy_calibrator(trt, calibration, calibration_cache)
    config, cache = create_config(builder, network, plan, workspace_mb, timing_cache, shapes, calibrator)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(memoryview(serialized))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    if timing_cache is not None:
        data = cache.serialize()
        tmp_cache = timing_cache.with_name(f".{timing_cache.name}.tmp")
        with open(tmp_cache, "wb") as fh:
            fh.write(memoryview(data))
        os.replace(tmp_cache, timing_cache)
    log.info("built %s (%d bytes)", out, out.stat().st_size)
    return {"onnx": str(onnx_path), "onnx_precision": plan.onnx_precision, "network_flags": list(plan.network_flags),
            "builder_flags": list(plan.builder_flags), "legacy_calibrator": plan.legacy_calibrator,
            "workspace_mb": workspace_mb, "notes": list(plan.notes)}
