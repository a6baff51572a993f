"""The training recipe: seeded, resumable, one checkpoint per epoch.

Classification head: cross-entropy with label smoothing on FER-2013 labels, or (`cls_target`) on the FER+
majority or the FER+ vote distribution, alone or mixed with them (`class_targets`).
Intensity head: sigmoid cross-entropy against FER+ vote shares (rows that FER+ marks as mostly
unknown / not-a-face get zero weight), as the published intensity regression model did.
Validation each epoch on the `PublicTest` rows: loss, accuracy, intensity RMSE, FER+ accuracy.
With `ema` > 0 the run delivers an exponential moving average of the weights (batch-norm statistics
included); validation figures are then those of the average, and the raw weights' accuracy is logged
beside them.
With a `teacher` checkpoint the run distils it: the teacher sees each augmented batch and its mirror
image (a flip-averaged prediction, which is worth about +1 pt at twice the compute), and both heads
learn from a mix of their own targets and the teacher's outputs, weighted by `distill` (the intensity
head by `distill_intensity` when it is set: the two weights trade top-1 against FER+ accuracy). The student
keeps the single-pass cost; the teacher is only used in training. With `teacher_views="multi"` the
teacher's targets are instead its outputs averaged over 18 fixed views of each original crop, computed
once before training (`teacher_views.py`): a stronger teacher that costs nothing per step, but its
students scored worse than the flip teacher's in both runs measured (docs/training-history.md, stages 6 and 7).
"""

from __future__ import annotations

import io
import json
import logging
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgefer.contract import (
    CLASS_NAMES,
    InputSpec,
    ferplus_clear_majority,
    ferplus_majority,
    ferplus_shares,
    ferplus_usable,
    preprocess,
)
from edgefer.data import FaceSet
from edgefer.errors import UserError
from edgefer.paths import atomic_path, ensure_dir, write_bytes_atomic, write_text_atomic

from .augment import augment
from .checkpoint import load_network
from .config import TrainConfig, train_device
from .model import EmotionNet
from .sam import bn_stats_frozen, sam_ascend, sam_descend

log = logging.getLogger("edgefer.train")


def _atomic_save(obj: Any, path: Path) -> None:
    """Serialised in memory first: torch's writer turns a full disk into a RuntimeError, a file does not."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def _atomic_write_text(text: str, path: Path) -> None:
    write_text_atomic(path, text)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    warm = max(1, int(total * cfg.warmup_frac))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def holdout_mask(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Rows held out of training: `share` of each class (rounded), drawn with `seed` (the run's seed, so
    runs of different seeds validate on different rows). Unlabelled rows (-1) are never held out."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for c in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == c)
        mask[rng.permutation(rows)[:round(share * len(rows))]] = True
    return mask


@torch.no_grad()
def evaluate_torch(model: EmotionNet, x: torch.Tensor, labels: np.ndarray, votes: np.ndarray | None,
                   batch: int = 512) -> dict[str, float]:
    """Validation figures of `model` on preprocessed faces `x` (on the CPU; batches go to the model's device)."""
    model.eval()
    dev = next(model.parameters()).device
    logits, inten = [], []
    for i in range(0, len(x), batch):
        lo, it = model(x[i:i + batch].to(dev))
        logits.append(lo.cpu())
        inten.append(it.cpu())
    lo = torch.cat(logits)
    it = torch.cat(inten).numpy()
    y = torch.from_numpy(labels)
    out = {
        "loss": float(F.cross_entropy(lo, y)),
        "accuracy": float((lo.argmax(1) == y).float().mean()),
    }
    if votes is not None:
        shares = ferplus_shares(votes)
        out["intensity_rmse"] = float(np.sqrt(((it - shares) ** 2).mean()))
        maj = ferplus_majority(votes)
        ok = maj >= 0
        out["ferplus_accuracy"] = float((it[ok].argmax(1) == maj[ok]).mean())
        out["ferplus_accuracy_cls"] = float((lo.argmax(1).numpy()[ok] == maj[ok]).mean())
        clear = ferplus_clear_majority(votes)  # the FER+ paper's reading (edgefer.evaluate has all three)
        out["ferplus_accuracy_clear"] = float((it[clear >= 0].argmax(1) == clear[clear >= 0]).mean())
    return out


def _teacher(cfg: TrainConfig) -> EmotionNet | None:
    if not cfg.teacher:
        return None
    if cfg.teacher_views not in ("flip", "multi"):
        raise UserError(f"teacher views must be 'flip' or 'multi', got {cfg.teacher_views!r}")
    if not Path(cfg.teacher).is_file():
        raise UserError(f"{cfg.teacher}: teacher checkpoint not found")
    teacher = load_network(Path(cfg.teacher))
    log.info("distilling %s (weight %.2f, intensity head %.2f)", cfg.teacher, cfg.distill, cfg.intensity_distill)
    return teacher.to(memory_format=torch.channels_last).requires_grad_(False)


@torch.no_grad()
def teacher_targets(teacher: EmotionNet, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's class probabilities and intensities on `xb`, averaged with its mirror image."""
    logits, inten = teacher(torch.cat([xb, xb.flip(3)]))
    k = len(xb)
    return (logits[:k].softmax(1) + logits[k:].softmax(1)) / 2, (inten[:k] + inten[k:]) / 2


CLS_TARGETS = ("fer2013", "ferplus", "ferplus-soft")


def check_cls_target(cfg: TrainConfig) -> None:
    if cfg.cls_target not in CLS_TARGETS:
        raise UserError(f"--cls-target {cfg.cls_target!r}: one of {', '.join(CLS_TARGETS)}")
    if not 0 <= cfg.cls_target_weight <= 1:
        raise UserError(f"--cls-target-weight {cfg.cls_target_weight}: a share, 0 <= weight <= 1")
    if not 0 <= cfg.augment.camera.p <= 1:
        raise UserError(f"--camera-aug {cfg.augment.camera.p}: a share of each batch, 0 <= share <= 1")


def class_targets(labels: np.ndarray, votes: np.ndarray, cfg: TrainConfig) -> np.ndarray | None:
    """The classification head's target distribution per row (N x 7) for `cfg.cls_target`; None for
    "fer2013" alone, whose one-hot labels the loss smooths itself (the recipe as it was)."""
    check_cls_target(cfg)
    if cfg.cls_target == "fer2013":
        return None
    k, eps = len(CLASS_NAMES), cfg.label_smoothing
    eye = np.eye(k, dtype=np.float32)
    fer = eye[labels] * (1 - eps) + eps / k
    if cfg.cls_target == "ferplus":
        maj = ferplus_majority(votes)
        plus = np.where((maj >= 0)[:, None], eye[np.maximum(maj, 0)] * (1 - eps) + eps / k, fer)
    else:
        shares = ferplus_shares(votes)
        total = shares.sum(1, keepdims=True)
        ok = ferplus_usable(votes) & (total[:, 0] > 0)
        plus = np.where(ok[:, None], shares / np.maximum(total, 1e-6), fer)
    w = cfg.cls_target_weight
    return ((1 - w) * fer + w * plus).astype(np.float32)


def batch_losses(model: EmotionNet, xb: torch.Tensor, yb: torch.Tensor, tb: torch.Tensor, wb: torch.Tensor,
                 t_probs: torch.Tensor | None, t_int: torch.Tensor | None, cfg: TrainConfig,
                 mixed: tuple[torch.Tensor, float] | None = None, qb: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total, classification and intensity losses of one batch (labels mixed with the teacher's
    outputs when there is one), and the classification logits. `mixed`: the second labels and the
    weight of the first of a mixup batch (`mix_batch`). `qb`: the classification head's target
    distributions (`class_targets`, already blended by mixup), used instead of `yb` when given."""
    logits, int_logits = model.forward_raw(xb)
    if qb is not None:
        cls_loss = -(qb * F.log_softmax(logits, 1)).sum(1).mean()
    else:
        cls_loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
    if mixed is not None and qb is None:
        y2, lam = mixed
        cls_loss = lam * cls_loss + (1 - lam) * F.cross_entropy(logits, y2, label_smoothing=cfg.label_smoothing)
    if t_probs is not None and t_int is not None:
        soft = -(t_probs * F.log_softmax(logits, 1)).sum(1).mean()
        cls_loss = (1 - cfg.distill) * cls_loss + cfg.distill * soft
        tb = (1 - cfg.intensity_distill) * tb + cfg.intensity_distill * t_int
    bce = F.binary_cross_entropy_with_logits(int_logits, tb, reduction="none").mean(1)
    int_loss = (bce * wb).sum() / wb.sum().clamp(min=1)
    return cls_loss + cfg.intensity_weight * int_loss, cls_loss, int_loss, logits


def mix_batch(xb: torch.Tensor, yb: torch.Tensor, tb: torch.Tensor, wb: torch.Tensor, alpha: float,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, float]]:
    """Mixup of a batch with a shuffled copy of itself: faces, intensity targets and their weights
    blended by lam ~ Beta(alpha, alpha) folded to lam >= 0.5 (so `yb` stays the main label); returns
    them and (the shuffled labels, lam) for `batch_losses`. Draws from `gen` only."""
    lam = float(np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen))).beta(alpha, alpha))
    lam = max(lam, 1 - lam)
    perm = torch.randperm(len(xb), generator=gen)
    return (lam * xb + (1 - lam) * xb[perm], lam * tb + (1 - lam) * tb[perm], lam * wb + (1 - lam) * wb[perm],
            (yb[perm], lam))


TRAIN_ONLY = ("", "cls-head")


def freeze_rest(model: EmotionNet, train_only: str) -> None:
    """`TrainConfig.train_only`: stop the gradient of every parameter outside what is to learn."""
    if train_only not in TRAIN_ONLY:
        raise UserError(f"--train-only {train_only!r}: one of {', '.join(t for t in TRAIN_ONLY if t)}")
    if not train_only:
        return
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.cls_head.parameters():
        p.requires_grad_(True)


def _check_same_rows(last: Path, cfg: TrainConfig) -> None:
    """A resumed run must train and validate on the rows it started with: the same held-out share,
    drawn with the same seed."""
    started = torch.load(last, map_location="cpu", weights_only=False)["config"]
    was = (started.get("holdout", 0.0), started["seed"] if started.get("holdout", 0.0) else None)
    now = (cfg.holdout, cfg.seed if cfg.holdout else None)
    if was != now:
        raise UserError(f"{last}: started with --holdout {was[0]} (seed {started['seed']}); resume it with the "
                        f"options it started with, not --holdout {cfg.holdout} (seed {cfg.seed})")


def _realigned(pixels: np.ndarray, cfg: TrainConfig, spec: InputSpec,
               out: Path) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Preprocessed re-aligned training crops and their found mask (None when not asked for)."""
    if cfg.realigned_frac <= 0:
        return None, torch.zeros(0, dtype=torch.bool)
    if not cfg.detector or not cfg.template:
        raise UserError("realigned training crops need a detector file and an alignment template")
    if not Path(cfg.detector).is_file():
        raise UserError(f"{cfg.detector}: detector file not found")
    from .realign import realigned_cached

    crops, found = realigned_cached(pixels, Path(cfg.detector), cfg.template, spec.size, out)
    log.info("realigned training crops: faces found on %d of %d", int(found.sum()), len(found))
    x = torch.from_numpy(preprocess(crops, spec)).contiguous(memory_format=torch.channels_last)
    return x, torch.from_numpy(found)


def train(data: FaceSet, out: Path, cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train on `data` (splits by `usage`), write checkpoints and logs to `out`; returns the final checkpoint."""
    from tqdm import tqdm

    dev = train_device(cfg.device)  # before anything is written
    check_cls_target(cfg)
    if cfg.mixup > 0 and cfg.teacher and cfg.teacher_views == "multi":
        raise UserError("--mixup blends the faces, so the teacher must see them: use --teacher-views flip")
    if not 0 <= cfg.holdout < 1:
        raise UserError(f"--holdout {cfg.holdout}: a share of the training rows, 0 <= share < 1")
    if resume and (out / "last.pt").exists():
        _check_same_rows(out / "last.pt", cfg)
    ensure_dir(out)
    spec = InputSpec(size=int(data.pixels.shape[1]))
    if data.pixels.shape[1] != data.pixels.shape[2]:
        raise UserError(f"{data.source}: face crops must be square, got {data.pixels.shape[1:]}")
    tr = data.split(cfg.train_split)
    if cfg.holdout > 0:
        held = holdout_mask(tr.labels, cfg.holdout, cfg.seed)
        tr, va = tr.select(~held), tr.select(held)
        log.info("validating on %d rows held out of %s (%d left to train on)", len(va), cfg.train_split, len(tr))
    else:
        va = data.split(cfg.val_split)
    if tr.votes is None:
        raise UserError(f"{data.source}: no FER+ votes; the intensity head needs them")

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    if cfg.train_only and not cfg.init:
        raise UserError(f"--train-only {cfg.train_only} keeps the rest of a network: give --init")
    teacher = _teacher(cfg)  # before the slow preparation, so a bad path fails at once
    x_tr = torch.from_numpy(preprocess(tr.pixels, spec))
    y_tr = torch.from_numpy(tr.labels)
    t_tr = torch.from_numpy(ferplus_shares(tr.votes))
    w_tr = torch.from_numpy(ferplus_usable(tr.votes).astype(np.float32))
    q = class_targets(tr.labels, tr.votes, cfg)
    q_tr = None if q is None else torch.from_numpy(q)
    keep = y_tr >= 0
    x_tr, y_tr, t_tr, w_tr = x_tr[keep], y_tr[keep], t_tr[keep], w_tr[keep]
    q_tr = None if q_tr is None else q_tr[keep]
    x_va = torch.from_numpy(preprocess(va.pixels, spec))
    start = load_network(Path(cfg.init), calib=x_tr[:2048]) if cfg.init else None
    if cfg.prune_to:
        if start is None:
            raise UserError("--prune-to narrows the network of --init: give --init")
        from .prune import prune

        try:
            start = prune(start, cfg.prune_to, x_tr[:2048])
        except ValueError as exc:
            raise UserError(f"--prune-to: {exc}") from None
        log.info("pruned to widths %s", start.widths)
    if start is not None:
        cfg = replace(cfg, widths=start.widths, depths=start.depths)
    model = EmotionNet(cfg.widths, dropout=cfg.dropout, depths=cfg.depths).to(memory_format=torch.channels_last)
    if start is not None:
        model.load_state_dict(start.state_dict())
        log.info("weights from %s", cfg.init)
    x_re, re_ok = _realigned(tr.pixels[keep.numpy()], cfg, spec, out)  # slow: after what can fail at once
    fixed_targets = None
    if teacher is not None and cfg.teacher_views == "multi":
        from .teacher_views import VIEWS, multi_view_targets_cached

        fixed_targets = multi_view_targets_cached(Path(cfg.teacher), tr.pixels[keep.numpy()], spec, out, cfg.threads,
                                                  network=teacher)
        log.info("teacher targets over %d views: accuracy %.4f on the training labels", 2 * len(VIEWS),
                 float((fixed_targets[0].argmax(1) == y_tr).float().mean()))
    x_tr = x_tr.contiguous(memory_format=torch.channels_last)
    model.to(dev)
    if teacher is not None:
        teacher.to(dev)
    freeze_rest(model, cfg.train_only)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and p.requires_grad]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 and p.requires_grad]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    steps_per_epoch = math.ceil(len(x_tr) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    gen = torch.Generator().manual_seed(cfg.seed)
    ema = None
    if cfg.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    history: list[dict[str, Any]] = []
    start_epoch, step = 0, 0

    last = out / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        try:
            model.load_state_dict(ck["model"])
        except RuntimeError:
            raise UserError(f"{last}: a network of another layout than this run's (--widths/--depths "
                            f"{cfg.widths}/{cfg.depths}); resume it with the options it started with") from None
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        if dev.type == "cuda" and "cuda_rng" in ck:  # dropout's stream on the GPU
            torch.cuda.set_rng_state(ck["cuda_rng"], dev)
        start_epoch, step, history = ck["epoch"], ck["step"], ck["history"]
        if ema is not None:
            ema.module.load_state_dict(ck["ema"])
            ema.n_averaged.fill_(max(1, step))
        log.info("resumed from %s at epoch %d (step %d)", last, start_epoch, step)
    elif resume:
        log.info("no checkpoint in %s: starting fresh", out)

    _atomic_write_text(json.dumps(asdict(cfg), indent=2), out / "config.json")
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        if cfg.train_only:
            model.features.eval()  # frozen: its batch-norm statistics stay the start's
        t0 = time.monotonic()
        perm = torch.randperm(len(x_tr), generator=gen)
        sums = {"loss": 0.0, "cls_loss": 0.0, "int_loss": 0.0, "correct": 0.0, "n": 0}
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False, mininterval=5)
        for b in bar:
            if cfg.max_steps and step >= cfg.max_steps:
                break
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb = x_tr[idx]
            if x_re is not None:
                swap = (torch.rand(len(idx), generator=gen) < cfg.realigned_frac) & re_ok[idx]
                xb = torch.where(swap[:, None, None, None], x_re[idx], xb)
            xb = augment(xb, spec.mean, spec.std, cfg.augment, gen)
            yb, tb, wb = y_tr[idx], t_tr[idx], w_tr[idx]
            qb = None if q_tr is None else q_tr[idx]
            mixed = None
            if cfg.mixup > 0:
                k7 = tb.shape[1]  # class targets ride along with the intensity targets, blended alike
                both = tb if qb is None else torch.cat([tb, qb], 1)
                xb, both, wb, (y2, lam) = mix_batch(xb, yb, both, wb, cfg.mixup, gen)
                tb, qb = both[:, :k7], (None if qb is None else both[:, k7:])
                mixed = (y2.to(dev), lam)
            xb, yb, tb, wb = xb.to(dev, non_blocking=True), yb.to(dev), tb.to(dev), wb.to(dev)
            qb = None if qb is None else qb.to(dev)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total_steps, cfg)
            t_probs = t_int = None
            if teacher is not None:
                t_probs, t_int = (teacher_targets(teacher, xb) if fixed_targets is None
                                  else (fixed_targets[0][idx].to(dev), fixed_targets[1][idx].to(dev)))

            loss, cls_loss, int_loss, logits = batch_losses(model, xb, yb, tb, wb, t_probs, t_int, cfg, mixed, qb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.sam > 0:
                moves = sam_ascend(model, cfg.sam)
                opt.zero_grad(set_to_none=True)
                with bn_stats_frozen(model):
                    batch_losses(model, xb, yb, tb, wb, t_probs, t_int, cfg, mixed, qb)[0].backward()
                sam_descend(moves)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            k = len(idx)
            sums["loss"] += loss.item() * k
            sums["cls_loss"] += cls_loss.item() * k
            sums["int_loss"] += int_loss.item() * k
            sums["correct"] += float((logits.argmax(1) == yb).sum())
            sums["n"] += k
            bar.set_postfix(loss=f"{sums['loss'] / sums['n']:.3f}", acc=f"{sums['correct'] / sums['n']:.3f}")
        n = max(1, sums["n"])
        val = evaluate_torch(model if ema is None else ema.module, x_va, va.labels, va.votes)
        if ema is not None:
            val["raw_accuracy"] = evaluate_torch(model, x_va, va.labels, None)["accuracy"]
        row = {"epoch": epoch + 1, "step": step, "lr": lr_at(step - 1, total_steps, cfg),
               "train_loss": sums["loss"] / n, "train_cls_loss": sums["cls_loss"] / n,
               "train_int_loss": sums["int_loss"] / n, "train_accuracy": sums["correct"] / n,
               **{f"val_{k}": v for k, v in val.items()}, "seconds": time.monotonic() - t0}
        history.append(row)
        log.info("epoch %d/%d  train loss %.3f acc %.3f | val acc %.4f rmse %.4f ferplus %.4f (class head %.4f)%s | %.0fs",
                 epoch + 1, cfg.epochs, row["train_loss"], row["train_accuracy"], val["accuracy"],
                 val.get("intensity_rmse", float("nan")), val.get("ferplus_accuracy", float("nan")),
                 val.get("ferplus_accuracy_cls", float("nan")),
                 f" (raw weights: acc {val['raw_accuracy']:.4f})" if ema is not None else "", row["seconds"])
        _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                      "torch_rng": torch.get_rng_state(),
                      **({"cuda_rng": torch.cuda.get_rng_state(dev)} if dev.type == "cuda" else {}), "epoch": epoch + 1, "step": step, "history": history,
                      "config": asdict(cfg), "input_spec": spec.to_dict(),
                      **({"ema": ema.module.state_dict()} if ema is not None else {})}, last)
        _atomic_write_text(json.dumps(history, indent=1), out / "history.json")
        if cfg.max_steps and step >= cfg.max_steps:
            break
    plot_history(history, out / "curves.png")
    return last


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss, accuracy and intensity error per epoch, as a PNG."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [h["train_cls_loss"] for h in history], label="train (cls)")
    ax[0].plot(ep, [h["val_loss"] for h in history], label="val (cls)")
    ax[0].set_title("loss")
    ax[1].plot(ep, [h["train_accuracy"] for h in history], label="train")
    ax[1].plot(ep, [h["val_accuracy"] for h in history], label="val")
    ax[1].plot(ep, [h.get("val_ferplus_accuracy", float("nan")) for h in history], label="val FER+ (intensity argmax)")
    if any("val_raw_accuracy" in h for h in history):
        ax[1].plot(ep, [h.get("val_raw_accuracy", float("nan")) for h in history], label="val, last weights (not averaged)",
                   alpha=0.5, lw=0.8)
    ax[1].set_title("accuracy")
    ax[2].plot(ep, [h.get("val_intensity_rmse", float("nan")) for h in history], label="val")
    ax[2].set_title("intensity RMSE vs FER+ shares")
    for a in ax:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
