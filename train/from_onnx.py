"""Rebuild a trainable `EmotionNet` from an exported edgefer ONNX model.

Export folds each batch norm into the convolution before it (conv weight W, bias b), so the ONNX
file holds only the folded network. To train from it again (as a fine-tuning start or a teacher),
each convolution gets its batch norm back in a form that changes nothing in eval mode:

    W' = W / s,  running mean = m / s,  running var = 1,  gamma = s * sqrt(1 + eps),  beta = m + b

where m and s are the per-channel mean and standard deviation of W * x on a calibration batch
(without one, m = 0 and s = 1). In eval mode the network is then exactly the ONNX one; in train
mode, where batch norm uses the batch's own statistics, it is close to it on data like the
calibration batch, and the convolution outputs have the unit variance batch norm expects.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from edgefer.errors import ConfigError
from edgefer.modelinfo import load_onnx, read_onnx_info

from .model import EmotionNet

if TYPE_CHECKING:
    import onnx


def network_from_onnx(path: Path, calib: torch.Tensor | None = None) -> EmotionNet:
    """The network of an edgefer ONNX model, in eval mode, with batch norms rebuilt (see above)."""
    from onnx import numpy_helper

    proto = load_onnx(path)
    read_onnx_info(proto, str(path))  # refuse ONNX files that are not edgefer models
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    try:
        folded = [(weights[n.input[1]], weights[n.input[2]]) for n in convs]
        heads = {k: weights[k] for k in ("cls_head.weight", "cls_head.bias", "int_head.weight", "int_head.bias")}
        widths, depths = layout_of(proto.graph.node, weights)
    except (KeyError, IndexError, ValueError):
        raise ConfigError(f"{path}: not the edgefer network's layout (folded 3x3 convolutions in stages, "
                          "two heads)") from None
    with torch.random.fork_rng():  # its random init is overwritten: leave the caller's random stream alone
        net = EmotionNet(widths, depths=depths)
    blocks = net.blocks()
    if len(blocks) != len(folded) or any(blk[0].weight.shape != w.shape for blk, (w, _) in zip(blocks, folded)):
        raise ConfigError(f"{path}: not the edgefer network's layout (convolution shapes differ)")

    with torch.no_grad():
        for blk, (w, b) in zip(blocks, folded):
            conv, bn = blk[0], blk[1]
            conv.weight.copy_(w)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.fill_((1 + bn.eps) ** 0.5)
            bn.bias.copy_(b)
        for name, value in heads.items():
            net.get_parameter(name).copy_(value)
    net.eval()
    if calib is not None:
        _restandardise(net, blocks, calib)
    return net


def layout_of(nodes: Iterable[onnx.NodeProto], weights: dict[str, torch.Tensor]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Stage widths and depths of an exported network: its convolutions in graph order, a new stage
    after each max pooling (the network is a plain chain, so graph order is layer order)."""
    widths: list[int] = []
    depths: list[int] = []
    new_stage = True
    for n in nodes:
        if n.op_type == "MaxPool":
            new_stage = True
        elif n.op_type == "Conv":
            w = int(weights[n.input[1]].shape[0])
            if new_stage:
                widths.append(w)
                depths.append(0)
                new_stage = False
            elif w != widths[-1]:
                raise ValueError(f"convolution of width {w} inside a stage of width {widths[-1]}")
            depths[-1] += 1
    if not widths:
        raise ValueError("no convolutions")
    return tuple(widths), tuple(depths)


@torch.no_grad()
def _restandardise(net: EmotionNet, blocks: list[nn.Sequential], calib: torch.Tensor) -> None:
    """Move each convolution's scale and offset into its batch norm, from statistics on `calib`."""
    outs: list[torch.Tensor] = []
    hooks = [blk[0].register_forward_hook(lambda _m, _i, out: outs.append(out)) for blk in blocks]
    net(calib)  # eval mode: the output does not depend on the batch norms' statistics
    for h in hooks:
        h.remove()
    for blk, z in zip(blocks, outs):
        conv, bn = blk[0], blk[1]
        m = z.mean((0, 2, 3))
        s = z.std((0, 2, 3), unbiased=False).clamp(min=1e-6)
        conv.weight.div_(s[:, None, None, None])
        bn.running_mean.copy_(m / s)
        bn.running_var.fill_(1.0)
        bn.weight.copy_(s * (1 + bn.eps) ** 0.5)
        bn.bias.add_(m)
