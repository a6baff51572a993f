"""A run's checkpoints read back: the weights a checkpoint delivers, as a network.

Shared by the recipe (fine-tuning from `--init`, a `--teacher`), the multi-view teacher and export, so
none of them imports another for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgefer.errors import UserError

from .model import EmotionNet


def delivered_weights(ck: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint delivers: the moving average when the run kept one, else the last."""
    return ck.get("ema") or ck["model"]


def save_fp16_weights(ck: dict[str, Any], path: Path) -> None:
    """The delivered weights alone, as float16, with the run's config and history: what a lent GPU
    machine sends back (half the size of float32, a tenth of a resumable checkpoint), and what
    `load_checkpoint`, `--init`, `--teacher` and `edgefer export` take."""
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in delivered_weights(ck).items()}
    torch.save({"ema": half, "config": ck["config"], "history": ck["history"], "epoch": ck["epoch"]}, path)


def load_checkpoint(path: Path) -> tuple[EmotionNet, dict[str, Any]]:
    """The network a checkpoint delivers (in eval mode) and the checkpoint itself."""
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
        with torch.random.fork_rng():  # its random init is overwritten: leave the caller's random stream alone
            model = EmotionNet(tuple(ck["config"]["widths"]), dropout=ck["config"]["dropout"],
                               depths=tuple(ck["config"].get("depths", (1, 2, 2, 1))))
        model.load_state_dict(delivered_weights(ck))
    except (KeyError, RuntimeError, EOFError, OSError) as exc:
        raise UserError(f"{path}: not an edgefer training checkpoint ({type(exc).__name__})") from None
    model.eval()
    return model, ck


def load_network(path: Path, calib: torch.Tensor | None = None) -> EmotionNet:
    """The network (in eval mode) of a checkpoint of this recipe or of an exported edgefer ONNX model;
    `calib` (preprocessed faces) readies an ONNX model's batch norms for training (`from_onnx.py`)."""
    if path.suffix.lower() == ".onnx":
        from .from_onnx import network_from_onnx

        return network_from_onnx(path, calib)
    return load_checkpoint(path)[0]
