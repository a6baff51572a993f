"""The run loop: bounded work per frame, skipped frames counted, heartbeats without faces."""

from __future__ import annotations

import statistics
import threading
import time

import cv2
import numpy as np
import pytest
from standins import GeneratedSource, RecordingSink, StandInPipeline

from edgefer.edge.runner import Runner
from edgefer.edge.sources.capture import Capture


def run_for(runner: Runner, seconds: float) -> None:
    stop = threading.Event()
    t = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    t.start()
    time.sleep(seconds)
    stop.set()
    t.join(5)
    assert not t.is_alive()


def test_inference_slower_than_capture_skips_and_keeps_latency_flat():
    cap = Capture(lambda: GeneratedSource(fps=100), live=True).start()
    sink = RecordingSink()
    runner = Runner(cap, StandInPipeline(delay_s=0.05), sinks=[sink], stats_interval_s=0.2)
    latencies = []
    orig = runner.step

    def step(frame):
        r = orig(frame)
        latencies.append(runner.latency_ms)
        return r

    runner.step = step
    run_for(runner, 3.0)
    runner.close()
    s = cap.stats
    assert runner.frames >= 30 and s.skipped >= 3 * runner.frames, (runner.frames, s)
    assert s.captured - s.delivered - s.skipped in (0, 1), "every captured frame is delivered, skipped or pending"
    snap = runner.snapshot()
    assert snap["frames_skipped"] == s.skipped
    # Flat: one frame in flight, so latency is about one inference plus one capture interval. A queue
    # would add ~50 ms with every frame (seconds by the end). One stall of the shared 2-core CI
    # machine is not a queue (seen once in a full-suite run: 162 ms in one frame of ~55, all others
    # 52-60 ms), so the bound is on the 95th percentile, and the median must not drift.
    first, last = latencies[5:15], latencies[-10:]
    lat = sorted(latencies[5:])
    assert lat[int(0.95 * (len(lat) - 1))] < 50 + 10 + 60, lat
    assert abs(statistics.median(last) - statistics.median(first)) < 25


def test_no_faces_heartbeats_continue():
    cap = Capture(lambda: GeneratedSource(fps=30), live=True).start()
    sink = RecordingSink()
    runner = Runner(cap, StandInPipeline(faces=0), sinks=[sink], stats_interval_s=0.1)
    run_for(runner, 1.5)
    runner.close()
    assert runner.frames > 20 and runner.faces == 0
    times = [t for t, _ in sink.statuses]
    assert len(times) >= 10 and max(b - a for a, b in zip(times, times[1:])) < 0.35
    last = sink.statuses[-1][1]
    assert last["state"] in ("streaming", "stopped") and last["frames"] == runner.frames and last["faces"] == 0


def test_a_failing_sink_is_counted_and_the_loop_goes_on():
    class Broken(RecordingSink):
        name = "broken"

        def publish(self, result):
            raise RuntimeError("boom")

    src = GeneratedSource(n=20)
    src.live = False
    cap = Capture(lambda: src, live=False).start()
    good = RecordingSink()
    runner = Runner(cap, StandInPipeline(), sinks=[Broken(), good])
    runner.run(threading.Event())  # returns at the end of the "file"
    runner.close()
    assert runner.frames == 20 and len(good.results) == 20
    assert runner.sink_errors == {"broken": 20}


def test_max_frames():
    cap = Capture(lambda: GeneratedSource(fps=200), live=True).start()
    runner = Runner(cap, StandInPipeline(), max_frames=7)
    runner.run(threading.Event())
    runner.close()
    assert runner.frames == 7


def grid(photos: list[np.ndarray], n: int, cols: int = 10, size: int = 128) -> np.ndarray:
    rows = 5
    canvas = np.full((rows * size, cols * size, 3), 90, np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        canvas[r * size:(r + 1) * size, c * size:(c + 1) * size] = cv2.resize(photos[k % len(photos)], (size, size))
    return canvas


@pytest.mark.slow
def test_fifty_faces_at_most_max_faces_processed(photos_dir, yunet_path):
    """Real detector and classifier on a frame with 50 faces: 8 classified, and the frame costs
    about what a frame with 8 faces costs (detection scales with pixels, classification is capped)."""
    from edgefer.edge.pipeline import build_pipeline

    photos = [cv2.imread(str(p)) for p in sorted(photos_dir.glob("*/*.jpg"))[:60]]
    many, few = grid(photos, 50), grid(photos, 8)
    pipe = build_pipeline(detector=yunet_path, max_faces=8, input_width=1280)
    cap = Capture(lambda: None, live=True)  # not started: the runner only reads its stats here
    runner = Runner(cap, pipe, sinks=[RecordingSink()])

    def timed(img: np.ndarray) -> tuple[float, object]:
        from edgefer.types import Frame

        times, res = [], None
        for i in range(5):
            t0 = time.perf_counter()
            res = runner.step(Frame(img, i, time.time(), time.monotonic()))
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times), res

    ms_few, _ = timed(few)
    ms_many, res = timed(many)
    pipe.close()
    assert res.faces_detected >= 40, res.faces_detected
    assert len(res.faces) <= 8
    assert runner.faces_over_limit >= 5 * (40 - 8)
    print(f"\n50-face frame: {ms_many:.1f} ms, 8-face frame: {ms_few:.1f} ms, detected {res.faces_detected}")
    assert ms_many < 1.5 * ms_few + 15, (ms_many, ms_few)


def test_bad_frames_counted_end_to_end():
    import random

    from standins import BAD_KINDS

    bad = {i: BAD_KINDS[k % len(BAD_KINDS)] for k, i in enumerate(random.Random(1).sample(range(1, 1000), 100))}
    src = GeneratedSource(n=1000, bad=bad)
    src.live = False
    cap = Capture(lambda: src, live=False).start()
    sink = RecordingSink()
    runner = Runner(cap, StandInPipeline(), sinks=[sink])
    runner.run(threading.Event())
    runner.close()
    snap = sink.statuses[-1][1]
    assert runner.frames == 900 and snap["frames"] == 900
    assert snap["frames_dropped_total"] == 100 == sum(snap["frames_dropped"].values())


@pytest.mark.parametrize("sequence", [False, True], ids=["stills", "sequence"])
def test_photo_folder_stills_are_tracked_alone_unless_a_sequence(tmp_path, photos_dir, pipeline, sequence):
    """Real photos through the real pipeline and tracker: each still starts a fresh tracker (its
    tracks end at the next photo), so smoothed values are the photo's own; a sequence is tracked."""
    import shutil

    from edgefer.edge.sources.files import ImageFolderSource
    from edgefer.edge.tracker import Tracker

    for i, cls in enumerate(["happy", "angry", "surprise"]):
        shutil.copy(sorted((photos_dir / cls).glob("*.jpg"))[0], tmp_path / f"{i}.jpg")
    cap = Capture(lambda: ImageFolderSource(tmp_path, sequence=sequence), live=False).start()
    sink = RecordingSink()
    runner = Runner(cap, pipeline, Tracker(), [sink])
    runner.run(threading.Event())
    cap.stop()
    faces = [r.faces for r in sink.results]
    assert [len(f) for f in faces] == [1, 1, 1]
    faces = [f[0] for f in faces]
    assert [f.track_id for f in faces] == [1, 1, 1]
    blended = [not np.array_equal(f.smoothed_probabilities, f.probabilities) for f in faces]
    types = [e["type"] for e in sink.events]
    if sequence:
        assert blended == [False, True, True] and types.count("track_started") == 1
        assert "track_ended" not in types
    else:
        assert blended == [False, False, False]
        assert types == ["track_started", "track_ended", "track_started", "track_ended", "track_started"]


def test_a_looping_file_keeps_one_stream_clock(face_clip):
    """Each pass of a looping clip continues the stream clock (the tracker's time never goes back),
    and every frame is stamped with the real time it was read (`Frame.received`, for ages)."""
    from edgefer.config import load_config
    from edgefer.edge.runner import open_capture

    path, where = face_clip
    cap = open_capture(load_config(None, {"source": {"uri": str(path), "loop": True}})).start()
    frames = []
    try:
        while len(frames) < 2 * len(where) + 5:
            f = cap.get(timeout=5)
            assert f is not None
            frames.append(f)
    finally:
        cap.stop()
    assert [f.index for f in frames[len(where) - 1:len(where) + 1]] == [len(where) - 1, 0], "it looped"
    steps = [b.monotonic - a.monotonic for a, b in zip(frames, frames[1:])]
    assert steps == pytest.approx([1 / 30] * len(steps), abs=1e-6)
    got = [f.received for f in frames]
    assert got == sorted(got) and all(g <= time.monotonic() for g in got)


class ClosedSink(RecordingSink):
    """Refuses anything once closed, as MqttSink does ('MqttSink is closed')."""

    def publish(self, result) -> None:
        if self.closed:
            raise RuntimeError("ClosedSink is closed")
        super().publish(result)


def test_a_frame_that_finishes_after_the_stop_reaches_no_closed_sink():
    """The service's stop: the run loop is inside a slow inference when the sinks are closed
    (runner.close from another thread, as service.py does); the frame that then finishes is not
    published to them (seen in the device lab under TCG: a traceback at every SIGTERM)."""
    cap = Capture(lambda: GeneratedSource(fps=30), live=True).start()
    pipe = StandInPipeline(delay_s=0.0)
    sink = ClosedSink()
    runner = Runner(cap, pipe, sinks=[sink], stats_interval_s=0.2)
    stop = threading.Event()
    t = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while runner.frames < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    pipe.hang.set()  # the next frame is held inside `process`
    time.sleep(0.2)
    stop.set()
    runner.close(models=False)
    published = len(sink.results)
    pipe.unhang.set()  # it finishes now, after its sinks closed
    t.join(5)
    assert not t.is_alive()
    assert sink.closed and len(sink.results) == published
    assert runner.sink_errors == {}, runner.sink_errors
