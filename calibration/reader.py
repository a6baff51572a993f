"""Feeding a calibration set to ONNX Runtime's static quantisation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from onnxruntime.quantization import CalibrationDataReader


class ArrayDataReader(CalibrationDataReader):
    """Yields `{input_name: batch}` over a prepared N x ... float32 array, at most `batch` rows at
    a time, all batches the same size (the largest divisor of N up to `batch`: ONNX Runtime's
    Entropy and Percentile calibrators stack per-batch outputs and fail on a ragged last batch).

    `rewind()` restarts it."""

    def __init__(self, input_name: str, data: np.ndarray, batch: int = 64) -> None:
        self.input_name = input_name
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        n = len(self.data)
        self.batch = next((b for b in range(min(max(1, int(batch)), max(n, 1)), 0, -1) if n % b == 0), 1)
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.data), self.batch):
            yield {self.input_name: self.data[i:i + self.batch]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None

    def __len__(self) -> int:
        return len(self.data)
