"""The engine of a converted ONNX on the machine that runs it, through the engine cache.

Not a step of `edgefer convert`: this is how a device turns a shipped `model.int8.onnx` (or FP16 ONNX)
into a TensorRT engine on first start, and reuses it after (`engine_cache` decides use, rebuild or
refuse).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .engine_cache import EngineKey, make_sidecar, sha256_file, write_sidecar

log = logging.getLogger(__name__)


def ensure_engine(onnx_path: Path, model_dir: Path, precision: str | None = None,
                  workspace_mb: int = 1024) -> Path:
    """The engine for a converted ONNX (FP16 or Q/DQ INT8) on this machine, from the engine cache in
    `model_dir`: used when its key (ONNX sha256, TensorRT version, compute capability, precision)
    matches, rebuilt when stale or absent, refused when the cached file is not what its sidecar
    says. This is how a device turns a shipped `model.int8.onnx` into an engine on first start."""
    from edgefer.errors import ConfigError
    from edgefer.modelinfo import load_onnx, read_onnx_info

    from .engine_cache import cache_decision, cache_path, check_engine
    from .trt_build import build_engine, runtime_identity
    from .trt_versions import build_plan

    onnx_path, model_dir = Path(onnx_path).absolute(), Path(model_dir).absolute()
    model = load_onnx(onnx_path)
    props = {p.key: p.value for p in model.metadata_props}
    info = read_onnx_info(model, str(onnx_path)) if "edgefer" in props else None
    if precision is None:
        precision = info.precision if info is not None else json.loads(props.get("edgefer.conversion", "{}")).get("precision")
    if precision not in ("fp16", "int8"):
        raise ConfigError(f"{onnx_path}: convert it first (edgefer convert --to onnx-fp16 / onnx-int8); "
                          f"engines are built from FP16 or Q/DQ INT8 ONNX (found precision {precision!r})")
    conversion = info.extra.get("conversion", {}) if info is not None else json.loads(props.get("edgefer.conversion", "{}"))
    if precision == "int8" and (conversion.get("int8") or {}).get("name", "tensorrt") != "tensorrt":
        raise ConfigError(f"{onnx_path}: an INT8 model for CPUs (uint8 activations), which TensorRT does not take; "
                          "convert it with --for tensorrt")
    version, cc = runtime_identity()
    key = EngineKey(sha256_file(onnx_path), version, cc, precision)
    engine = cache_path(model_dir, onnx_path.name, key)
    check = check_engine(engine, key, model_dir)
    decision = cache_decision(check)
    log.info("engine cache %s: %s (%s)", engine.name, decision, "; ".join(check.reasons) or "key matches")
    if decision == "use":
        return engine
    if decision == "refuse":
        raise ConfigError("; ".join(check.reasons))
    plan = build_plan(version, f"trt-{precision}")
    build = build_engine(onnx_path, engine, plan, workspace_mb, model_dir / "timing.cache")
    write_sidecar(engine, make_sidecar(info, key, sha256_file(engine), build))
    return engine
