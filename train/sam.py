"""Sharpness-aware minimisation (Foret et al., 2021), the two half-steps `recipe.train` takes with `--sam`:
each step's gradient is taken at the weights moved `rho` up the loss, then applied at the weights it
started from. Fine-tuning 1.2.0 with it did not raise accuracy (docs/training-history.md, stage 8)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@torch.no_grad()
def sam_ascend(model: torch.nn.Module, rho: float) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """Move the weights by `rho` along their normalised gradient (SAM's ascent step); returns the moves."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.norm(torch.stack([p.grad.norm(2) for p in params]), 2)
    moves = []
    for p in params:
        e = p.grad * (rho / (norm + 1e-12))
        p.add_(e)
        moves.append((p, e))
    return moves


@torch.no_grad()
def sam_descend(moves: list[tuple[torch.nn.Parameter, torch.Tensor]]) -> None:
    """Put the weights back where `sam_ascend` found them (their gradients stay those of the moved point)."""
    for p, e in moves:
        p.sub_(e)


@contextmanager
def bn_stats_frozen(model: torch.nn.Module) -> Iterator[None]:
    """SAM's second forward pass must not count twice in the batch-norm running statistics."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
