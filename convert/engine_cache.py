"""TensorRT engine cache: keys, sidecars, and the decision to load, rebuild or refuse.

An engine is native code tied to one TensorRT version and one GPU. Every engine `X.engine` has a
sidecar `X.engine.json` holding the model contract (ModelInfo JSON), the cache key (ONNX sha256,
TensorRT version, GPU compute capability, precision) and the engine's own sha256. Before an
engine is deserialised, `check_engine` compares the sidecar with this machine and the file:
- no sidecar, sidecar without contract, or engine sha256 mismatch -> refuse (foreign or tampered);
- engine outside the configured model directory -> refuse;
- key mismatch (another TensorRT, another GPU, another ONNX) -> stale: rebuild from the ONNX when
  the ONNX is at hand (`edgefer convert`), else refuse with what differs.
All pure functions over files and dicts; no TensorRT import here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgefer.errors import ConfigError
from edgefer.modelinfo import ModelInfo

SIDECAR_FORMAT = "edgefer-engine"
SIDECAR_VERSION = 1


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """What an engine depends on. Equal keys: the engine is valid for this machine and model."""

    onnx_sha256: str
    trt_version: str
    compute_capability: str  # e.g. "8.7" (Orin), "7.2" (Xavier), "8.9"
    precision: str  # "fp16" or "int8"

    def digest(self) -> str:
        """Short stable id, usable in file names: the cache file is `<stem>.<digest>.engine`."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def differences(self, other: "EngineKey") -> list[str]:
        return [f"{k} {getattr(other, k)} != {getattr(self, k)}" for k in asdict(self)
                if getattr(self, k) != getattr(other, k)]


def cache_path(model_dir: str | Path, onnx_name: str, key: EngineKey) -> Path:
    """Where the engine for `key` lives in the cache folder."""
    return Path(model_dir) / f"{Path(onnx_name).stem}.{key.precision}.{key.digest()}.engine"


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


def make_sidecar(info: ModelInfo | None, key: EngineKey, engine_sha256: str, build: dict[str, Any]) -> dict[str, Any]:
    """The sidecar dict: contract (None for the detector), key, engine hash and build details."""
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "key": asdict(key),
        "engine_sha256": engine_sha256,
        "contract": json.loads(info.to_json()) if info is not None else None,
        "build": build,
    }


def write_sidecar(engine: str | Path, sidecar: dict[str, Any]) -> Path:
    path = sidecar_path(engine)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_sidecar(engine: str | Path) -> dict[str, Any]:
    """The sidecar of `engine`; ConfigError when absent or malformed (the engine is then refused)."""
    path = sidecar_path(engine)
    if not path.is_file():
        raise ConfigError(f"{engine}: no sidecar {path.name}; refusing an engine of unknown origin "
                          "(rebuild it with 'edgefer convert --to trt-...')")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != SIDECAR_FORMAT:
            raise ValueError("format")
        EngineKey(**data["key"])
        str(data["engine_sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: malformed engine sidecar ({exc})") from None
    return data


def contract_of(sidecar: dict[str, Any], where: str) -> ModelInfo | None:
    """The ModelInfo in a sidecar (None for a detector engine)."""
    c = sidecar.get("contract")
    return None if c is None else ModelInfo.from_json(json.dumps(c), where)


def inside(path: Path, folder: Path) -> bool:
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


@dataclass
class EngineCheck:
    """The outcome of `check_engine`: `status` is "ok", "stale" or "refused", with reasons."""

    status: str
    reasons: list[str]
    sidecar: dict[str, Any] | None = None


def check_engine(engine: str | Path, expected: EngineKey | None = None, model_dir: str | Path | None = None,
                 verify_hash: bool = True) -> EngineCheck:
    """Decide whether `engine` may be deserialised here (see the module docstring). `expected` is
    this machine's key (TensorRT version and compute capability at least; None skips the key
    comparison); `model_dir` the configured model folder (None: the engine's own folder)."""
    engine = Path(engine)
    if model_dir is not None and not inside(engine, Path(model_dir)):
        return EngineCheck("refused", [f"{engine} is outside the model directory {model_dir}"])
    if not engine.is_file():
        return EngineCheck("refused", [f"{engine}: engine file not found"])
    try:
        sidecar = read_sidecar(engine)
    except ConfigError as exc:
        return EngineCheck("refused", [str(exc)])
    if verify_hash and sha256_file(engine) != sidecar["engine_sha256"]:
        return EngineCheck("refused", [f"{engine}: sha256 differs from its sidecar (modified or foreign engine)"], sidecar)
    if expected is not None:
        have = EngineKey(**sidecar["key"])
        diffs = expected.differences(have)
        if diffs:
            return EngineCheck("stale", [f"{engine}: built for another setup ({'; '.join(diffs)})"], sidecar)
    return EngineCheck("ok", [], sidecar)


def compare_runtime(sidecar: dict[str, Any], trt_version: str, compute_capability: str) -> list[str]:
    """Differences between the sidecar's key and this machine (TensorRT version, GPU)."""
    key = sidecar["key"]
    out = []
    if key["trt_version"] != trt_version:
        out.append(f"TensorRT {key['trt_version']} != {trt_version} here")
    if key["compute_capability"] != compute_capability:
        out.append(f"GPU compute capability {key['compute_capability']} != {compute_capability} here")
    return out


def cache_decision(check: EngineCheck) -> str:
    """What to do with the engine at a cache path: "use" it, "build" it (absent, or stale: another
    TensorRT, GPU or ONNX; rebuilding overwrites it, it is never loaded), or "refuse" (a file whose
    sidecar is missing, malformed or does not match it: not ours to overwrite or load)."""
    if check.status == "ok":
        return "use"
    if check.status == "stale":
        return "build"
    if any("engine file not found" in r for r in check.reasons):
        return "build"
    return "refuse"
