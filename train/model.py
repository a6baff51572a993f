"""The edgefer network: a compact VGG-style CNN with a classification and an intensity head.

The published FER system used a VGG-style CNN with a softmax head and a second, sigmoid head
for per-emotion intensity. This is the same idea shrunk for edge devices: stages of 3x3
convolutions with batch norm (max pooling between stages), global average pooling, and two linear
heads on a shared embedding. FLOPs are counted as 2 x multiply-accumulates (see `count_macs`).
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


#: The two sizes of one contract (issue 24): stage widths and 3x3 convolutions per stage. "fast" is the
#: embedded model's network (75 M multiply-accumulates per face, 150 MFLOPs: the Pi's); "large" is the
#: wide teacher of stages 12 and 13 (468 M, 0.94 GFLOPs: for Jetson through TensorRT and for x86).
SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "fast": ((32, 64, 128, 256), (1, 2, 2, 1)),
    "large": ((64, 128, 256, 512), (2, 2, 2, 2)),
}


class EmotionNet(nn.Module):
    """Grayscale face (N x 1 x S x S) -> (logits N x 7, intensity N x 7 in 0..1)."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), num_classes: int = 7,
                 dropout: float = 0.3, depths: tuple[int, ...] = (1, 2, 2, 1)) -> None:
        super().__init__()
        if len(widths) != len(depths) or min(depths, default=0) < 1:
            raise ValueError(f"one depth >= 1 per stage width: widths {widths}, depths {depths}")
        self.widths, self.depths = tuple(widths), tuple(depths)
        layers: list[nn.Module] = []
        cin = 1
        for i, (w, d) in enumerate(zip(widths, depths)):
            if i:
                layers.append(nn.MaxPool2d(2))  # each later stage works at half the resolution
            for _ in range(d):
                layers.append(_conv(cin, w))
                cin = w
        # With the default layout the module indices are those of every checkpoint made before
        # `depths` existed: 48 -> 24 -> 12 -> 6 pixels, 1 + 2 + 2 + 1 convolutions.
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.cls_head = nn.Linear(cin, num_classes)
        self.int_head = nn.Linear(cin, num_classes)

    def blocks(self) -> list[nn.Sequential]:
        """The convolution blocks (conv, batch norm, ReLU) in order."""
        return [m for m in self.features if isinstance(m, nn.Sequential)]

    def forward_raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and intensity *logits* (before the sigmoid), for the training losses."""
        z = self.dropout(self.features(x))
        return self.cls_head(z), self.int_head(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, int_logits = self.forward_raw(x)
        return logits, torch.sigmoid(int_logits)


def count_macs(model: nn.Module, size: int) -> int:
    """Multiply-accumulates of one forward pass on a 1 x 1 x size x size input."""
    macs = 0

    def conv_hook(m: nn.Conv2d, _inp, out):  # type: ignore[no-untyped-def]
        nonlocal macs
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs += out.numel() * k

    def lin_hook(m: nn.Linear, _inp, out):  # type: ignore[no-untyped-def]
        nonlocal macs
        macs += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return macs
