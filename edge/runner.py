"""The run loop: source -> pipeline -> tracker -> sinks, with stats and heartbeats.

    capture.get()  (newest frame; live sources skip what the model cannot keep up with)
      -> pipeline.process(frame)    (detect, at most max_faces aligned + classified)
      -> tracker.update(result)     (track ids, smoothing, events)
      -> sink.publish(result), sink.event(e) for each event
    every stats_interval_s, and whenever the source's state changes: sink.status(snapshot)

Work per frame is bounded: one frame in flight, `max_faces` faces classified, so latency stays
flat when inference is slower than capture (the capture thread counts the frames it replaced).
`beat` is the monotonic time of the loop's last iteration; the service pings the systemd
watchdog only while it advances, so a hung model gets the daemon restarted. Status and stats keep
flowing with no faces and with no camera (heartbeats). A sink that raises is counted and logged
once; it never stops the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgefer.types import FaceResult, Frame, FrameResult

from .sources.capture import Capture
from .tracker import Tracker

log = logging.getLogger(__name__)

#: how long one `capture.get` waits; bounds how stale `beat` gets while no frames arrive.
POLL_S = 0.2


class Runner:
    """Drives one capture through one pipeline into sinks until `stop` is set, the source ends,
    or `max_frames` frames are processed. `tracker` is optional (None: raw per-frame results)."""

    def __init__(self, capture: Capture, pipeline: Any, tracker: Any = None, sinks: Sequence[Any] = (), *,
                 max_frames: int | None = None, stats_interval_s: float = 10.0) -> None:
        self.capture = capture
        self.pipeline = pipeline
        self.tracker = tracker
        self.sinks = list(sinks)
        self.max_frames = max_frames
        self.stats_interval_s = stats_interval_s
        self.beat = time.monotonic()
        self.started = time.monotonic()
        self.frames = 0
        self.faces = 0
        self.faces_detected = 0
        self.faces_over_limit = 0
        self.events = 0
        self.sink_errors: dict[str, int] = {}
        self._closing = False
        self.latency_ms = 0.0  # newest frame: capture (live) or dequeue (files) to published
        self.latency_max_ms = 0.0
        self.stage_ms: dict[str, float] = {}  # exponential average per stage
        self._done: deque[float] = deque(maxlen=64)  # monotonic completion times, for fps
        self._last_state: str | None = None
        self.state_override: str | None = None  # e.g. "reloading", set by the service

    # -- stats --------------------------------------------------------------------------------

    @property
    def fps(self) -> float:
        """Frames per second over the newest (up to 64) frames; 0 when none in the last 5 s."""
        if len(self._done) < 2 or time.monotonic() - self._done[-1] > 5.0:
            return 0.0
        span = self._done[-1] - self._done[0]
        return (len(self._done) - 1) / span if span > 0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Cumulative counters and current rates, as sent to `sink.status` (and the metrics sink)."""
        cs = self.capture.stats
        snap: dict[str, Any] = {
            "state": self.state_override or self.capture.status.value,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "faces": self.faces,
            "faces_detected": self.faces_detected,
            "faces_over_limit": self.faces_over_limit,
            "events": self.events,
            "frames_captured": cs.captured,
            "frames_skipped": cs.skipped,
            "frames_dropped": dict(self.capture.validator.reasons),
            "frames_dropped_total": cs.dropped_invalid,
            "source_reconnects": cs.reconnects,
            "source_stalls": cs.stalls,
            "source_open_failures": cs.open_failures,
            "latency_ms": round(self.latency_ms, 2),
            "latency_max_ms": round(self.latency_max_ms, 2),
            "stage_ms": {k: round(v, 2) for k, v in self.stage_ms.items()},
            "non_finite": int(getattr(self.pipeline, "non_finite", 0)),
            "sink_errors": dict(self.sink_errors),
        }
        if self.capture.last_error:
            snap["source_error"] = self.capture.last_error
        if getattr(self.pipeline, "choice", None):
            snap["classifier"] = self.pipeline.choice
        shadow = getattr(self.pipeline, "shadow", None)
        if shadow is not None:
            snap["shadow"] = shadow.result()
        for sink in self.sinks:
            stats = getattr(sink, "stats", None)
            if not callable(stats):
                continue
            try:
                s = stats()
            except Exception:  # a sink's stats must not break the heartbeat
                continue
            if sink.name == "mqtt":
                snap.update(mqtt_buffer_depth=s.get("buffered"), mqtt_dropped=s.get("dropped"),
                            mqtt_connected=s.get("connected"))
            else:
                snap.update({k if k.startswith(sink.name) else f"{sink.name}_{k}": v for k, v in s.items()})
        return snap

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        next_stats = time.monotonic()
        while not stop.is_set():
            self.beat = now = time.monotonic()
            state = self.state_override or self.capture.status.value
            if state != self._last_state or now >= next_stats:
                self._last_state = state
                next_stats = now + self.stats_interval_s
                self._call("status", self.snapshot())
            if self.max_frames is not None and self.frames >= self.max_frames:
                break
            if any(getattr(s, "quit", None) is not None and s.quit.is_set() for s in self.sinks):
                break
            frame = self.capture.get(timeout=POLL_S)
            if frame is None:
                if self.capture.ended:
                    break
                continue
            self.step(frame)
        self._call("status", self.snapshot())

    def step(self, frame: Frame) -> FrameResult:
        """One frame through pipeline, tracker and sinks. A `new_scene` frame (the next still of a
        photo folder) first ends every track, so nothing is tracked or smoothed across it."""
        t_got = time.monotonic()
        events: list[dict[str, Any]] = []
        if frame.new_scene and self.tracker is not None:
            events = self.tracker.new_scene(frame.timestamp)
        result = self._process(frame)
        if self.tracker is not None:
            events += self.tracker.update(result)
        for sink in self.sinks:
            self._call_one(sink, "publish", result)
            for event in events:
                self._call_one(sink, "event", event)
        done = time.monotonic()
        self._done.append(done)
        self.frames += 1
        self.faces += len(result.faces)
        self.faces_detected += result.faces_detected
        self.faces_over_limit += max(0, result.faces_detected - getattr(self.pipeline, "max_faces", result.faces_detected))
        self.events += len(events)
        start = frame.monotonic if self.capture.live else t_got
        self.latency_ms = (done - start) * 1000.0
        self.latency_max_ms = max(self.latency_max_ms, self.latency_ms)
        for stage, ms in result.timings_ms.items():
            prev = self.stage_ms.get(stage)
            self.stage_ms[stage] = ms if prev is None else 0.9 * prev + 0.1 * ms
        return result

    def _process(self, frame: Frame) -> FrameResult:
        """The pipeline, letting the tracker skip re-classifying stable faces when configured."""
        tracker = self.tracker
        interval = getattr(getattr(tracker, "config", None), "reclassify_interval_s", 0.0)
        if not interval or not hasattr(self.pipeline, "classify_faces"):
            return self.pipeline.process(frame)
        p = self.pipeline
        t0 = time.perf_counter()
        detected = p.detector.detect(frame.image)
        t1 = time.perf_counter()
        faces = p.select(detected)
        need = [f for f in faces if tracker.needs_classification(f.box, frame.monotonic)]
        results, align_ms, classify_ms = p.classify_faces(frame.image, need)
        zeros = np.zeros(7, np.float32)
        results += [FaceResult(face=f, probabilities=zeros, intensity=zeros, classified=False)
                    for f in faces if not any(f is n for n in need)]
        total = (time.perf_counter() - t0) * 1000.0
        timings = {"detect": (t1 - t0) * 1000.0, "align": align_ms, "classify": classify_ms, "total": total}
        return FrameResult(frame=frame, faces=results, timings_ms=timings, faces_detected=len(detected))

    def _call(self, method: str, arg: Any) -> None:
        for sink in self.sinks:
            self._call_one(sink, method, arg)

    def _call_one(self, sink: Any, method: str, arg: Any) -> None:
        if self._closing:  # a frame or status that finished after the stop: its sinks are closed or closing
            return
        try:
            getattr(sink, method)(arg)
        except Exception:
            name = getattr(sink, "name", type(sink).__name__)
            if name not in self.sink_errors:
                log.exception("sink %s failed in %s (counted; further failures are not logged)", name, method)
            self.sink_errors[name] = self.sink_errors.get(name, 0) + 1

    def close(self, models: bool = True) -> None:
        """Stop the capture, close every sink (MQTT publishes `offline` and flushes), then the models.
        `models=False` leaves the models open: for a run loop that is still inside an inference
        (freeing a session under it aborts the process); the exit frees them."""
        self._closing = True
        self.capture.stop(timeout=1.0)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s", getattr(sink, "name", sink))
        if models:
            self.close_models()

    def close_models(self) -> None:
        close = getattr(self.pipeline, "close", None)
        if callable(close):
            close()


    def undelivered(self) -> list[tuple[Any, int]]:
        """(sink, count) for each closed sink that still held undelivered messages."""
        return [(s, n) for s in self.sinks if (n := getattr(s, "undelivered", 0))]


def mqtt_enabled(config: Any) -> bool:
    """MQTT is on when the section says `enabled = true` or, for a section without that key, when
    the file or a flag configured `[mqtt]` at all."""
    enabled = getattr(config.mqtt, "enabled", None)
    return bool(enabled) if enabled is not None else "mqtt" in config.model_fields_set


def open_capture(config: Any) -> Capture:
    """The supervised source the config names (`[source]`; no URI: the platform's camera).
    A file or folder that cannot be opened is a `UserError` now; a live source that cannot be
    opened is retried in the background (status `camera_unavailable`)."""
    from .sources import parse_uri, source_class
    from .sources.camera import default_camera_uri

    sc = config.source
    uri = sc.uri or default_camera_uri()
    kind, location = parse_uri(uri)
    cls = source_class(kind)
    live = kind not in ("video", "images")

    options = {"sequence": sc.sequence} if kind == "images" else {}
    previous: Any = None

    def factory() -> Any:
        # A looping file's next pass continues the stream clock where the last pass ended: the
        # tracker's time never goes back (which would freeze smoothing until it caught up). A live
        # source, reopened after a loss, is timed by its arrivals and has no stream clock to continue.
        nonlocal previous
        if live:
            return cls(location, width=sc.width, height=sc.height, fps=sc.fps, **options)
        start = None if previous is None else previous.next_monotonic
        previous = cls(location, width=sc.width, height=sc.height, fps=sc.fps, **options, start=start)
        return previous

    first = None if live else factory()  # fail fast on a bad file

    def supervised() -> Any:
        nonlocal first
        if first is not None:
            src, first = first, None
            return src
        return factory()

    return Capture(supervised, live=live, name=getattr(first, "name", uri), stall_timeout_s=sc.stall_timeout_s,
                   backoff_initial_s=sc.backoff_initial_s, backoff_max_s=sc.backoff_max_s,
                   min_size=sc.min_frame_size, loop=sc.loop,
                   same_size=kind != "images")  # unrelated stills may differ in size; frames of a video may not


def build_runner(config: Any) -> Runner:
    """Everything `[source]` ... `[service]` describe, opened and wired; the capture is started.
    Raises `UserError`/`ConfigError` (nothing left open) when a model, file or sink is unusable."""
    from .pipeline import open_pipeline
    from .sinks.jsonl import JsonlSink
    from .sources import parse_uri
    from .sources.camera import default_camera_uri

    parse_uri(config.source.uri or default_camera_uri())  # a missing file or bad scheme: say so before loading models
    opened: list[Any] = []
    try:
        pipeline = open_pipeline(model=config.classifier.model, precision=config.classifier.precision,
                                 shadow=config.shadow, detector=config.detector.model,
                                 threads=config.classifier.threads, max_faces=config.pipeline.max_faces,
                                 input_width=config.detector.input_width,
                                 score_threshold=config.detector.score_threshold, min_face=config.detector.min_face)
        opened.append(pipeline)
        c = pipeline.choice
        log.info("classifier: %s, %s (%s)", c["model"], c["precision"], c["reason"])
        d = pipeline.detector_choice
        log.info("detector: input width %d (%s)", d["input_width"], d["reason"])
        capture = open_capture(config)
        tracker = Tracker(config.tracker)
        sinks: list[Any] = []
        if config.jsonl.path:
            sinks.append(JsonlSink(config.jsonl.path, include_empty=config.jsonl.include_empty))
        if mqtt_enabled(config):
            from .sinks.mqtt import MqttSink

            sinks.append(MqttSink(config.mqtt))
        try:
            from .sinks.metrics import MetricsSink
        except ModuleNotFoundError as exc:
            if exc.name != "edgefer.edge.sinks.metrics":
                raise
        else:
            sinks.append(MetricsSink(config.metrics))
        if getattr(config.web, "enabled", False):
            from .sinks.web import WebSink

            sinks.append(WebSink(config.web))
        if config.display.enabled:
            from .sinks.display import DisplaySink

            sinks.append(DisplaySink())
        opened.extend(sinks)
    except BaseException:
        for thing in reversed(opened):
            try:
                thing.close()
            except Exception:
                log.exception("closing %s after a failed start", thing)
        raise
    runner = Runner(capture, pipeline, tracker, sinks, max_frames=config.service.max_frames,
                    stats_interval_s=config.service.stats_interval_s)
    capture.start()
    return runner
