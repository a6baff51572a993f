"""The options of a training run (`TrainConfig`) and the device it trains on.

Each field's comment says what it does and, where a training stage measured it, what it did (the
stages of docs/training-history.md). `recipe.train` runs a `TrainConfig`; `edgefer train` maps its options onto these
fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgefer.errors import UserError

from .augment import AugmentConfig


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    intensity_weight: float = 2.0
    warmup_frac: float = 0.05
    # The network's layout: channels of each stage and 3x3 convolutions in it (`model.EmotionNet`).
    # A fine-tuning stage (`init`) takes the layout of the weights it starts from.
    widths: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 2, 2, 1)
    dropout: float = 0.3
    seed: int = 20261122
    threads: int = 0  # 0: leave torch's default
    max_steps: int = 0  # stop after this many optimizer steps in total (tests); 0: no limit
    train_split: str = "Training"
    val_split: str = "PublicTest"
    # Share of the training split held out (seeded, the same share of every class) and used as the
    # validation split instead of `val_split`: for choosing settings without looking at the split the
    # model is finally judged on. 0: off.
    holdout: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Fine-tuning stage: start from these weights (a checkpoint of this recipe or an exported edgefer
    # ONNX model; the optimizer restarts).
    init: str = ""
    # With `init`: first narrow the start to these stage widths, keeping its most useful channels
    # (`train/prune.py`); empty: keep the start's widths.
    prune_to: tuple[int, ...] = ()
    # Share of each batch shown as the deployment pipeline frames it (detector + aligner onto the
    # template, `train/realign.py`) instead of the original crop; needs `detector` and `template`.
    realigned_frac: float = 0.0
    detector: str = ""
    template: list[list[float]] | None = None
    # Decay per step of an exponential moving average of the weights, which is what the run then
    # delivers (checkpoint key "ema"); 0: off, the last weights are delivered.
    ema: float = 0.0
    # Distillation: a checkpoint of this recipe (or an exported edgefer ONNX model) whose
    # flip-averaged outputs the student also learns from; `distill` is their weight against the
    # labels (0..1). "": off.
    teacher: str = ""
    distill: float = 0.5
    # The intensity head's weight on the teacher's intensities against the FER+ vote shares; None: `distill`.
    # A higher weight here raised the intensity head's FER+ accuracy and a higher `distill` lowered top-1
    # (docs/training-history.md, stages 12 and 12b), so the two are set apart.
    distill_intensity: float | None = None
    # "flip": the teacher runs on every augmented batch and its mirror image; "multi": its outputs
    # averaged over `teacher_views.VIEWS` of each original crop, computed once (and cached in the run
    # folder), serve as targets for every framing and augmentation of that face.
    teacher_views: str = "flip"
    # Sharpness-aware minimisation (Foret et al., 2021): each step takes the gradient at the weights
    # moved by `sam` (rho, in weight-norm units) up the loss, which favours flat minima and is reported to resist
    # label noise; twice the compute per step. 0: plain SGD. Fine-tuning 1.2.0 with it (rho 0.05) did not
    # raise accuracy (docs/training-history.md, stage 8).
    sam: float = 0.0
    # Mixup (Zhang et al., 2018): each augmented batch is blended with a shuffled copy of itself, weight
    # lam ~ Beta(mixup, mixup) (folded to lam >= 0.5), labels and intensity targets blended alike; with a
    # teacher, the teacher sees the blended faces too (function matching, Beyer et al., 2022). 0: off.
    mixup: float = 0.0
    # Where the network trains: "cpu", or "cuda" / "cuda:N" (a GPU, when PyTorch has one). Data
    # preparation and augmentation stay on the CPU with the seeded generator, so the batches are the
    # same on either; the arithmetic is not bit-identical across devices.
    device: str = "cpu"
    # The classification head's target: "fer2013" (the single FER-2013 label, smoothed by `label_smoothing`),
    # "ferplus" (the FER+ majority of ten annotators, smoothed alike; rows without an emotion majority keep
    # the FER-2013 label) or "ferplus-soft" (the FER+ vote distribution over the seven emotions; rows whose
    # votes are mostly unknown / not-a-face keep the smoothed FER-2013 label). `cls_target_weight`: the
    # FER+ target's share against the FER-2013 label (1: alone; 0.5: half each).
    cls_target: str = "fer2013"
    cls_target_weight: float = 1.0
    # What learns: "" the whole network; "cls-head" only the classification head's linear layer, everything
    # else (convolutions, batch-norm statistics, intensity head) kept as `init` gives it, so the intensity
    # outputs stay the start's (issue 24, round 9). Needs `init`.
    train_only: str = ""

    @property
    def intensity_distill(self) -> float:
        """The intensity head's weight on the teacher: `distill_intensity`, or `distill` when unset."""
        return self.distill if self.distill_intensity is None else self.distill_intensity


def train_device(name: str) -> torch.device:
    """The torch device of `TrainConfig.device`; a UserError when it is not one this machine has."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: not a device name (cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise UserError(f"--device {name!r}: training runs on cpu or cuda")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: this PyTorch sees no CUDA GPU (torch.cuda.is_available() is False)")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return dev
