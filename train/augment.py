"""Batch augmentation on the CPU, in the normalised input space produced by `preprocess`.

As the published systems did: shifts, horizontal flips, small rotations and zoom, brightness and
contrast changes, blur; plus random erasing. Whole batches are warped at once with `grid_sample`,
which keeps two CPU cores busy with the network rather than with Python loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .camera import CameraConfig, degrade


@dataclass(frozen=True)
class AugmentConfig:
    shift: float = 0.10  # fraction of the crop size
    rotate_deg: float = 12.0
    zoom: float = 0.12  # scale in [1 - zoom, 1 + zoom]
    flip: float = 0.5
    brightness: float = 0.25  # additive, in units of the 0..1 pixel range
    contrast: float = 0.30  # multiplicative in [1 - c, 1 + c]
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.4, 1.2)
    erase_p: float = 0.3
    erase_frac: tuple[float, float] = (0.05, 0.2)
    # What cameras do that FER-2013 crops do not show (`camera.py`); p 0: off.
    camera: CameraConfig = CameraConfig()


def augment(x: torch.Tensor, mean: float, std: float, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Augment a batch N x 1 x S x S already normalised as ((p / 255) - mean) / std."""
    n, _, s, _ = x.shape

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen) * (hi - lo) + lo

    # Geometry: one affine matrix per sample (output -> input sampling grid).
    angle = uniform(-cfg.rotate_deg, cfg.rotate_deg, n) * (math.pi / 180)
    scale = uniform(1 - cfg.zoom, 1 + cfg.zoom, n)
    flip = torch.where(torch.rand(n, generator=gen) < cfg.flip, -1.0, 1.0)
    tx = uniform(-2 * cfg.shift, 2 * cfg.shift, n)  # grid units span 2 per image side
    ty = uniform(-2 * cfg.shift, 2 * cfg.shift, n)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # Photometry in pixel units (0..1), then back to the normalised space.
    p = x * std + mean
    c = uniform(1 - cfg.contrast, 1 + cfg.contrast, n, 1, 1, 1)
    b = uniform(-cfg.brightness, cfg.brightness, n, 1, 1, 1)
    m = p.mean(dim=(2, 3), keepdim=True)
    p = ((p - m) * c + m + b).clamp(0.0, 1.0)

    if cfg.camera.p > 0:  # draws from `gen` only when on, so runs without it are unchanged
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
        u8 = (p[:, 0] * 255).round().to(torch.uint8).numpy()
        faces, chosen = degrade(u8, cfg.camera, rng)
        if chosen.any():
            p = p.clone()
            p[torch.from_numpy(chosen), 0] = torch.from_numpy(faces[chosen]).float() / 255

    blur = torch.rand(n, generator=gen) < cfg.blur_p
    if blur.any():
        sigma = float(uniform(*cfg.blur_sigma, 1))
        r = 2
        k1 = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
        k1 = k1 / k1.sum()
        k2 = (k1[:, None] * k1[None, :])[None, None]
        pb = F.conv2d(F.pad(p[blur], (r, r, r, r), mode="replicate"), k2)
        p = p.clone()
        p[blur] = pb

    erase = torch.rand(n, generator=gen) < cfg.erase_p
    if erase.any():
        idx = erase.nonzero().flatten()
        area = uniform(*cfg.erase_frac, len(idx)) * s * s
        aspect = torch.exp(uniform(math.log(0.5), math.log(2.0), len(idx)))
        h = (area * aspect).sqrt().clamp(2, s - 1).long()
        w = (area / aspect).sqrt().clamp(2, s - 1).long()
        y0 = (torch.rand(len(idx), generator=gen) * (s - h)).long()
        x0 = (torch.rand(len(idx), generator=gen) * (s - w)).long()
        fill = torch.rand(len(idx), generator=gen)
        for i, yy, xx, hh, ww, f in zip(idx.tolist(), y0.tolist(), x0.tolist(), h.tolist(), w.tolist(), fill.tolist()):
            p[i, :, yy:yy + hh, xx:xx + ww] = f
    return (p - mean) / std
