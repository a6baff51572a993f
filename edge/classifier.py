"""The emotion classifier: any backend running a model that carries the edgefer contract."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from edgefer.contract import preprocess
from edgefer.errors import ConfigError
from edgefer.modelinfo import ModelInfo, load_onnx, read_onnx_info

from .backends import Backend, backend_for_path, open_backend

DEFAULT_MODEL_NAME = "edgefer-fer-v1.onnx"


def default_model_path() -> Path:
    """The model that ships inside the package."""
    path = Path(str(resources.files("edgefer") / "models" / DEFAULT_MODEL_NAME))
    if not path.exists():
        raise ConfigError(f"the embedded default model is missing ({path}); reinstall edgefer or pass --model")
    return path


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Classifier:
    """Face crops in, (probabilities, intensities) out, batched in one backend call."""

    def __init__(self, backend: Backend, info: ModelInfo) -> None:
        self.backend = backend
        self.info = info
        self.input_name = backend.inputs[0].name
        self.non_finite = 0  # faces whose outputs were NaN/inf (counted, never reported)

    @classmethod
    def open(cls, path: str | Path | None = None, backend: str = "auto", **options) -> "Classifier":
        path = Path(path) if path else default_model_path()
        kind = backend_for_path(path) if backend == "auto" else backend
        if kind == "onnxruntime":
            model = load_onnx(path)
            info = read_onnx_info(model, str(path))
            be = open_backend(path, kind, model=model, **options)
        else:
            be = open_backend(path, kind, **options)
            info = be.info  # engines read their contract from the sidecar
        names = {o.name for o in be.outputs}
        if not {"logits", "intensity"} <= names:
            raise ConfigError(f"{path}: model outputs {sorted(names)} lack 'logits' and 'intensity'")
        return cls(be, info)

    @property
    def size(self) -> int:
        return self.info.input.size

    def infer_input(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run already-preprocessed input (N x 1 x S x S float32)."""
        out = self.backend.infer({self.input_name: x})
        logits = np.asarray(out["logits"], dtype=np.float32)
        intensity = np.asarray(out["intensity"], dtype=np.float32)
        return softmax(logits), intensity

    def classify(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gray uint8 crops (N x S x S) -> probabilities (N x 7), intensities (N x 7), finite mask (N,)."""
        if len(crops) == 0:
            empty = np.zeros((0, len(self.info.class_names)), np.float32)
            return empty, empty, np.zeros(0, bool)
        probs, intensity = self.infer_input(preprocess(crops, self.info.input))
        finite = np.isfinite(probs).all(axis=1) & np.isfinite(intensity).all(axis=1)
        self.non_finite += int((~finite).sum())
        return probs, intensity, finite

    def close(self) -> None:
        self.backend.close()
