"""Supervised capture: absent camera, stalls, corrupt frames, skipping, clock jumps."""

from __future__ import annotations

import datetime as dt
import random
import time

import pytest
import time_machine
from standins import BAD_KINDS, AppearingCamera, GeneratedSource, bad_image, make_image

from edgefer.edge.sources.capture import Capture, CaptureStatus, FrameValidator, backoff_delays
from edgefer.types import Frame


def wait_for(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def drain(cap: Capture, seconds: float) -> list[Frame]:
    frames, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        f = cap.get(timeout=0.05)
        if f is not None:
            frames.append(f)
    return frames


def test_backoff_doubles_up_to_the_cap():
    gen = backoff_delays(0.5, 30.0)
    assert [next(gen) for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_camera_absent_at_start_then_appears():
    camera = AppearingCamera()
    statuses = []
    cap = Capture(camera, live=True, name="cam", backoff_initial_s=0.1, backoff_max_s=0.4,
                  on_status=statuses.append).start()
    try:
        assert wait_for(lambda: cap.status is CaptureStatus.UNAVAILABLE, 2.0)
        assert cap.get(timeout=1.5) is None
        # Retries back off: 0.1, 0.2, 0.4, 0.4 ... never a storm.
        gaps = [b - a for a, b in zip(camera.attempts, camera.attempts[1:])]
        assert len(camera.attempts) >= 4
        assert all(g >= 0.09 for g in gaps) and max(gaps) <= 0.6
        assert gaps[2] > gaps[0] * 1.5
        camera.appear.set()
        assert cap.get(timeout=2.0) is not None
        assert cap.status is CaptureStatus.STREAMING
        assert statuses[:2] == [CaptureStatus.UNAVAILABLE, CaptureStatus.STREAMING]
        assert cap.stats.opens == 1 and cap.stats.open_failures == len(camera.attempts) - 1
    finally:
        cap.stop()


def test_stall_detected_reopened_and_frames_resume():
    made = []

    def factory():
        src = GeneratedSource(fps=200, stall_at=30 if not made else None)
        made.append(src)
        return src

    statuses = []
    cap = Capture(factory, live=True, stall_timeout_s=0.5, backoff_initial_s=0.1, on_status=statuses.append).start()
    try:
        assert len(drain(cap, 0.3)) > 10
        t0 = time.monotonic()
        assert wait_for(lambda: cap.status is CaptureStatus.STALLED, 3.0)
        detected = time.monotonic() - t0
        assert detected < 0.5 + 0.5, f"stall detected after {detected:.2f}s"
        assert len(drain(cap, 1.0)) > 10, "frames resume after the reopen"
        assert cap.status is CaptureStatus.STREAMING
        assert cap.stats.stalls == 1 and cap.stats.reconnects == 1
        assert not made[0].closed
        made[0].release.set()  # the blocked read() finally returns ...
        assert wait_for(lambda: made[0].closed, 1.0), "... and the abandoned reader closes its source"
        assert statuses == [CaptureStatus.STREAMING, CaptureStatus.STALLED, CaptureStatus.STREAMING]
    finally:
        cap.stop()


def test_ten_percent_bad_frames_dropped_and_counted():
    rng = random.Random(0)
    bad_idx = rng.sample(range(1, 1000), 100)
    bad = {i: BAD_KINDS[k % len(BAD_KINDS)] for k, i in enumerate(bad_idx)}
    src = GeneratedSource(n=1000, bad=bad)
    src.live = False
    cap = Capture(lambda: src, live=False).start()
    got = []
    try:
        while not cap.ended:
            f = cap.get(timeout=1.0)
            if f is not None:
                got.append(f.index)
    finally:
        cap.stop()
    assert cap.stats.captured == 1000
    assert cap.stats.dropped_invalid == 100 == cap.validator.dropped
    assert len(got) == 900 and set(got) == set(range(1000)) - set(bad)
    assert cap.stats.skipped == 0
    assert sum(cap.validator.reasons.values()) == 100 and len(cap.validator.reasons) >= 4


def test_validator_reasons():
    v = FrameValidator(min_size=16)
    good = Frame(make_image(1), 0, 0.0, 0.0)
    assert v.accept(good)
    for kind in BAD_KINDS:
        assert not v.accept(Frame(bad_image(kind), 0, 0.0, 0.0)), kind
    assert v.problem(Frame(make_image(1, 8, 8), 0, 0.0, 0.0)) == "too_small"
    assert v.dropped == len(BAD_KINDS)


def test_a_folder_of_stills_may_mix_sizes():
    """Only frames of one stream must keep their size; unrelated stills may differ."""
    big, small = Frame(make_image(1), 0, 0.0, 0.0), Frame(make_image(1, 40, 30), 1, 0.0, 0.0)
    stream, stills = FrameValidator(), FrameValidator(same_size=False)
    assert stream.accept(big) and not stream.accept(small) and stream.reasons == {"size_changed": 1}
    assert stills.accept(big) and stills.accept(small) and stills.dropped == 0


def test_live_source_keeps_only_the_newest_frame():
    cap = Capture(lambda: GeneratedSource(fps=400), live=True).start()
    try:
        latencies = []
        for _ in range(25):
            f = cap.get(timeout=1.0)
            assert f is not None
            time.sleep(0.02)  # inference slower than capture
            latencies.append(time.monotonic() - f.monotonic)
    finally:
        cap.stop()
    s = cap.stats
    assert s.skipped > 25, s
    assert s.captured >= s.delivered + s.skipped
    # Latency stays flat: one slow step, never a backlog.
    assert max(latencies[5:]) < 0.02 + 0.05


def test_file_end_and_loop():
    def factory():
        src = GeneratedSource(n=5)
        src.live = False
        return src

    cap = Capture(factory, live=False).start()
    frames = []
    while not cap.ended:
        f = cap.get(timeout=1.0)
        if f:
            frames.append(f)
    cap.stop()
    assert [f.index for f in frames] == [0, 1, 2, 3, 4] and cap.status is CaptureStatus.STOPPED

    cap = Capture(factory, live=False, loop=True).start()
    try:
        frames = [cap.get(timeout=1.0) for _ in range(12)]
    finally:
        cap.stop()
    assert all(frames) and cap.stats.opens >= 3


@pytest.mark.parametrize("hours", [2, -2])
def test_wall_clock_jump_causes_no_stall_or_reconnect(hours):
    cap = Capture(lambda: GeneratedSource(fps=100), live=True, stall_timeout_s=0.5).start()
    try:
        assert len(drain(cap, 0.3)) > 5
        with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours), tick=True):
            frames = drain(cap, 1.0)
        frames += drain(cap, 0.3)
    finally:
        cap.stop()
    assert len(frames) > 50
    assert cap.stats.stalls == 0 and cap.stats.reconnects == 0 and cap.stats.open_failures == 0


def test_stop_returns_even_when_read_is_blocked():
    src = GeneratedSource(stall_at=0)
    cap = Capture(lambda: src, live=True, stall_timeout_s=60).start()
    time.sleep(0.1)
    t0 = time.monotonic()
    cap.stop(timeout=0.5)
    assert time.monotonic() - t0 < 1.0
    assert cap.status is CaptureStatus.STOPPED


def test_file_error_ends_without_replay():
    class Failing(GeneratedSource):
        live = False

        def read(self):
            if self.i == 3:
                raise OSError("I/O error")
            return super().read()

    opened = []

    def factory():
        opened.append(Failing(n=10))
        return opened[-1]

    cap = Capture(factory, live=False).start()
    frames = []
    while not cap.ended:
        f = cap.get(timeout=1.0)
        if f:
            frames.append(f.index)
    cap.stop()
    assert frames == [0, 1, 2] and len(opened) == 1 and cap.stats.source_errors == 1
