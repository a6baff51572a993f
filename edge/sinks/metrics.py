"""Prometheus metrics as a sink, on the sink's own `CollectorRegistry` (never the process-global one).

What feeds what:

- `publish(result)` (once per processed frame): `edgefer_frames_total`, `edgefer_faces_total` (faces
  reported), `edgefer_faces_detected_total` (before the `max_faces` cut), `edgefer_faces_in_frame`,
  `edgefer_last_frame_timestamp_seconds` (wall clock, for display: a file's frames carry the media's
  time), and `edgefer_stage_latency_seconds{stage=...}`: one histogram observation per entry of
  `FrameResult.timings_ms` (milliseconds in, seconds out). `edgefer_last_frame_age_seconds` is
  computed at each scrape on `time.monotonic()` from `Frame.arrived` (no frame yet: NaN), so it is
  never negative and a wall-clock jump does not move it: alert on it rather than on
  `time() - edgefer_last_frame_timestamp_seconds`.
- `event(event)` (tracker events): `edgefer_events_total{type=event["type"]}`.
- `status(status)` (periodic service state; the runner passes its counters, all CUMULATIVE since start,
  and any key may be missing). Recognised keys, everything else is ignored:

  | key                 | value                      | metric                                        |
  |---------------------|----------------------------|-----------------------------------------------|
  | `state`             | str, e.g. "running"        | `edgefer_state{state=...} 1`                  |
  | `frames_dropped`    | int, or {reason: int}      | `edgefer_frames_dropped_total{reason=...}`    |
  | `frames_skipped`    | int                        | `edgefer_frames_skipped_total`                |
  | `source_reconnects` | int                        | `edgefer_source_reconnects_total`             |
  | `source_stalls`     | int                        | `edgefer_source_stalls_total`                 |
  | `source_open_failures` | int                     | `edgefer_source_open_failures_total`          |
  | `non_finite`        | int                        | `edgefer_non_finite_total`                    |
  | `sink_errors`       | {sink name: int}           | `edgefer_sink_errors_total{sink=...}`         |
  | `mqtt_buffer_depth` | int (messages queued now)  | `edgefer_mqtt_buffer_depth`                   |
  | `mqtt_dropped`      | int                        | `edgefer_mqtt_dropped_total`                  |
  | `mqtt_connected`    | bool                       | `edgefer_mqtt_connected`                      |

  An int `frames_dropped` is reported with `reason="all"`. `edge/runner.py:Runner.snapshot` sends exactly
  these keys (MQTT values from `MqttSink.stats()`). Snapshot values are exposed as they are
  (a custom collector), so the runner keeps the counts and calls `status` as often as it likes.

The endpoint (`/metrics`, in fact any path) is off by default, binds 127.0.0.1, and like the overlay
requires Basic credentials on any other address.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import MetricsHandler
from pydantic import Field

from edgefer import __version__
from edgefer.types import FrameResult

from .base import NullSink
from .httpauth import HttpEndpointConfig, bind_server, check_basic_auth, resolve_credentials, send_unauthorized

log = logging.getLogger(__name__)

# Stage latencies on an edge device: from a fraction of a millisecond (align) to about a second
# (a slow Pi under load).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MAX_LABEL_VALUES = 32  # per label: stage / event type / drop reason / state; the rest is "other"


class MetricsConfig(HttpEndpointConfig):
    """The Prometheus endpoint: frames, faces, stage latencies, drops, reconnects, MQTT buffer."""

    port: int = Field(9464, ge=0, le=65535, description="TCP port of the Prometheus endpoint (0 picks a free one).")


class _Labels:
    """Caps how many distinct values a label takes, so a bug upstream cannot explode the series count."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, value: Any) -> str:
        value = str(value)[:64]
        if value in self.seen:
            return value
        if len(self.seen) >= MAX_LABEL_VALUES:
            return "other"
        self.seen.add(value)
        return value


def _count(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        return None
    return float(value)


class _StatusCollector:
    """Exposes the newest status snapshot (cumulative counts kept by the runner)."""

    def __init__(self) -> None:
        self.snapshot: Mapping[str, Any] = {}
        self.reasons = _Labels()
        self.states = _Labels()
        self.sinks = _Labels()

    def describe(self) -> list[Metric]:
        return []  # values appear only once the runner reported them

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        if isinstance(s.get("state"), str):
            g = GaugeMetricFamily("edgefer_state", "Service state (1 for the current one).", labels=["state"])
            g.add_metric([self.states(s["state"])], 1.0)
            yield g
        dropped = s.get("frames_dropped")
        if isinstance(dropped, Mapping) or _count(dropped) is not None:
            c = CounterMetricFamily(
                "edgefer_frames_dropped", "Frames dropped as unusable (corrupt, truncated, wrong shape).",
                labels=["reason"],
            )
            items = dropped.items() if isinstance(dropped, Mapping) else [("all", dropped)]
            for reason, n in items:
                if _count(n) is not None:
                    c.add_metric([self.reasons(reason)], _count(n))
            yield c
        for key, doc in (
            ("frames_skipped", "Frames not processed because inference was slower than capture."),
            ("source_reconnects", "Times the video source was reopened."),
            ("source_stalls", "Times the video source delivered no frame within its timeout."),
            ("source_open_failures", "Failed attempts to open the video source."),
            ("non_finite", "Faces dropped because the model returned NaN or infinity."),
            ("mqtt_dropped", "MQTT messages dropped because the store-and-forward buffer was full."),
        ):
            if _count(s.get(key)) is not None:
                yield CounterMetricFamily(f"edgefer_{key}", doc, value=_count(s[key]))
        if _count(s.get("mqtt_buffer_depth")) is not None:
            yield GaugeMetricFamily(
                "edgefer_mqtt_buffer_depth", "MQTT messages waiting for the broker.", value=_count(s["mqtt_buffer_depth"])
            )
        errors = s.get("sink_errors")
        if isinstance(errors, Mapping):
            c = CounterMetricFamily("edgefer_sink_errors", "Exceptions raised by each sink (counted, not fatal).",
                                    labels=["sink"])
            for sink, n in errors.items():
                if _count(n) is not None:
                    c.add_metric([self.sinks(sink)], _count(n))
            yield c
        shadow = s.get("shadow")
        if isinstance(shadow, Mapping) and isinstance(shadow.get("state"), str):
            g = GaugeMetricFamily("edgefer_shadow_check", "Shadow check of the converted model against its FP32 base "
                                  "(1 for the current state: checking, passed, failed, unavailable).", labels=["state"])
            g.add_metric([self.states(shadow["state"])], 1.0)
            yield g
            for key, doc in (("agreement", "Top-1 agreement with the FP32 model over the faces compared."),
                             ("mean_prob_diff", "Mean probability difference (total variation) from the FP32 model."),
                             ("faces", "Faces compared with the FP32 model.")):
                if _count(shadow.get(key)) is not None:
                    yield GaugeMetricFamily(f"edgefer_shadow_{key}", doc, value=_count(shadow[key]))
        if isinstance(s.get("mqtt_connected"), bool):
            yield GaugeMetricFamily(
                "edgefer_mqtt_connected", "1 while connected to the MQTT broker.", value=float(s["mqtt_connected"])
            )


class MetricsSink(NullSink):
    """Prometheus metrics of the run. The metrics are kept whether or not the endpoint is enabled
    (`registry` can be read directly); the HTTP server exists only with `enabled = true`."""

    name = "metrics"

    def __init__(self, config: MetricsConfig | None = None) -> None:
        self.config = config or MetricsConfig()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("edgefer_build", "edgefer version.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)  # process_resident_memory_bytes, open fds, CPU seconds (Linux)
        self.frames = Counter("edgefer_frames", "Frames processed (published results).", registry=r)
        self.faces = Counter("edgefer_faces", "Faces reported (after the max_faces cut).", registry=r)
        self.faces_detected = Counter("edgefer_faces_detected", "Faces detected (before the max_faces cut).", registry=r)
        self.faces_in_frame = Gauge("edgefer_faces_in_frame", "Faces reported in the newest frame.", registry=r)
        self.last_frame = Gauge(
            "edgefer_last_frame_timestamp_seconds", "Capture time (Unix seconds) of the newest frame.", registry=r
        )
        self._arrived: float | None = None  # Frame.arrived of the newest frame
        Gauge("edgefer_last_frame_age_seconds", "Seconds since the newest frame came from its source "
              "(monotonic clock).", registry=r).set_function(self._last_frame_age)
        self.latency = Histogram(
            "edgefer_stage_latency_seconds", "Per-frame time spent in each pipeline stage.", ["stage"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.events = Counter("edgefer_events", "Tracker events by type.", ["type"], registry=r)
        self._stages = _Labels()
        self._latency: dict[str, Any] = {}  # stage -> its histogram child (saves a labels() lookup per frame)
        self._event_types = _Labels()
        self._status = _StatusCollector()
        r.register(self._status)
        self.server = None
        self._thread: threading.Thread | None = None
        if not self.config.enabled:
            return
        credentials = resolve_credentials(self.config, "metrics")
        handler = type("MetricsAuthHandler", (_AuthMetricsHandler,), {"registry": r, "credentials": credentials})
        self.server = bind_server(self.config.host, self.config.port, handler, "metrics")
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="edgefer-metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", *self.address)

    @property
    def address(self) -> tuple[str, int] | None:
        if self.server is None:
            return None
        host, port = self.server.server_address[:2]
        return host, port

    def publish(self, result: FrameResult) -> None:
        self.frames.inc()
        self.faces.inc(len(result.faces))
        self.faces_detected.inc(max(result.faces_detected, len(result.faces)))
        self.faces_in_frame.set(len(result.faces))
        self.last_frame.set(result.frame.timestamp)
        self._arrived = result.frame.arrived
        for stage, ms in result.timings_ms.items():
            if _count(ms) is not None:
                child = self._latency.get(stage)
                if child is None:
                    child = self.latency.labels(self._stages(stage))
                    if len(self._latency) < MAX_LABEL_VALUES:
                        self._latency[stage] = child
                child.observe(ms / 1000.0)

    def _last_frame_age(self) -> float:
        arrived = self._arrived
        return math.nan if arrived is None else time.monotonic() - arrived

    def event(self, event: dict[str, Any]) -> None:
        self.events.labels(self._event_types(event.get("type", "unknown"))).inc()

    def status(self, status: dict[str, Any]) -> None:
        self._status.snapshot = dict(status)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            if self._thread is not None:
                self._thread.join(timeout=2.0)
            self.server = None


class _AuthMetricsHandler(MetricsHandler):
    """prometheus-client's handler (content negotiation, gzip, `name[]` filters) behind Basic auth."""

    credentials: tuple[str, str] | None = None

    def do_GET(self) -> None:
        if not check_basic_auth(self.headers.get("Authorization"), self.credentials):
            send_unauthorized(self)
            return
        super().do_GET()
