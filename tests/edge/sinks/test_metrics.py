"""The Prometheus sink: scraped over HTTP after publishing real results, on its own registry."""

from __future__ import annotations

import base64
import math
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from realfaces import framed_faces, open_pipeline

from edgefer.edge.sinks.base import Sink
from edgefer.edge.sinks.metrics import LATENCY_BUCKETS, MetricsConfig, MetricsSink
from edgefer.errors import ConfigError
from edgefer.types import FrameResult


@pytest.fixture(scope="module")
def results(photos_dir, yunet_path) -> list[FrameResult]:
    pipeline = open_pipeline(yunet_path)
    try:
        return framed_faces(pipeline, photos_dir / "neutral", 3)
    finally:
        pipeline.close()


@pytest.fixture
def sink():
    s = MetricsSink(MetricsConfig(enabled=True, port=0))
    yield s
    s.close()


def scrape(sink: MetricsSink, auth: tuple[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the live endpoint."""
    host, port = sink.address
    req = urllib.request.Request(f"http://{host}:{port}/metrics")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_and_latency_histograms_after_real_frames(sink, results):
    assert isinstance(sink, Sink)
    assert math.isnan(scrape(sink)[("edgefer_last_frame_age_seconds", ())])  # no frame yet
    for r in results:
        sink.publish(r)
    m = scrape(sink)
    assert 0 <= m[("edgefer_last_frame_age_seconds", ())] <= time.monotonic() - results[-1].frame.arrived
    assert m[("edgefer_frames_total", ())] == 3
    assert m[("edgefer_faces_total", ())] == sum(len(r.faces) for r in results) == 3
    assert m[("edgefer_faces_detected_total", ())] == sum(r.faces_detected for r in results)
    assert m[("edgefer_faces_in_frame", ())] == len(results[-1].faces)
    assert m[("edgefer_last_frame_timestamp_seconds", ())] == pytest.approx(results[-1].frame.timestamp)
    stages = set(results[0].timings_ms)
    assert {"detect", "align", "classify"} <= stages
    for stage in stages:
        values_s = [r.timings_ms[stage] / 1000 for r in results]
        assert m[("edgefer_stage_latency_seconds_count", (("stage", stage),))] == 3
        assert m[("edgefer_stage_latency_seconds_sum", (("stage", stage),))] == pytest.approx(sum(values_s))
        for le in LATENCY_BUCKETS:
            key = ("edgefer_stage_latency_seconds_bucket", tuple(sorted({"stage": stage, "le": str(le)}.items())))
            assert m[key] == sum(v <= le for v in values_s), (stage, le)
        assert m[("edgefer_stage_latency_seconds_bucket", (("le", "+Inf"), ("stage", stage)))] == 3
    assert m[("edgefer_build_info", (("version", __import__("edgefer").__version__),))] == 1
    assert m[("process_resident_memory_bytes", ())] > 10e6


def test_runner_status_snapshot_becomes_metrics(sink):
    sink.status({
        "state": "camera_unavailable", "frames_dropped": {"corrupt": 4, "shape": 2}, "frames_skipped": 17,
        "source_reconnects": 3, "source_stalls": 1, "source_open_failures": 5, "non_finite": 0,
        "mqtt_buffer_depth": 42, "mqtt_dropped": 9, "mqtt_connected": False, "sink_errors": {"jsonl": 2},
        "uptime_s": 12.5, "stage_ms": {"detect": 3.0}, "source_error": "no /dev/video0",  # ignored
    })
    m = scrape(sink)
    assert m[("edgefer_state", (("state", "camera_unavailable"),))] == 1
    assert m[("edgefer_frames_dropped_total", (("reason", "corrupt"),))] == 4
    assert m[("edgefer_frames_dropped_total", (("reason", "shape"),))] == 2
    assert m[("edgefer_frames_skipped_total", ())] == 17
    assert m[("edgefer_source_reconnects_total", ())] == 3
    assert m[("edgefer_source_stalls_total", ())] == 1
    assert m[("edgefer_source_open_failures_total", ())] == 5
    assert m[("edgefer_mqtt_buffer_depth", ())] == 42
    assert m[("edgefer_mqtt_dropped_total", ())] == 9
    assert m[("edgefer_mqtt_connected", ())] == 0
    assert m[("edgefer_sink_errors_total", (("sink", "jsonl"),))] == 2

    # the next snapshot replaces the last; the runner's missing MQTT values (None) and junk are ignored
    sink.status({"state": "running", "frames_dropped": 7, "frames_skipped": 20, "source_reconnects": 4,
                 "mqtt_buffer_depth": None, "mqtt_dropped": "many", "mqtt_connected": None})
    m = scrape(sink)
    assert m[("edgefer_state", (("state", "running"),))] == 1
    assert ("edgefer_state", (("state", "camera_unavailable"),)) not in m
    assert m[("edgefer_frames_dropped_total", (("reason", "all"),))] == 7
    assert m[("edgefer_frames_skipped_total", ())] == 20
    assert m[("edgefer_source_reconnects_total", ())] == 4
    assert not any(name.startswith("edgefer_mqtt") for name, _ in m)


def test_events_by_type(sink):
    for t in ("track_started", "emotion_changed", "emotion_changed", "track_ended"):
        sink.event({"type": t, "track_id": 1})
    sink.event({"track_id": 2})
    m = scrape(sink)
    assert m[("edgefer_events_total", (("type", "emotion_changed"),))] == 2
    assert m[("edgefer_events_total", (("type", "track_started"),))] == 1
    assert m[("edgefer_events_total", (("type", "unknown"),))] == 1


def test_label_values_are_capped(sink, results):
    r = results[0]
    for i in range(100):
        sink.publish(FrameResult(frame=r.frame, faces=[], timings_ms={f"stage{i}": 1.0}))
    m = scrape(sink)
    stages = {dict(labels)["stage"] for name, labels in m if name == "edgefer_stage_latency_seconds_count"}
    assert len(stages) == 33 and "other" in stages


def test_own_registry_never_the_global_one(results):
    a, b = MetricsSink(), MetricsSink()  # two in one process: no duplicate-timeseries error
    a.publish(results[0])
    assert a.frames._value.get() == 1 and b.frames._value.get() == 0
    assert REGISTRY.get_sample_value("edgefer_frames_total") is None
    assert a.server is None and a.address is None  # disabled by default: no socket
    a.close()
    b.close()


def test_credentials_and_401(tmp_path):
    pw = tmp_path / "metrics.pw"
    pw.write_text("scrape-me\n")
    pw.chmod(0o600)
    sink = MetricsSink(MetricsConfig(enabled=True, port=0, username="prom", password_file=pw))
    try:
        host, port = sink.address
        for auth in (None, ("prom", "nope"), ("root", "scrape-me")):
            req = urllib.request.Request(f"http://{host}:{port}/metrics")
            if auth:
                req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=10)
            assert e.value.code == 401 and e.value.headers["WWW-Authenticate"].startswith("Basic")
        assert ("edgefer_frames_total", ()) in scrape(sink, auth=("prom", "scrape-me"))
    finally:
        sink.close()
    with pytest.raises(ConfigError, match="metrics.host"):
        MetricsSink(MetricsConfig.model_construct(enabled=True, host="0.0.0.0", port=0, username=None))


def test_close_frees_the_port(sink):
    host, port = sink.address
    sink.close()
    again = MetricsSink(MetricsConfig(enabled=True, host=host, port=port))
    assert again.address == (host, port)
    again.close()


def test_the_runner_feeds_the_metrics(photos_dir, yunet_path):
    """The real run loop drives this sink: frames, faces, stage latencies from publish, and the
    runner's counters from its status snapshots (endpoint off: read from the sink's registry)."""
    import threading

    from edgefer.config import Config
    from edgefer.edge.runner import build_runner

    config = Config.model_validate({"source": {"uri": str(photos_dir / "neutral")},
                                    "detector": {"model": str(yunet_path)}, "service": {"max_frames": 4}})
    runner = build_runner(config)
    try:
        runner.run(threading.Event())
        sink = next(s for s in runner.sinks if s.name == "metrics")
        value = sink.registry.get_sample_value
        assert value("edgefer_frames_total") == runner.frames == 4
        assert value("edgefer_faces_total") == runner.faces
        assert value("edgefer_stage_latency_seconds_count", {"stage": "detect"}) == 4
        snap = runner.snapshot()
        assert value("edgefer_frames_skipped_total") == snap["frames_skipped"]
        assert value("edgefer_source_reconnects_total") == snap["source_reconnects"]
        assert value("edgefer_state", {"state": snap["state"]}) == 1
    finally:
        runner.close()
