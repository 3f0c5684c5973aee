"""Pooling for group maps ``[B, C, |G|, H, W]``: over the group axis, or over space."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from gzoo._checks import check_int

__all__ = ["GroupPool", "SpatialPool", "group_pool"]


def _check_group_map(x: Tensor, who: str) -> None:
    if x.dim() != 5:
        raise ValueError(f"{who} expects a group map [B, C, |G|, H, W], got shape {list(x.shape)}")


def group_pool(x: Tensor, mode: str = "max") -> Tensor:
    """Pool over the group axis: ``[B, C, |G|, H, W] → [B, C, H, W]``.

    Invariant part of a regular field: ``max_g F(g, y)`` (or the mean) does not change when
    the group axis is permuted, so the result transforms as a Z² map.
    """
    _check_group_map(x, "group_pool")
    if mode == "max":
        return x.amax(dim=2)
    if mode == "mean":
        return x.mean(dim=2)
    raise ValueError(f"group pooling mode must be 'max' or 'mean', got {mode!r}")


class GroupPool(nn.Module):
    """Module form of :func:`group_pool`."""

    def __init__(self, mode: str = "max") -> None:
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(f"group pooling mode must be 'max' or 'mean', got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return group_pool(x, self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class SpatialPool(nn.Module):
    """Spatial max/avg pooling keeping the group axis: ``[B, C, |G|, H, W] → [B, C, |G|, H', W']``.

    Equivariant when the pooling windows tile the map symmetrically, i.e. when
    ``(H + 2p − k)`` is divisible by the stride (as for strided correlations).
    """

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0,
                 mode: str = "max") -> None:
        super().__init__()
        if mode not in ("max", "avg"):
            raise ValueError(f"spatial pooling mode must be 'max' or 'avg', got {mode!r}")
        self.kernel_size = check_int("kernel_size", kernel_size)
        self.stride = kernel_size if stride is None else check_int("stride", stride)
        self.padding = check_int("padding", padding, minimum=0, maximum=kernel_size // 2)
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        _check_group_map(x, "SpatialPool")
        c, g = x.shape[1], x.shape[2]
        flat = x.flatten(1, 2)
        if self.mode == "max":
            y = F.max_pool2d(flat, self.kernel_size, self.stride, self.padding)
        else:
            y = F.avg_pool2d(flat, self.kernel_size, self.stride, self.padding,
                             count_include_pad=False)
        return y.unflatten(1, (c, g))

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, mode={self.mode!r}")
