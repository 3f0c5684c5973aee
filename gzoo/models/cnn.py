"""The project notes' plain CNNs (section 1.1.3): ``SimpleCNNTiny``, ``SimpleCNNSmall``,
``MultiScale``.

The notes give ``MultiScale`` in full and say only that the two simple CNNs use 5×5 kernels;
their layouts here (one 5×5 circular convolution, then 1×1 convolutions) are gzoo's choice.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gzoo._checks import check_int

from .base import CAModel

__all__ = ["MultiScale", "SimpleCNN", "SimpleCNNSmall", "SimpleCNNTiny"]


class SimpleCNN(CAModel):
    """``k×k`` circular conv (2 → width) → ReLU → [1×1 conv (width → width) → ReLU] × depth →
    1×1 conv (width → 2). Receptive field ``k``.

    Args:
        width: hidden channels.
        depth: number of 1×1 hidden convolutions after the first layer.
        kernel_size: odd side of the first (and only spatial) kernel.
    """

    def __init__(self, width: int = 4, depth: int = 0, kernel_size: int = 5) -> None:
        super().__init__()
        width = check_int("width", width)
        depth = check_int("depth", depth, minimum=0)
        k = check_int("kernel_size", kernel_size)
        if k % 2 == 0:
            raise ValueError(f"kernel_size must be odd (centred on the cell), got {k}")
        self._kwargs = {"width": width, "depth": depth, "kernel_size": k}
        self.receptive_field = k
        layers: list[nn.Module] = [
            nn.Conv2d(2, width, k, padding=k // 2, padding_mode="circular"), nn.ReLU()
        ]
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.net(x)


class SimpleCNNTiny(SimpleCNN):
    """The notes' ``SimpleCNNTiny``: 5×5 conv to 4 channels, ReLU, 1×1 readout (214 params)."""

    def __init__(self, width: int = 4, depth: int = 0, kernel_size: int = 5) -> None:
        super().__init__(width, depth, kernel_size)


class SimpleCNNSmall(SimpleCNN):
    """The notes' ``SimpleCNNSmall``: 5×5 conv to 8 channels, ReLU, 1×1 conv, ReLU, 1×1
    readout (498 params)."""

    def __init__(self, width: int = 8, depth: int = 1, kernel_size: int = 5) -> None:
        super().__init__(width, depth, kernel_size)


def _branch(k: int, padding: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 2, k, padding=padding, dilation=dilation, padding_mode="circular"),
        nn.BatchNorm2d(2),
        nn.LeakyReLU(0.1),
    )


class MultiScale(CAModel):
    """The notes' ``MultiScale`` (version 0.2.0): three parallel 2-channel branches, then a stem.

    Branches (each Conv2d → BatchNorm2d → LeakyReLU(0.1), circular padding): 3×3; 5×5; 3×3 with
    dilation 2. Their outputs are concatenated (6 channels) and fed to the stem
    ``Conv2d(6→4, 3×3) → BatchNorm2d(4) → ReLU → Conv2d(4→2, 3×3)``.

    **Fix:** the notes' stem ends in ``Conv2d(2→2)`` after a 4-channel layer, which cannot run
    (channel mismatch); here the last convolution is ``Conv2d(4→2)``.

    Receptive field: 5 (widest branch) + 2 + 2 = 9. Batch norm makes train- and eval-mode
    outputs differ: evaluate in eval mode.
    """

    receptive_field = 9

    def __init__(self) -> None:
        super().__init__()
        self.conv_3x3 = _branch(3, padding=1)
        self.conv_5x5 = _branch(5, padding=2)
        self.conv_3x3_dilated = _branch(3, padding=2, dilation=2)
        self.stem = nn.Sequential(
            nn.Conv2d(6, 4, 3, padding=1, padding_mode="circular"),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 2, 3, padding=1, padding_mode="circular"),  # notes: Conv2d(2, 2)
        )

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        h = torch.cat([self.conv_3x3(x), self.conv_5x5(x), self.conv_3x3_dilated(x)], dim=1)
        return self.stem(h)
