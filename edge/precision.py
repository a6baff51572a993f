"""Which classifier artifact to run here: the fastest one this device computes correctly.

`[classifier] precision = "auto"` (the default of `edgefer run` and the service) with no model
configured measures this machine (`edgefer.convert.probe`): the embedded INT8 model (``cpu``
scheme, exact on every CPU) when ONNX Runtime computes it exactly here and it is at least
`MIN_SPEEDUP` times faster than FP32 on one thread; the embedded FP32 model otherwise. A configured
model (an INT8/FP16 ONNX, a TensorRT engine) is used as given, after a check that its recorded
INT8 scheme is exact on this CPU. Every choice carries its reason, which the daemon logs and
`edgefer doctor` prints; the shadow check (`shadow.py`) then verifies it on the first faces.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edgefer.errors import ConfigError

log = logging.getLogger(__name__)

EMBEDDED_INT8_NAME = "edgefer-fer-v1.int8.onnx"
MIN_SPEEDUP = 1.2  # below this INT8 is not worth its small accuracy cost
PRECISIONS = ("auto", "fp32", "int8")


def embedded_int8_path() -> Path:
    """The INT8 twin of the embedded model (``cpu`` scheme), shipped inside the package."""
    path = Path(str(resources.files("edgefer") / "models" / EMBEDDED_INT8_NAME))
    if not path.exists():
        raise ConfigError(f"the embedded INT8 model is missing ({path}); reinstall edgefer or set precision = \"fp32\"")
    return path


@dataclass
class Choice:
    """What to run (`path`; None: the embedded FP32 model), its precision, why, and a problem that
    makes it wrong on this CPU (then the shadow check fails at once)."""

    path: Path | None
    precision: str
    reason: str
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": str(self.path) if self.path else "embedded FP32", "precision": self.precision,
                "reason": self.reason, **({"problem": self.problem} if self.problem else {})}


def measure(int8: Path | None = None) -> dict[str, Any]:
    """This CPU's INT8 facts, measured: exactness of both schemes and the embedded models' speed."""
    from edgefer.convert import probe
    from edgefer.convert.schemes import cpu_kind
    from edgefer.edge.classifier import default_model_path

    exact = probe.exactness()
    facts: dict[str, Any] = {"cpu_kind": cpu_kind(), **exact.to_dict()}
    if exact.cpu_scheme:
        facts.update(probe.speed(default_model_path(), int8 or embedded_int8_path()).to_dict())
    return facts


def choose(model: Path | None = None, precision: str | None = "auto", facts: dict[str, Any] | None = None) -> Choice:
    """The classifier to open for `[classifier] model` / `precision` on this machine. `facts` are
    `measure()`'s (measured here when needed and not given). `precision` None: the library
    default, FP32 when no model is given (the configuration's default is "auto")."""
    if precision is None:
        precision = "auto" if model is not None else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"classifier.precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if model is not None:
        return _configured(Path(model), precision, facts)
    if precision == "fp32":
        return Choice(None, "fp32", "precision = \"fp32\"")
    facts = facts if facts is not None else measure()
    if not facts["cpu_scheme"]:
        reason = f"ONNX Runtime does not compute the cpu INT8 scheme exactly on this CPU ({facts['cpu_kind']}): FP32"
        if precision == "int8":
            raise ConfigError(f"precision = \"int8\": {reason}")
        return Choice(None, "fp32", reason)
    ratio = facts.get("ratio", 0.0)
    if precision == "int8":
        return Choice(embedded_int8_path(), "int8", f"precision = \"int8\" (INT8 {ratio:.2f}x FP32 here)")
    if ratio >= MIN_SPEEDUP:
        return Choice(embedded_int8_path(), "int8", f"auto: INT8 exact and {ratio:.2f}x faster than FP32 on this "
                      f"CPU ({facts['cpu_kind']}; {facts['fp32_ms']:.2f} -> {facts['int8_ms']:.2f} ms/face, measured)")
    return Choice(None, "fp32", f"auto: INT8 only {ratio:.2f}x FP32 on this CPU ({facts['cpu_kind']}, measured; "
                  f"< {MIN_SPEEDUP}x): FP32")


def _configured(path: Path, precision: str, facts: dict[str, Any] | None) -> Choice:
    """A configured model: used as given; its INT8 scheme is checked against this CPU."""
    from edgefer.convert.schemes import cpu_kind, runtime_problem, scheme_of
    from edgefer.edge.backends import backend_for_path
    from edgefer.modelinfo import read_onnx_info

    if backend_for_path(path) != "onnxruntime":
        return Choice(path, "engine", "configured TensorRT engine")
    info = read_onnx_info(path)
    if precision not in ("auto", info.precision):
        raise ConfigError(f"{path}: classifier.precision = \"{precision}\" but this model is {info.precision}")
    problem = None
    int8 = scheme_of(info.extra) if info.precision == "int8" else None
    if int8 is not None and int(int8.get("weight_max", 127)) > 64:
        from edgefer.convert import probe

        full = facts["full_range"] if facts is not None else probe.exactness().full_range
        problem = runtime_problem(int8, cpu_kind(), full_range_exact=full)
    elif info.precision == "int8" and int8 is None:
        log.warning("%s: an INT8 model with no recorded scheme (converted by an older edgefer); "
                    "the shadow check will tell whether this CPU computes it correctly", path)
    return Choice(path, info.precision, "configured model", problem)
