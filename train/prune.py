"""Narrow a trained `EmotionNet` to fewer channels per stage, keeping its most useful channels.

A fine-tuning start for a cheaper network: each convolution keeps the output channels that carry the
most signal forward, scored on a calibration batch as

    score(c) = RMS of the channel's activation (after batch norm and ReLU) x L2 norm of the weights
               that read channel c in the next layer (the next convolution, or both heads)

(a first-order estimate of how much the next layer's input changes if the channel is removed). The
next layer keeps only the input channels that survive. Depths stay as they are; only widths shrink.
"""

from __future__ import annotations

import torch

from .model import EmotionNet


@torch.no_grad()
def prune(net: EmotionNet, widths: tuple[int, ...], calib: torch.Tensor) -> EmotionNet:
    """A new network of `widths` (same depths) holding `net`'s highest-scoring channels, in eval mode."""
    if len(widths) != len(net.widths) or any(w > old for w, old in zip(widths, net.widths)):
        raise ValueError(f"widths {widths}: need one per stage of {net.widths}, none larger")
    net = net.eval()
    blocks = net.blocks()
    acts: list[torch.Tensor] = []
    hooks = [blk[2].register_forward_hook(lambda _m, _i, out: acts.append(out.pow(2).mean((0, 2, 3)).sqrt()))
             for blk in blocks]
    net(calib)
    for h in hooks:
        h.remove()
    readers = [blocks[i + 1][0].weight for i in range(len(blocks) - 1)]
    readers.append(torch.cat([net.cls_head.weight, net.int_head.weight])[:, :, None, None])
    keep = []
    for rms, reader, w in zip(acts, readers, block_widths(widths, net.depths)):
        score = rms * reader.pow(2).sum((0, 2, 3)).sqrt()
        keep.append(score.topk(w).indices.sort().values)
    return keep_channels(net, widths, keep)


def block_widths(widths: tuple[int, ...], depths: tuple[int, ...]) -> list[int]:
    """The output width of each convolution block, in order: every block of stage i has widths[i]."""
    return [w for w, d in zip(widths, depths) for _ in range(d)]


@torch.no_grad()
def keep_channels(net: EmotionNet, widths: tuple[int, ...], keep: list[torch.Tensor]) -> EmotionNet:
    """A network of `widths` made of `net`'s output channels `keep[i]` of each convolution block (and
    the matching input channels of the next block and of the heads), in eval mode."""
    with torch.random.fork_rng():  # its random init is overwritten: leave the caller's random stream alone
        small = EmotionNet(widths, dropout=net.dropout.p, depths=net.depths)
    prev = torch.arange(1)  # the grey input channel
    for blk, new, k in zip(net.blocks(), small.blocks(), keep):
        new[0].weight.copy_(blk[0].weight[k][:, prev])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new[1], name).copy_(getattr(blk[1], name)[k])
        prev = k
    for head in ("cls_head", "int_head"):
        getattr(small, head).weight.copy_(getattr(net, head).weight[:, prev])
        getattr(small, head).bias.copy_(getattr(net, head).bias)
    return small.eval()
