"""The backend protocol: one verb (`infer`) that ONNX Runtime and TensorRT both implement.

Modelled on Polygraphy's runner: open / close, the input and output specs, and
`infer(feed) -> outputs`. The detector and the classifier both run through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str | None, ...]  # str or None for a dynamic dimension
    dtype: np.dtype


@runtime_checkable
class Backend(Protocol):
    """Runs one model. `infer` takes and returns float32 numpy arrays by tensor name."""

    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...
