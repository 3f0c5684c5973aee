"""The six hand-written layers: each binds one group to the engine, lifting or not."""

from __future__ import annotations

import torch

from gzoo.groups import C4, C8, D4, Group

from .engine import GroupCorrelation

__all__ = ["P4Conv", "P4LiftConv", "P4MConv", "P4MLiftConv", "P8Conv", "P8LiftConv"]


class _Bound(GroupCorrelation):
    """A :class:`GroupCorrelation` with its group and kind fixed by the subclass."""

    GROUP: Group
    LIFTING: bool

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            self.GROUP, in_channels, out_channels, kernel_size, stride, padding, dilation,
            bias, padding_mode, lifting=self.LIFTING, device=device, dtype=dtype,
        )


class P4LiftConv(_Bound):
    """p4 lifting correlation (eq. 14): ``[B, C_in, H, W] → [B, C_out, 4, H', W']``."""

    GROUP, LIFTING = C4, True


class P4Conv(_Bound):
    """p4 group correlation (eq. 15): ``[B, C_in, 4, H, W] → [B, C_out, 4, H', W']``."""

    GROUP, LIFTING = C4, False


class P4MLiftConv(_Bound):
    """p4m lifting correlation (eq. 14): ``[B, C_in, H, W] → [B, C_out, 8, H', W']``."""

    GROUP, LIFTING = D4, True


class P4MConv(_Bound):
    """p4m group correlation (eq. 15): ``[B, C_in, 8, H, W] → [B, C_out, 8, H', W']``."""

    GROUP, LIFTING = D4, False


class P8LiftConv(_Bound):
    """p8 lifting correlation (eq. 14) with square-ring 45° rotations.

    ``[B, C_in, H, W] → [B, C_out, 8, H', W']``. Exactly equivariant under the 90° subgroup and
    under ring rotation of a k×k stencil; only approximately under 45° turns of whole images.
    """

    GROUP, LIFTING = C8, True


class P8Conv(_Bound):
    """p8 group correlation (eq. 15) with square-ring 45° rotations.

    ``[B, C_in, 8, H, W] → [B, C_out, 8, H', W']``; equivariance as :class:`P8LiftConv`.
    """

    GROUP, LIFTING = C8, False
