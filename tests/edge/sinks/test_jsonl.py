"""JSON lines sink: one object per frame; a full disk is counted, never fatal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from edgefer.edge.sinks.jsonl import JsonlSink
from edgefer.errors import UserError
from edgefer.types import Face, FaceResult, Frame, FrameResult


def result(i: int, faces: int = 1) -> FrameResult:
    frame = Frame(np.zeros((8, 8, 3), np.uint8), i, time.time(), time.monotonic(), "test")
    fr = [FaceResult(Face(np.array([1, 2, 3, 4], np.float32), 0.9, np.zeros((5, 2), np.float32)),
                     np.full(7, 1 / 7, np.float32), np.zeros(7, np.float32)) for _ in range(faces)]
    return FrameResult(frame, fr)


def test_lines_in_a_file(tmp_path):
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(str(path), include_empty=False)
    for i in range(5):
        sink.publish(result(i, faces=i % 2))
    sink.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [d["frame"] for d in lines] == [1, 3]
    assert lines[0]["faces"][0]["box"] == [1.0, 2.0, 3.0, 4.0]
    assert sink.lines == 2 and sink.write_errors == 0
    assert oct(path.stat().st_mode & 0o777) == "0o640"


def test_disk_full_is_counted_not_fatal():
    sink = JsonlSink("/dev/full")
    for i in range(100):
        sink.publish(result(i))
    assert sink.write_errors == 100 and sink.lines == 0
    assert sink.errors_by_kind == {"ENOSPC": 100}
    assert sink.stats() == {"jsonl_lines": 0, "jsonl_write_errors": 100}
    sink.close()


def test_unwritable_path_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="cannot open for writing"):
        JsonlSink(str(tmp_path / "missing" / "out.jsonl"))


def test_stdout_and_closed_pipe(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from test_jsonl import result\nfrom edgefer.edge.sinks.jsonl import JsonlSink\n"
        "s = JsonlSink('-')\nfor i in range(2000):\n    s.publish(result(i))\n"
        "print('errors', s.write_errors, 'lines', s.lines, file=sys.stderr)\n")
    proc = subprocess.run(f"{sys.executable} {script} | head -n 3", shell=True, capture_output=True, text=True, timeout=60)
    assert len(proc.stdout.splitlines()) == 3
    # The reader went away: the writer counted the failed lines (EPIPE) and finished normally.
    assert "errors" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
