"""ONNX Runtime backend: CPU by default, or any execution providers the user names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgefer.errors import ConfigError
from edgefer.modelinfo import load_onnx

from .base import TensorSpec

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
           "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: taskset, cgroups, systemd's CPUAffinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class OrtBackend:
    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 0, providers: list[str] | None = None,
                 model: Any = None) -> None:
        """`threads` is the intra-op thread count (0: one per CPU this process may run on). `model`
        is an already-checked ModelProto for `path`, to avoid parsing the file twice.

        The count is always set explicitly: with its default, ONNX Runtime pins its threads to cores
        (`sched_setaffinity`), which the service's system-call filter (`~@resources`) refuses; the
        device lab's VM showed the refusal in the journal and a SIGABRT when the service stopped."""
        import onnxruntime as ort

        self.path = Path(path)
        model = model if model is not None else load_onnx(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or usable_cpus()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in available]
        if missing:
            raise ConfigError(f"ONNX Runtime provider(s) {', '.join(missing)} not available here "
                              f"(available: {', '.join(available)})")
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ConfigError(f"{path}: ONNX Runtime cannot load this model ({str(exc).splitlines()[0][:200]})") from None
        self.inputs = [TensorSpec(i.name, tuple(i.shape), np.dtype(_DTYPES.get(i.type, np.float32)))
                       for i in self.session.get_inputs()]
        self.outputs = [TensorSpec(o.name, tuple(o.shape), np.dtype(_DTYPES.get(o.type, np.float32)))
                        for o in self.session.get_outputs()]
        self._names = [o.name for o in self.outputs]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._names, feed)
        return dict(zip(self._names, values))

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
