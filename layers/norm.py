"""Batch norm for group maps, with statistics shared over the group axis."""

from __future__ import annotations

from torch import Tensor, nn

from gzoo._checks import check_int

__all__ = ["GroupBatchNorm"]


class GroupBatchNorm(nn.BatchNorm3d):
    """Batch norm over ``[B, C, |G|, H, W]`` with one mean, variance, scale and shift per field.

    Statistics pool over batch, group axis and space, so permuting the group axis (the group
    action on a regular field) commutes with the normalisation: the layer is equivariant.
    ``num_features`` counts fields; ``group_order`` (optional) checks the group axis size.
    """

    def __init__(self, num_features: int, group_order: int | None = None, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None) -> None:
        check_int("num_features", num_features)
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype)
        self.group_order = None if group_order is None else check_int("group_order", group_order)

    def _check_input_dim(self, input: Tensor) -> None:
        bad = input.dim() != 5 or input.shape[1] != self.num_features
        if self.group_order is not None and input.dim() == 5:
            bad = bad or input.shape[2] != self.group_order
        if bad:
            g = "|G|" if self.group_order is None else str(self.group_order)
            raise ValueError(
                f"GroupBatchNorm expects a group map [B, {self.num_features}, {g}, H, W], "
                f"got shape {list(input.shape)}"
            )
