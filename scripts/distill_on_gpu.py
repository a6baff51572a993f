"""Distil a wide teacher into the default model in one call on a lent GPU machine, inside a time budget
(stages 12 and 13 of docs/training-history.md ran through it).

1. a wide teacher (widths 64,128,256,512, depths 2,2,2,2; about 6x the student's cost) trained from
   scratch on the Training rows with deployment framing and a weight average;
2. the student: the embedded model's network, started from the embedded model (1.2.0 in stages 12
   and 13; 1.3.0 since), distilling that teacher's flip-averaged outputs on every augmented batch
   (stage 3's recipe with another teacher).

The epochs of both are fixed before either schedule starts, from a timing probe of a few steps of
each (never from any accuracy), so that the whole call ends inside `--budget` seconds; then the
student's checkpoint, both histories and curves, and the teacher's delivered weights (float16) are
copied to `--keep`. `--teacher` takes such weights from an earlier call instead of training a teacher.
`--seeds N` trains N students at once (seeds seed, seed+1, ...; one process each, the CPU threads shared),
each with its own log; `--epochs` then fixes their epochs (the probe times one student alone).
The recipe is `edgefer.train.recipe.train`, as `edgefer train` runs it, with cuDNN's autotuner on.

    python scripts/distill_on_gpu.py --data fer2013_trainval.npz --detector yunet.onnx \\
        --runs /tmp/runs --keep $OUT --device cuda --budget 540
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

T0 = time.monotonic()
TEACHER = dict(widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), lr=0.1, ema=0.999, realigned_frac=0.5)
STUDENT = dict(lr=0.03, ema=0.999, realigned_frac=0.5, distill=0.5)
MAX_EPOCHS = 60  # stage 1's and stage 3's cycles: no more is asked of either
RESERVE_S = 45.0  # of the budget, for what the probe does not time: start-up of each run, copying
EPOCH_OVERHEAD = 1.08  # margin for an epoch's validation pass and checkpoint on top of its steps (a guess;
# the probe errs long anyway: in stage 12b it timed 16.3 ms a step, the run took 9.4)
TEACHER_SHARE = 0.45  # of the time left; the student (the product) gets the rest


def elapsed() -> float:
    return time.monotonic() - T0


def plan_epochs(left_s: float, teacher_step_s: float, student_step_s: float, steps_per_epoch: int,
                train_teacher: bool) -> tuple[int, int]:
    """Epochs of the teacher (0 when it is not trained) and of the student that fit in `left_s`
    seconds, each between 1 and MAX_EPOCHS (1 even when nothing fits: the run then overruns and says so)."""
    t_epoch = teacher_step_s * steps_per_epoch * EPOCH_OVERHEAD
    s_epoch = student_step_s * steps_per_epoch * EPOCH_OVERHEAD
    t_epochs = max(1, min(MAX_EPOCHS, int(TEACHER_SHARE * left_s / t_epoch))) if train_teacher else 0
    s_epochs = max(1, min(MAX_EPOCHS, int((left_s - t_epochs * t_epoch) / s_epoch)))
    return t_epochs, s_epochs


def copy_caches(src: Path, dst: Path) -> None:
    """The framed training crops (`realigned-*.npz`, keyed by the rows) of one run folder into another."""
    dst.mkdir(parents=True, exist_ok=True)
    for c in src.glob("realigned-*.npz"):
        if not (dst / c.name).exists():
            shutil.copy(c, dst / c.name)


def seconds_per_step(faces, out: Path, cfg, cache_from: Path | None = None) -> float:  # type: ignore[no-untyped-def]
    """Time per optimizer step of `cfg` on this machine: two short runs, 10 and 50 steps, differenced
    (what both share, loading and one validation pass, cancels), after a first run that frames the
    crops (cached: every later run copies them). An epoch must have 50 steps or more (FER-2013's
    Training rows make 224), or both timed runs stop at the epoch's end and the difference is noise."""
    from edgefer.train.recipe import train

    times = []
    for steps in (2, 10, 50):  # the first run frames the crops and warms the GPU up; it is not timed
        d = out / f"probe{steps}"
        if cache_from is not None:
            copy_caches(cache_from, d)
        t = time.monotonic()
        train(faces, d, replace(cfg, epochs=1, max_steps=steps), progress=False)
        times.append(time.monotonic() - t)
        cache_from = d
    return max(1e-3, (times[2] - times[1]) / 40)


def student_dirs(runs: Path, seeds: int) -> list[Path]:
    """The run folders of `seeds` students: student/ for the first (the one a ship rule names), then
    student-s2/, student-s3/, ..."""
    return [runs / "student"] + [runs / f"student-s{i}" for i in range(2, seeds + 1)]


def _train_logged(data: Path, out: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    """One student in a process of its own, its log in `out`.log (spawned: the parent holds CUDA)."""
    from edgefer.data import load_faces
    from edgefer.train.recipe import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True,
                        handlers=[logging.FileHandler(out.with_suffix(".log"))])
    train(load_faces(data), out, cfg, progress=False)


def train_students(data: Path, outs: list[Path], cfgs: list) -> None:  # type: ignore[type-arg]
    """Train one student per folder at once, each in a spawned process; a failed one fails the call."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_train_logged, args=(data, o, c)) for o, c in zip(outs, cfgs)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join()
    failed = [o.name for o, pr in zip(outs, procs) if pr.exitcode != 0]
    if failed:
        raise RuntimeError(f"student runs failed: {failed} (their logs are beside their folders)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--detector", type=Path, required=True)
    ap.add_argument("--runs", type=Path, required=True, help="an empty or new folder for the runs")
    ap.add_argument("--keep", type=Path, required=True, help="folder the results are copied to")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds for the whole script")
    ap.add_argument("--threads", type=int, default=8, help="CPU threads for augmentation")
    ap.add_argument("--distill", type=float, default=STUDENT["distill"], help="the student's weight on the teacher")
    ap.add_argument("--teacher", type=Path,
                    help="a teacher trained before (teacher-weights-fp16.pt of an earlier call): no teacher is trained")
    ap.add_argument("--holdout", type=float, default=0.0,
                    help="validate both runs on this share of Training held out (edgefer train --holdout), to choose "
                         "settings without PublicTest")
    ap.add_argument("--distill-intensity", type=float, default=None,
                    help="the intensity head's weight on the teacher (default: --distill)")
    ap.add_argument("--seeds", type=int, default=1, help="students trained at once, seeds seed, seed+1, ...")
    ap.add_argument("--epochs", type=int, default=0,
                    help="the students' epochs (0: planned by the probe, which times one student alone)")
    ap.add_argument("--smoke", type=int, default=0, help="tests: this many steps per run, one epoch each")
    args = ap.parse_args()
    if not 0 <= args.holdout < 1 or not 0 <= args.distill <= 1 or not 0 <= (args.distill_intensity or 0) <= 1:
        ap.error("--holdout must be in [0, 1), --distill and --distill-intensity in [0, 1]")
    if args.seeds < 1 or args.epochs < 0 or (args.epochs and args.teacher is None):
        ap.error("--seeds must be 1 or more; --epochs needs --teacher (a teacher trained here is planned by the probe)")
    if args.seeds > 1 and not (args.epochs or args.smoke):
        ap.error("--seeds above 1 needs --epochs: the probe's plan is for one student alone")
    if args.runs.exists() and any(args.runs.iterdir()):
        ap.error(f"--runs {args.runs}: not empty (an earlier call's runs would be mistaken for this one's)")

    import numpy as np
    import torch

    from edgefer.cli.train import load_template
    from edgefer.data import load_faces
    from edgefer.errors import UserError
    from edgefer.train.checkpoint import save_fp16_weights
    from edgefer.train.config import TrainConfig
    from edgefer.train.realign import usable_cores
    from edgefer.train.recipe import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    torch.backends.cudnn.benchmark = True
    runs, keep = args.runs, args.keep
    try:
        faces = load_faces(args.data)
        base = TrainConfig(threads=args.threads, detector=str(args.detector), template=load_template(None)["points"],
                           device=args.device, holdout=args.holdout)
        embedded = Path(__import__("edgefer").__file__).parent / "models" / "edgefer-fer-v1.onnx"
        t_cfg = replace(base, **TEACHER)  # type: ignore[arg-type]
        s_cfg = replace(base, init=str(embedded), distill_intensity=args.distill_intensity,  # type: ignore[arg-type]
                        **{**STUDENT, "distill": args.distill})
        teacher = args.teacher or runs / "teacher" / "last.pt"
        train_teacher = args.teacher is None
        keep.mkdir(parents=True, exist_ok=True)

        if args.smoke:
            t_epochs, s_epochs = (1 if train_teacher else 0), 1
            t_cfg, s_cfg = replace(t_cfg, max_steps=args.smoke), replace(s_cfg, max_steps=args.smoke)
        elif args.epochs:  # the teacher is carried: frame the crops once (a 2-step run), no timing
            t_epochs, s_epochs = 0, args.epochs
            train(faces, runs / "frame", replace(s_cfg, epochs=1, max_steps=2, teacher=str(teacher)), progress=False)
            copy_caches(runs / "frame", runs / "teacher")
        else:
            if train_teacher:
                t_step = seconds_per_step(faces, runs / "probe-teacher", t_cfg)
                probe_teacher, framed = runs / "probe-teacher" / "probe50" / "last.pt", runs / "probe-teacher" / "probe2"
            else:
                t_step, probe_teacher, framed = 0.0, teacher, None
            s_step = seconds_per_step(faces, runs / "probe-student", replace(s_cfg, teacher=str(probe_teacher)), framed)
            rows = int((faces.usage == t_cfg.train_split).sum() * (1 - args.holdout))
            steps = -(-rows // base.batch_size)
            left = args.budget - elapsed() - RESERVE_S
            t_epochs, s_epochs = plan_epochs(left, t_step, s_step, steps, train_teacher)
            print(f"probe: teacher {t_step * 1000:.1f} ms/step, student {s_step * 1000:.1f} ms/step, {steps} "
                  f"steps/epoch; {left:.0f} s left -> teacher {t_epochs} epochs, student {s_epochs} epochs", flush=True)
            copy_caches(runs / "probe-student" / "probe2", runs / "teacher")

        if train_teacher:
            train(faces, runs / "teacher", replace(t_cfg, epochs=t_epochs), progress=False)
            print(f"teacher done at {elapsed():.0f} s", flush=True)
            ck = torch.load(teacher, map_location="cpu", weights_only=False)
            save_fp16_weights(ck, keep / "teacher-weights-fp16.pt")
        outs = student_dirs(runs, args.seeds)
        for o in outs:
            copy_caches(runs / "teacher", o)  # framed once, whichever run framed them
        cfgs = [replace(s_cfg, epochs=s_epochs, teacher=str(teacher), seed=s_cfg.seed + i) for i in range(args.seeds)]
        if args.seeds == 1:
            train(faces, outs[0], cfgs[0], progress=False)
        else:
            threads = max(1, usable_cores() // args.seeds)
            print(f"{args.seeds} students at once, {threads} threads each; logs in {runs}/student*.log", flush=True)
            train_students(args.data, outs, [replace(c, threads=threads) for c in cfgs])
        print(f"student done at {elapsed():.0f} s", flush=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    for run in [runs / "teacher", *student_dirs(runs, args.seeds)]:
        for f in ["history.json", "curves.png"] + ([] if run.name == "teacher" else ["last.pt"]):  # teacher: above
            if (run / f).exists():
                shutil.copy(run / f, keep / f"{run.name}-{f}")
        if run.with_suffix(".log").exists():
            shutil.copy(run.with_suffix(".log"), keep / f"{run.name}.log")
    print(f"kept {sorted(p.name for p in keep.iterdir())} at {elapsed():.0f} s; numpy {np.__version__}, "
          f"torch {torch.__version__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
