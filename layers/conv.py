"""The six hand-written layers: each binds one group to the engine, lifting or not.

Constructor arguments are :class:`~gzoo.layers.engine.GroupConvBase`'s (``nn.Conv2d``'s).
C&W: T. S. Cohen and M. Welling, "Group Equivariant Convolutional Networks", ICML 2016; lifting
correlation is their eq. 10 (the notes' eq. 14), group correlation their eq. 11 (the notes'
eq. 15).
"""

from __future__ import annotations

from gzoo.groups import C4, C8, D4

from .engine import GroupCorrelation

__all__ = ["P4Conv", "P4LiftConv", "P4MConv", "P4MLiftConv", "P8Conv", "P8LiftConv"]


class P4LiftConv(GroupCorrelation):
    """p4 lifting correlation (C&W eq. 10): ``[B, C_in, H, W] → [B, C_out, 4, H', W']``."""

    GROUP, LIFTING = C4, True


class P4Conv(GroupCorrelation):
    """p4 group correlation (C&W eq. 11): ``[B, C_in, 4, H, W] → [B, C_out, 4, H', W']``."""

    GROUP, LIFTING = C4, False


class P4MLiftConv(GroupCorrelation):
    """p4m lifting correlation (C&W eq. 10): ``[B, C_in, H, W] → [B, C_out, 8, H', W']``."""

    GROUP, LIFTING = D4, True


class P4MConv(GroupCorrelation):
    """p4m group correlation (C&W eq. 11): ``[B, C_in, 8, H, W] → [B, C_out, 8, H', W']``."""

    GROUP, LIFTING = D4, False


class P8LiftConv(GroupCorrelation):
    """p8 lifting correlation (C&W eq. 10) with square-ring 45° rotations.

    ``[B, C_in, H, W] → [B, C_out, 8, H', W']``. Exactly equivariant under the 90° subgroup and
    under ring rotation of a k×k stencil; only approximately under 45° turns of whole images.
    """

    GROUP, LIFTING = C8, True


class P8Conv(GroupCorrelation):
    """p8 group correlation (C&W eq. 11) with square-ring 45° rotations.

    ``[B, C_in, 8, H, W] → [B, C_out, 8, H', W']``; equivariance as :class:`P8LiftConv`.
    """

    GROUP, LIFTING = C8, False
