"""`edgefer train` and `edgefer export`: the training recipe (needs the `train` extra: torch)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from edgefer.errors import UserError


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("training needs PyTorch: pip install 'edgefer[train]'") from None


def _int_list(param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: comma-separated whole numbers expected", param=param) from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"{value!r}: each number must be at least 1", param=param)
    return out


@click.command("train")
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Labelled faces: the shared npz or a FER-2013 CSV (with FER+ vote columns for the intensity head).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder: checkpoints, logs, curves.")
@click.option("--epochs", type=int, default=60, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True, help="Peak learning rate (SGD, cosine schedule).")
@click.option("--seed", type=int, default=20261122, show_default=True)
@click.option("--threads", type=int, default=0, help="Torch CPU threads (0: default).")
@click.option("--max-steps", type=int, default=0, help="Stop after this many optimiser steps (smoke tests).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt if it exists.")
@click.option("--train-split", default="Training", show_default=True)
@click.option("--val-split", default="PublicTest", show_default=True)
@click.option("--holdout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Hold this share of the training rows out (drawn with --seed, every class alike) and validate "
                   "on them instead of --val-split: for choosing settings without looking at the final test rows.")
@click.option("--init", "init", type=click.Path(path_type=Path),
              help="Start from the weights of this checkpoint or exported edgefer ONNX model (a fine-tuning stage; "
                   "the optimizer starts afresh).")
@click.option("--realigned-frac", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of training faces shown as the deployment detector and aligner frame them.")
@click.option("--detector", type=click.Path(path_type=Path),
              help="YuNet ONNX for --realigned-frac (default: cache/download).")
@click.option("--template", type=click.Path(path_type=Path),
              help="Alignment template JSON for --realigned-frac (default: train/alignment_template.json).")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Deliver a moving average of the weights with this decay per step (0: the last weights).")
@click.option("--teacher", type=click.Path(path_type=Path),
              help="Distil this checkpoint or edgefer ONNX model: its flip-averaged outputs on each batch become "
                   "soft targets.")
@click.option("--distill", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Weight of the teacher's targets against the labels (with --teacher).")
@click.option("--distill-intensity", type=click.FloatRange(0, 1), default=None,
              help="The intensity head's weight on the teacher's intensities against the FER+ vote shares "
                   "(default: --distill).")
@click.option("--teacher-views", type=click.Choice(["flip", "multi"]), default="flip", show_default=True,
              help="flip: the teacher runs on each batch and its mirror; multi: its outputs over 18 fixed views "
                   "of each crop, computed once before training (no cost per step; a stronger teacher, but it trained "
                   "worse students in both runs measured: docs/training-history.md, stages 6 and 7).")
@click.option("--sam", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Sharpness-aware minimisation with this rho (0: off; twice the compute per step; docs/training-history.md, stage 8).")
@click.option("--size", type=click.Choice(["fast", "large"]), default=None,
              help="The network's size: fast (the embedded model's, 150 MFLOPs per face; the default) or large "
                   "(0.94 GFLOPs, for Jetson and x86); or give --widths and --depths.")
@click.option("--widths", default="", callback=lambda c, p, v: _int_list(p, v) if v else (),
              help="Channels of each stage of the network (a new stage after each max pooling); default: --size's.")
@click.option("--depths", default="", callback=lambda c, p, v: _int_list(p, v) if v else (),
              help="3x3 convolutions in each stage (one per width). A fine-tuning stage (--init) keeps the "
                   "layout of its start.")
@click.option("--prune-to", default="", callback=lambda c, p, v: _int_list(p, v) if v else (),
              help="With --init: narrow its network to these stage widths first, keeping its most useful channels "
                   "(a cheaper network to fine-tune; docs/training-history.md, stage 10).")
@click.option("--mixup", type=click.FloatRange(0, None), default=0.0, show_default=True,
              help="Blend each batch with a shuffled copy of itself, weight ~ Beta(a, a) (0: off; with --teacher, "
                   "the teacher sees the blended faces).")
@click.option("--cls-target", type=click.Choice(["fer2013", "ferplus", "ferplus-soft"]), default="fer2013",
              show_default=True, help="The classification head's target: the FER-2013 label, the FER+ majority, "
              "or the FER+ vote distribution.")
@click.option("--cls-target-weight", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="With a FER+ --cls-target: its share against the FER-2013 label (1: alone).")
@click.option("--camera-aug", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of each batch degraded as a camera would (turn, exposure, low resolution, motion "
              "blur, noise, JPEG; train/camera.py).")
@click.option("--train-only", type=click.Choice(["cls-head"]), default=None,
              help="With --init: train only the classification head; the convolutions, batch norms and intensity "
                   "head stay as --init gives them (so do the intensities).")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, or cuda / cuda:N to train on a GPU (augmentation stays on the CPU; see --threads).")
def train_cmd(data: Path, out: Path, epochs: int, batch_size: int, lr: float, seed: int, threads: int,
              max_steps: int, resume: bool, train_split: str, val_split: str, holdout: float, init: Path | None,
              realigned_frac: float, detector: Path | None, template: Path | None, ema: float,
              teacher: Path | None, distill: float,
              distill_intensity: float | None, teacher_views: str, sam: float,
              size: str | None, widths: tuple[int, ...], depths: tuple[int, ...], prune_to: tuple[int, ...], mixup: float,
              cls_target: str, cls_target_weight: float, camera_aug: float, train_only: str | None,
              device: str) -> None:
    """Train the emotion + intensity network (seeded, resumable; one checkpoint per epoch).

    \b
    Example (the default model's first two stages; the third adds --teacher, see docs/training-history.md):
      edgefer train --data ../shared/data/fer2013/fer2013_trainval.npz --out runs/v1 --epochs 60
      edgefer train --data ../shared/data/fer2013/fer2013_trainval.npz --out runs/v2-ft \\
        --init runs/v1/last.pt --epochs 70 --lr 0.05 --ema 0.999 --realigned-frac 0.5
      edgefer export --checkpoint runs/v2-ft/last.pt --out model.onnx
    """
    _need_torch()
    from edgefer.data import load_faces
    from edgefer.train.augment import AugmentConfig
    from edgefer.train.camera import CameraConfig
    from edgefer.train.config import TrainConfig
    from edgefer.train.recipe import train

    logging.getLogger("edgefer.train").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    from edgefer.train.model import SIZES

    if size is not None and (widths or depths):
        raise UserError(f"--size {size} sets the layout: give --size or --widths/--depths, not both")
    if bool(widths) != bool(depths):
        raise UserError("--widths and --depths go together (or use --size)")
    if not widths:
        widths, depths = SIZES[size or "fast"]
    if len(widths) != len(depths):
        raise UserError(f"--widths {widths} and --depths {depths}: give one depth per stage")
    if prune_to and init is None:
        raise UserError("--prune-to narrows the network of --init: give --init")
    from edgefer.paths import check_output

    check_output(out, folder=True)  # before the data are loaded
    faces = load_faces(data)
    if out.exists() and (out / "last.pt").exists() and not resume:
        raise UserError(f"{out}: holds a training run already (use --resume to continue it, or another --out)")
    if init is not None and not init.is_file():
        raise UserError(f"{init}: checkpoint not found")
    det, tpl = None, None
    if realigned_frac > 0:
        from edgefer.edge.detector import resolve_detector_model

        det = str(resolve_detector_model(detector))
        tpl = load_template(template)["points"]
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, threads=threads, max_steps=max_steps,
                      train_split=train_split, val_split=val_split, holdout=holdout, init=str(init or ""),
                      realigned_frac=realigned_frac, detector=det or "", template=tpl, ema=ema,
                      teacher=str(teacher or ""), distill=distill,
                      distill_intensity=distill_intensity, teacher_views=teacher_views, sam=sam,
                      widths=widths, depths=depths, prune_to=prune_to, mixup=mixup, device=device,
                      cls_target=cls_target, cls_target_weight=cls_target_weight, train_only=train_only or "",
                      augment=AugmentConfig(camera=CameraConfig(p=camera_aug)))
    last = train(faces, out, cfg, resume=resume)
    click.echo(f"checkpoint: {last}")


@click.command("export")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--template", type=click.Path(path_type=Path),
              help="Alignment template JSON (default: the one derived from FER-2013, train/alignment_template.json).")
@click.option("--eval-data", type=click.Path(path_type=Path),
              help="Evaluate the exported file on this data (with --eval-split) and store the figures in its metadata.")
@click.option("--eval-split", default="PublicTest", show_default=True)
@click.option("--version", "model_version", default="1.3.0", show_default=True)
@click.option("--flip", is_flag=True,
              help="Average each face with its mirror image inside the model (twice the cost per face).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def export_cmd(checkpoint: Path, out: Path, template: Path | None, eval_data: Path | None, eval_split: str,
               model_version: str, flip: bool, force: bool) -> None:
    """Export a checkpoint to the contract ONNX (metadata inside), optionally with validation figures.

    \b
    Example:
      edgefer export --checkpoint runs/v1/last.pt --out model.onnx \\
        --eval-data ../shared/data/fer2013/fer2013_trainval.npz --eval-split PublicTest
    """
    _need_torch()
    from edgefer.paths import check_output, write_bytes_atomic
    from edgefer.train.checkpoint import load_checkpoint
    from edgefer.train.export import FlipAveraged, check_parity, export

    check_output(out)  # before the checkpoint is loaded
    tpl = load_template(template)
    info = export(checkpoint, out, tpl["points"], model_version, force=force, flip=flip,
                  training_data="FER-2013 Training rows (28,565) with FER+ vote shares for intensity")
    model, _ = load_checkpoint(checkpoint)
    diff = check_parity(FlipAveraged(model) if flip else model, out, info.input)
    if diff > 1e-3:
        out.unlink()
        raise RuntimeError(f"exported model differs from PyTorch by {diff}")
    if eval_data:
        from edgefer.data import load_faces
        from edgefer.edge.classifier import Classifier
        from edgefer.evaluate import evaluate
        from edgefer.modelinfo import load_onnx, write_onnx_info

        m = evaluate(Classifier.open(out), load_faces(eval_data).split(eval_split))
        info.validation = {"data": f"{eval_data.name} [{eval_split}]", "onnxruntime": True,
                           **{k: m[k] for k in ("n", "accuracy", "intensity_rmse", "intensity_mae", "ferplus_accuracy")}}
        proto = load_onnx(out)
        write_onnx_info(proto, info)
        write_bytes_atomic(out, proto.SerializeToString())
    click.echo(json.dumps({"out": str(out), "parity_max_abs_diff": diff, "validation": info.validation}))


def load_template(path: Path | None) -> dict:
    default = Path(__file__).resolve().parents[2] / "train" / "alignment_template.json"
    try:
        from edgefer.train import __file__ as train_init

        default = Path(train_init).parent / "alignment_template.json"
    except ImportError:
        pass
    path = path or default
    try:
        tpl = json.loads(Path(path).read_text())
        pts = tpl["points"]
        if len(pts) != 5 or any(len(p) != 2 for p in pts):
            raise ValueError("need 5 points")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not an alignment template ({exc})") from None
    return tpl
