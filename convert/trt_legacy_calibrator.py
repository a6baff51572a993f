"""LEGACY FALLBACK, TensorRT < 10.1 only: implicit INT8 calibration with IInt8EntropyCalibrator2.

Deprecated in TensorRT 10.1 and removed in 11; edgefer's INT8 path is the Q/DQ ONNX. This exists
for older JetPacks whose TensorRT mis-handles a Q/DQ graph, and is used only when asked for
(`--legacy-calibrator`). The calibration cache is written beside the engine and reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def make_entropy_calibrator(trt: Any, data: np.ndarray, cache: Path | None, batch: int = 32) -> Any:
    """An `IInt8EntropyCalibrator2` over preprocessed input `data` (N x C x H x W float32)."""
    import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
    import pycuda.driver as cuda

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.data = np.ascontiguousarray(data, dtype=np.float32)
            self.batch = batch
            self.index = 0
            self.device = cuda.mem_alloc(self.data[:batch].nbytes)

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index + self.batch > len(self.data):
                return None
            cuda.memcpy_htod(self.device, self.data[self.index:self.index + self.batch])
            self.index += self.batch
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, blob: bytes) -> None:
            if cache is not None:
                cache.write_bytes(bytes(blob))

    return EntropyCalibrator()
