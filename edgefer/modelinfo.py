"""Reading and writing the model contract carried by every artifact.

ONNX files keep it as JSON under the `edgefer` key of `metadata_props`; TensorRT engines keep the
same JSON in a sidecar file beside the engine (see `edgefer.convert.engine_cache`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contract import CLASS_NAMES, InputSpec
from .errors import ConfigError

METADATA_KEY = "edgefer"
CONTRACT_VERSION = 1
MAX_MODEL_BYTES = 512 * 1024 * 1024


@dataclass
class ModelInfo:
    """What a model artifact promises: its input, class order, outputs and provenance."""

    input: InputSpec = field(default_factory=InputSpec)
    class_names: tuple[str, ...] = CLASS_NAMES
    outputs: dict[str, str] = field(default_factory=lambda: {
        "logits": "N x 7, softmax gives probabilities",
        "intensity": "N x 7, sigmoid applied, 0..1 per emotion, independent",
    })
    #: Canonical 5-point landmark template (right eye, left eye, nose, right/left mouth corner),
    #: in pixels of the input crop: the aligner maps detected landmarks onto these.
    template: list[list[float]] = field(default_factory=list)
    version: str = ""
    precision: str = "fp32"
    training_data: str = ""
    validation: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # recipe, commit, conversion details

    def to_json(self) -> str:
        return json.dumps({
            "contract": CONTRACT_VERSION,
            "input": self.input.to_dict(),
            "class_names": list(self.class_names),
            "outputs": self.outputs,
            "template": self.template,
            "version": self.version,
            "precision": self.precision,
            "training_data": self.training_data,
            "validation": self.validation,
            "extra": self.extra,
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "model") -> "ModelInfo":
        try:
            d = json.loads(text)
            info = cls(
                input=InputSpec.from_dict(d["input"]),
                class_names=tuple(d["class_names"]),
                outputs=dict(d["outputs"]),
                template=[list(map(float, p)) for p in d.get("template", [])],
                version=str(d.get("version", "")),
                precision=str(d.get("precision", "fp32")),
                training_data=str(d.get("training_data", "")),
                validation=dict(d.get("validation", {})),
                extra=dict(d.get("extra", {})),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{where}: malformed edgefer contract metadata ({exc})") from None
        if info.class_names != CLASS_NAMES:
            raise ConfigError(f"{where}: class names {list(info.class_names)} differ from {list(CLASS_NAMES)}")
        if set(info.outputs) != {"logits", "intensity"}:
            raise ConfigError(f"{where}: outputs must be 'logits' and 'intensity', found {sorted(info.outputs)}")
        if info.template and (len(info.template) != 5 or any(len(p) != 2 for p in info.template)):
            raise ConfigError(f"{where}: alignment template must be 5 points (x, y)")
        return info


def check_model_path(path: str | Path, what: str = "model") -> Path:
    """Resolve a model path and refuse what cannot be a model, with one clear line."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{p}: {what} file not found")
    if not p.is_file():
        raise ConfigError(f"{p}: {what} path is not a file")
    size = p.stat().st_size
    if size == 0:
        raise ConfigError(f"{p}: {what} file is empty")
    if size > MAX_MODEL_BYTES:
        raise ConfigError(f"{p}: {what} file is implausibly large ({size} bytes)")
    return p.resolve()


def load_onnx(path: str | Path, what: str = "model"):  # -> onnx.ModelProto
    """Load an ONNX file, refusing corrupt files and external data that points outside its folder."""
    import onnx
    from google.protobuf.message import DecodeError

    p = check_model_path(path, what)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ConfigError(f"{p}: not a valid ONNX file ({type(exc).__name__})") from None
    if not model.graph.node or not model.graph.output:
        raise ConfigError(f"{p}: not a valid ONNX file (empty graph)")
    base = p.parent
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in tensor.external_data if e.key == "location"), "")
            target = (base / loc).resolve()
            if base not in target.parents:
                raise ConfigError(f"{p}: external data {loc!r} points outside the model's folder; refused")
    return model


def read_onnx_info(model_or_path: Any, where: str | None = None) -> ModelInfo:
    """The contract of an ONNX model (a path or a loaded ModelProto)."""
    model = load_onnx(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
    where = where or (str(model_or_path) if isinstance(model_or_path, (str, Path)) else "model")
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ConfigError(f"{where}: not an edgefer model (no '{METADATA_KEY}' contract metadata)")
    return ModelInfo.from_json(props[METADATA_KEY], where)


def write_onnx_info(model: Any, info: ModelInfo) -> None:
    """Set (or replace) the contract in a ModelProto's metadata_props, in place."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for k, v in keep + [(METADATA_KEY, info.to_json())]:
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
