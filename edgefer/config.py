"""The daemon's configuration: one TOML file, validated with pydantic, overridden by flags.

Every section is a pydantic model with `extra="forbid"` (a typo is an error, not a silently
ignored key) and a description on every field; `example_toml()` prints them as a commented
default file (`edgefer config --example`). A bad file raises `ConfigError` (exit 78, which the
systemd unit does not restart) with one line naming the file, the line and the key:

    edgefer: error: /etc/edgefer/config.toml:12: source.stall_timeout_s: Input should be greater than 0

Sections owned by other modules (`[tracker]`, `[mqtt]`, `[web]`, `[metrics]`) use those modules'
own models, so each plug-in keeps its configuration next to its code.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgefer.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceConfig(_Section):
    """Where frames come from, and how a failing camera is retried."""

    uri: str | None = Field(None, description="Source URI: a video file, an image folder, v4l2:///dev/video0, csi://0, "
                            "picamera2://0, rtsp://..., http(s)://... Unset: the platform's usual camera (as --camera).")
    width: int | None = Field(None, gt=0, description="Requested capture width in pixels (cameras only; unset: the driver's default).")
    height: int | None = Field(None, gt=0, description="Requested capture height in pixels (cameras only).")
    fps: float | None = Field(None, gt=0, description="Requested capture frame rate (cameras); the nominal frame rate of an "
                              "image folder read as a sequence (unset: 30).")
    stall_timeout_s: float = Field(5.0, gt=0, le=600, description="A live source that delivers no frame for this many "
                                   "seconds is declared stalled and reopened.")
    backoff_initial_s: float = Field(0.5, gt=0, le=30, description="First retry delay after a source fails to open; "
                                     "doubles on each failure.")
    backoff_max_s: float = Field(30.0, gt=0, le=300, description="Longest retry delay between attempts to open a missing camera.")
    loop: bool = Field(False, description="Start a video file or image folder again when it ends (demos, soak tests).")
    sequence: bool = Field(False, description="An image folder is one scene's frames in name order (a time-lapse, frames "
                           "exported from a video): track and smooth across its images. Off: each image is its own "
                           "still, tracked and smoothed alone. Videos and cameras are always tracked.")
    min_frame_size: int = Field(16, ge=1, description="Frames smaller than this (either side, pixels) are dropped as corrupt.")


class DetectorConfig(_Section):
    """The face detector (YuNet)."""

    model: Path | None = Field(None, description="YuNet ONNX file. Unset: the cache folder, else a one-time pinned download "
                               "from OpenCV Zoo. Relative paths are relative to this file.")
    input_width: Annotated[int, Field(ge=32, le=4096)] | Literal["auto"] = Field("auto", description=(
        "Frames are downscaled to this width for detection (a multiple of 32), or \"auto\": the widest of "
        "640, 480, 320 whose detection takes at most 15 ms per 640x480 frame here, measured at start "
        "(never wider than the frame). In a 640x480 frame, 320 finds 31% of 48-px faces and 96% of 80-px "
        "ones; 640 finds 99% of both, at about 3x the detector's time (benchmarks/face_size.py)."))
    score_threshold: float = Field(0.6, gt=0, lt=1, description="Minimum detector score of a face.")
    min_face: float = Field(24.0, ge=0, description="Smallest face kept, in frame pixels (box side).")


class ClassifierConfig(_Section):
    """The emotion model."""

    model: Path | None = Field(None, description="Classifier model (ONNX, or a TensorRT engine with its sidecar). "
                               "Unset: the embedded default model. Relative paths are relative to this file.")
    threads: int = Field(0, ge=0, le=64, description="Inference threads per model (0: the runtime's default).")
    precision: Literal["auto", "fp32", "int8"] = Field("auto", description="With no model set: auto runs the embedded "
                                                       "INT8 model where this CPU computes it exactly and faster "
                                                       "(measured at start), else FP32; fp32 or int8 force one.")


class PipelineConfig(_Section):
    """How much work one frame may cost."""

    max_faces: int = Field(8, ge=1, le=256, description="At most this many faces per frame are aligned and classified "
                           "(the largest); more are counted, not processed.")


class JsonlConfig(_Section):
    """Results as JSON lines (one object per processed frame)."""

    path: str | None = Field(None, description="File to append to, or \"-\" for standard output. Unset: no JSON lines.")
    include_empty: bool = Field(True, description="Also write frames in which no face was found.")


class DisplayConfig(_Section):
    """The on-device overlay window."""

    enabled: bool = Field(False, description="Show the overlay in an OpenCV window (needs a display and OpenCV with GUI support).")


class ServiceConfig(_Section):
    """Daemon behaviour: heartbeats and the hang detector behind the systemd watchdog."""

    stats_interval_s: float = Field(10.0, gt=0, le=3600, description="Stats and status are sent to every sink this often, "
                                    "faces or not (a heartbeat).")
    hang_timeout_s: float = Field(10.0, gt=0, le=3600, description="If the pipeline makes no progress for this long it "
                                  "counts as hung: watchdog pings stop and systemd restarts the service. Keep it below WatchdogSec.")
    stop_timeout_s: float = Field(4.0, gt=0, le=60, description="On SIGTERM, the longest wait for the pipeline and sinks to finish.")
    max_frames: int | None = Field(None, ge=1, description="Stop after this many processed frames (tests, benchmarks). Unset: run forever.")


# Plug-in sections: each plug-in module holds its own config type (see STYLE.md).
from edgefer.edge.shadow import ShadowConfig  # noqa: E402
from edgefer.edge.sinks.metrics import MetricsConfig  # noqa: E402
from edgefer.edge.sinks.mqtt_config import MqttConfig  # noqa: E402
from edgefer.edge.sinks.web import WebConfig  # noqa: E402
from edgefer.edge.tracker import TrackerConfig  # noqa: E402


class Config(_Section):
    """The whole file."""

    source: SourceConfig = Field(default_factory=SourceConfig, description="Where frames come from.")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="The face detector.")
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig, description="The emotion model.")
    shadow: ShadowConfig = Field(default_factory=ShadowConfig, description="The check of a converted model against FP32.")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="Per-frame work limits.")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="Face tracking and smoothing.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT results, events and status.")
    web: WebConfig = Field(default_factory=WebConfig, description="The local overlay page.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="The Prometheus endpoint.")
    jsonl: JsonlConfig = Field(default_factory=JsonlConfig, description="JSON lines output.")
    display: DisplayConfig = Field(default_factory=DisplayConfig, description="The on-device window.")
    service: ServiceConfig = Field(default_factory=ServiceConfig, description="Daemon behaviour.")

    @field_validator("source", mode="after")
    @classmethod
    def _backoff_order(cls, v: SourceConfig) -> SourceConfig:
        if v.backoff_max_s < v.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return v


# ---------------------------------------------------------------------------------------------
# Loading, with errors that point at the line


_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")


def _split_key(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in re.split(r"\.(?=(?:[^\"']*[\"'][^\"']*[\"'])*[^\"']*$)", key))


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Where each table and key of a TOML document is defined: dotted path -> 1-based line.
    Good enough for pointing at errors (multi-line strings and arrays are not followed)."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for no, line in enumerate(text.splitlines(), 1):
        m = _TABLE.match(line)
        if m:
            table = _split_key(m.group(1))
            lines.setdefault(table, no)
            continue
        m = _KEY.match(line)
        if m:
            lines.setdefault(table + _split_key(m.group(1)), no)
    return lines


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        parent: Any = model
        for part in err["loc"][:-1]:
            field = parent.model_fields.get(part) if isinstance(parent, type) and issubclass(parent, BaseModel) else None
            parent = field.annotation if field is not None else None
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            msg += f" (known: {', '.join(parent.model_fields)})"
    elif "input" in err and not isinstance(err["input"], dict):
        msg += f" (got {err['input']!r})"
    return msg


def format_validation_error(exc: ValidationError, origin: str, text: str = "",
                            overridden: set[tuple[str, ...]] = frozenset()) -> str:
    """One line: `origin:LINE: dotted.key: message` for each error, joined by '; '."""
    where = key_lines(text)
    parts = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        parts.append(f"{_locate(loc, origin, where, overridden)}: {_describe(err, Config)}")
    return "; ".join(parts)


def _locate(loc: tuple[str, ...], origin: str, where: dict[tuple[str, ...], int], overridden: set[tuple[str, ...]]) -> str:
    """`origin:LINE: dotted.key` (the line of the key, else of its nearest table), or
    `dotted.key (from the command line)` for a value a flag gave."""
    key = ".".join(loc) or "(top level)"
    if loc in overridden:
        return f"{key} (from the command line)"
    line = next((where[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in where), None)
    return f"{origin}:{line}: {key}" if line else f"{origin}: {key}"


def _merge(base: dict[str, Any], overrides: dict[str, Any], path: tuple[str, ...] = (),
           seen: set[tuple[str, ...]] | None = None) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, path + (key,), seen)
        elif isinstance(value, dict):
            out[key] = _merge({}, value, path + (key,), seen)
        else:
            out[key] = value
            if seen is not None:
                seen.add(path + (key,))
    return out


def _resolve_paths(config: Config, base: Path) -> Config:
    """Model paths in a file are relative to that file, not to wherever the daemon was started."""
    for section in (config.detector, config.classifier):
        if section.model is not None and not section.model.is_absolute():
            section.model = (base / section.model.expanduser()).resolve()
    if config.shadow.reference is not None and not config.shadow.reference.is_absolute():
        config.shadow.reference = (base / config.shadow.reference.expanduser()).resolve()
    return config


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate `path` (None: defaults only), then apply `overrides` (nested dicts, e.g.
    `{"source": {"uri": "clip.mp4"}}`, values None are ignored) from the command line.
    Raises `ConfigError` (exit 78) with one line naming the file, line and key."""
    text, data, origin = "", {}, "<defaults>"
    if path is not None:
        origin = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: configuration file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the configuration file ({exc})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    overridden: set[tuple[str, ...]] = set()
    if overrides:
        data = _merge(data, _drop_none(overrides), seen=overridden)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin, text, overridden)) from None
    if path is not None:
        config = _resolve_paths(config, Path(path).resolve().parent)
    _check_outputs(config, origin, text, overridden)
    return config


#: keys naming a place the daemon writes to: (dotted key, is a folder)
OUTPUT_KEYS = ((("mqtt", "state_dir"), True), (("jsonl", "path"), False))


def _check_outputs(config: Config, origin: str, text: str, overridden: set[tuple[str, ...]]) -> None:
    """A place the daemon would write to that cannot be written (a folder that cannot be created,
    a read-only file system, no permission) is a configuration error now, naming the key and its
    line, not a failure once the daemon runs. Only values the user gave are checked (systemd
    creates the installed service's default StateDirectory)."""
    from edgefer.paths import probe_output, reason

    for loc, folder in OUTPUT_KEYS:
        section = getattr(config, loc[0])
        value = getattr(section, loc[1])
        if loc[1] not in section.model_fields_set or value is None or str(value) == "-":
            continue
        try:
            probe_output(Path(value).expanduser(), folder=folder, parents=True)
        except OSError as exc:
            where = _locate(loc, origin, key_lines(text), overridden)
            raise ConfigError(f"{where}: cannot write {value}: {reason(exc)}") from None


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _drop_none(v)
            if v:
                out[k] = v
        elif v is not None:
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# The commented example file


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if hasattr(value, "value"):  # enums
        return _toml_value(value.value)
    raise TypeError(f"no TOML form for {value!r}")


def _comment(text: str, indent: str = "") -> list[str]:
    return [indent + "# " + line for line in textwrap.wrap(" ".join(text.split()), 100)]


def _section_lines(model: BaseModel, table: str, commented: bool = False) -> list[str]:
    """`[table]` and its keys with their descriptions. Unset values, and values computed on this
    machine (default factories such as a host name), are shown commented out."""
    c = "# " if commented else ""
    lines = [f"{c}[{table}]"]
    doc = (type(model).__doc__ or "").strip().splitlines()[0] if type(model).__doc__ else ""
    if doc:
        lines[0:0] = _comment(doc)
    nested: list[tuple[str, BaseModel]] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            nested.append((name, value))
            continue
        lines += _comment(field.description or name)
        if value is None or (isinstance(value, dict) and not value):
            lines.append(f"# {name} =")
            continue
        try:
            text = f"{name} = {_toml_value(value)}"
        except TypeError:
            text = f"{name} = {value!r}"
            commented_here = True
        else:
            commented_here = field.default_factory is not None
        lines.append(("# " if commented or commented_here else "") + text)
    for name, value in nested:
        lines.append("")
        lines += _section_lines(value, f"{table}.{name}", commented)
    return lines


def example_toml() -> str:
    """The default configuration as TOML, every key with its description as a comment."""
    config = Config()
    out = ["# edgefer configuration. Every key is optional; shown values are the defaults.",
           "# Check a file with: edgefer config --check FILE", ""]
    for name in Config.model_fields:
        section = getattr(config, name)
        # A section whose mere presence turns it on (no `enabled` key) is shown commented out.
        by_presence = name == "mqtt" and "enabled" not in type(section).model_fields
        if by_presence:
            out += _comment(f"Uncomment [{name}] to turn it on.")
        out += _section_lines(section, name, commented=by_presence)
        out.append("")
    return "\n".join(out)
