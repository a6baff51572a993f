"""`scripts/distill_on_gpu.py`, the one-call GPU distillation of stages 12 and 13 in docs/training-history.md,
kept working between the sessions that have a GPU: its smoke mode runs every step (teacher, student
distilling it from the embedded model, the float16 teacher weights, the kept files) on the CPU, and the
kept teacher weights serve later calls (`--teacher`), one of them training two students at once (`--seeds`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the training extra (torch) is not installed")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "distill_on_gpu.py"


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_smoke_run_keeps_student_and_teacher_and_reuses_the_teacher(tmp_path, small_slice, yunet_path):
    from edgefer.train.checkpoint import load_checkpoint

    base = ("--data", small_slice, "--detector", yunet_path, "--device", "cpu", "--threads", "2", "--holdout", "0.25")
    common = (*base, "--smoke", "2")
    r = run(*common, "--runs", tmp_path / "runs", "--keep", tmp_path / "keep")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    kept = sorted(p.name for p in (tmp_path / "keep").iterdir())
    assert kept == ["student-curves.png", "student-history.json", "student-last.pt", "teacher-curves.png",
                    "teacher-history.json", "teacher-weights-fp16.pt"]
    teacher, ck = load_checkpoint(tmp_path / "keep" / "teacher-weights-fp16.pt")
    assert teacher.widths == (64, 128, 256, 512) and ck["config"]["holdout"] == 0.25
    student, ck = load_checkpoint(tmp_path / "keep" / "student-last.pt")
    assert student.widths == (32, 64, 128, 256) and ck["config"]["distill"] == 0.5 and ck["step"] == 2

    r = run(*common, "--runs", tmp_path / "runs2", "--keep", tmp_path / "keep2", "--distill", "0.8",
            "--teacher", tmp_path / "keep" / "teacher-weights-fp16.pt")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert not (tmp_path / "runs2" / "teacher" / "last.pt").exists()  # no teacher trained this time
    _, ck = load_checkpoint(tmp_path / "keep2" / "student-last.pt")
    assert ck["config"]["distill"] == 0.8 and ck["config"]["teacher"].endswith("teacher-weights-fp16.pt")

    # two students at once, each in its own process with its own seed and log, for a fixed number of epochs
    r = run(*base, "--runs", tmp_path / "runs3", "--keep", tmp_path / "keep3",
            "--teacher", tmp_path / "keep" / "teacher-weights-fp16.pt", "--distill-intensity", "0.9",
            "--seeds", "2", "--epochs", "1")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    kept = sorted(p.name for p in (tmp_path / "keep3").iterdir())
    assert kept == ["student-curves.png", "student-history.json", "student-last.pt", "student-s2-curves.png",
                    "student-s2-history.json", "student-s2-last.pt", "student-s2.log", "student.log"]
    cks = [load_checkpoint(tmp_path / "keep3" / f)[1] for f in ("student-last.pt", "student-s2-last.pt")]
    assert [ck["config"]["seed"] for ck in cks] == [20261122, 20261123]
    assert all(ck["config"]["distill_intensity"] == 0.9 and ck["epoch"] == 1 for ck in cks)
    assert "distilling" in (tmp_path / "keep3" / "student-s2.log").read_text()
    w = "features.0.0.weight"
    assert not torch.equal(cks[0]["model"][w], cks[1]["model"][w])


def test_epoch_plan_fits_the_time_left():
    from distill_on_gpu import EPOCH_OVERHEAD, MAX_EPOCHS, plan_epochs

    t, s = plan_epochs(200, 0.010, 0.012, 224, train_teacher=True)  # 2.4 s and 2.9 s an epoch with the margin
    assert (t, s) == (37, 38)  # 45% of 200 s to the teacher, the rest to the student
    assert t * 0.010 * 224 * EPOCH_OVERHEAD + s * 0.012 * 224 * EPOCH_OVERHEAD <= 200
    assert plan_epochs(10_000, 0.001, 0.001, 224, train_teacher=True) == (MAX_EPOCHS, MAX_EPOCHS)
    assert plan_epochs(400, 0.0, 0.012, 224, train_teacher=False)[0] == 0  # a carried teacher: all to the student
    assert plan_epochs(1, 0.5, 0.5, 224, train_teacher=True) == (1, 1)  # nothing fits: one epoch each, not zero


def test_an_earlier_calls_runs_are_refused(tmp_path, small_slice, yunet_path):
    (tmp_path / "runs" / "student").mkdir(parents=True)
    r = run("--data", small_slice, "--detector", yunet_path, "--runs", tmp_path / "runs", "--keep", tmp_path / "k")
    assert r.returncode == 2 and "not empty" in r.stderr and "Traceback" not in r.stderr


def test_settings_that_cannot_be_planned_are_refused(tmp_path, small_slice, yunet_path):
    common = ("--data", small_slice, "--detector", yunet_path, "--runs", tmp_path / "runs", "--keep", tmp_path / "k")
    for extra, says in ((("--seeds", "3"), "needs --epochs"), (("--epochs", "5"), "needs --teacher"),
                        (("--distill-intensity", "1.5"), "--distill-intensity in [0, 1]")):
        r = run(*common, *extra)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "k").exists()
