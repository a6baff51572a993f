"""Backends by name, as a plain registry: "onnxruntime" and "tensorrt"."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edgefer.errors import ConfigError

from .base import Backend, TensorSpec

#: registry key -> "module:class"; modules are imported only when used (tensorrt is optional).
BACKENDS: dict[str, str] = {
    "onnxruntime": "edgefer.edge.backends.onnxruntime:OrtBackend",
    "tensorrt": "edgefer.edge.backends.tensorrt:TrtBackend",
}


def backend_for_path(path: str | Path) -> str:
    """The backend a model file needs: `.onnx` -> onnxruntime, `.engine`/`.plan` -> tensorrt."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix in (".engine", ".plan", ".trt"):
        return "tensorrt"
    raise ConfigError(f"{path}: unknown model type {suffix!r} (expected .onnx or .engine)")


def open_backend(path: str | Path, name: str = "auto", **options: Any) -> Backend:
    """Open `path` with the named backend (or the one its file type needs)."""
    key = backend_for_path(path) if name == "auto" else name
    if key not in BACKENDS:
        raise ConfigError(f"unknown backend {key!r} (choose from: {', '.join(BACKENDS)})")
    module, cls = BACKENDS[key].split(":")
    return getattr(importlib.import_module(module), cls)(path, **options)


__all__ = ["BACKENDS", "Backend", "TensorSpec", "backend_for_path", "open_backend"]
