r"""Group-equivariant CNNs for Life-like rules: lift 3×3 → 1×1 group convolutions → group pool →
1×1 readout.

With ``x`` the one-hot board, ``ψ⁰`` the 3×3 lifting filter and ``ψ¹ … ψᴰ`` the 1×1 group
filters (``D`` = ``depth``), the network computes, for every cell ``y``,

    h⁰(g, y) = ReLU( Σ_{y'} x(y') ψ⁰(g⁻¹(y' − y)) + b⁰ )          lifting correlation, g ∈ G
    hˡ(g, y) = ReLU( Σ_{h ∈ G} hˡ⁻¹(h, y) ψˡ(g⁻¹h) + bˡ )         1×1 group correlation
    z(y)     = A · pool_{g ∈ G} hᴰ(g, y) + c                       group pool, 1×1 readout

so ``z(y)`` depends on the 3×3 neighbourhood of ``y`` only (receptive field 3) and is invariant
under the point group acting on that neighbourhood: rotations by 90° (p4), rotations and mirrors
(p4m), or the 45° square-ring rotations of the 3×3 stencil (p8, see :mod:`gzoo.groups`). Every
outer-totalistic rule (it depends on the centre and the neighbour *count*) has all three
symmetries, so these models can be exact, and :func:`gzoo.verify.verify_exact` can prove it.

Parameters (fields ``w`` = ``width``, ``|G|`` = group order, hand-written backend)::

    lift 2·w·9 + w,  each 1×1 group conv w·w·|G| + w,  readout 2·w + 2

e.g. p8, width 4, depth 1: 76 + 132 + 10 = 218. With ``backend="e2cnn"`` the group
convolutions are e2cnn's steerable ``R2Conv`` (fewer parameters: a band-limited basis, see
:mod:`gzoo.layers.reference`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gzoo._checks import check_int
from gzoo.groups import GROUPS
from gzoo.layers import GroupPool, P4Conv, P4LiftConv, P4MConv, P4MLiftConv, P8Conv, P8LiftConv

from .base import CAModel

__all__ = ["BACKENDS", "GCNN"]

BACKENDS = ("gzoo", "e2cnn")

_LAYERS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "p4": (P4LiftConv, P4Conv),
    "p4m": (P4MLiftConv, P4MConv),
    "p8": (P8LiftConv, P8Conv),
}


def _e2cnn_layers(group: str) -> tuple[type[nn.Module], type[nn.Module]]:
    """The e2cnn twins, imported on demand (importing e2cnn takes seconds)."""
    from gzoo.layers import reference as ref

    return {
        "p4": (ref.E2P4LiftConv, ref.E2P4Conv),
        "p4m": (ref.E2P4MLiftConv, ref.E2P4MConv),
        "p8": (ref.E2P8LiftConv, ref.E2P8Conv),
    }[group]


class GCNN(CAModel):
    """A small group-equivariant CNN with a 3×3 receptive field (see the module docstring).

    Args:
        group: ``"p4"``, ``"p4m"`` or ``"p8"``.
        width: fields per group layer (each field is ``|G|`` channels).
        depth: number of 1×1 group convolutions after the lifting layer (``≥ 0``).
        backend: ``"gzoo"`` (hand-written layers) or ``"e2cnn"`` (the e2cnn reference twins).
        pool: group pooling, ``"max"`` or ``"mean"``.
    """

    receptive_field = 3

    def __init__(
        self,
        group: str = "p8",
        width: int = 4,
        depth: int = 1,
        backend: str = "gzoo",
        pool: str = "max",
    ) -> None:
        super().__init__()
        group = str(group).lower()
        if group not in _LAYERS:
            raise ValueError(f"unknown group {group!r}; expected one of {sorted(_LAYERS)}")
        width = check_int("width", width)  # fields per layer
        depth = check_int("depth", depth, minimum=0)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if pool not in ("max", "mean"):
            raise ValueError(f"pool must be 'max' or 'mean', got {pool!r}")
        self._kwargs = {
            "group": group, "width": width, "depth": depth, "backend": backend, "pool": pool
        }
        self.group = group
        self.group_order = GROUPS[group].order
        self.backend = backend
        lift_cls, conv_cls = _LAYERS[group] if backend == "gzoo" else _e2cnn_layers(group)
        self.lift = lift_cls(2, width, 3, padding=1, padding_mode="circular")
        self.convs = nn.ModuleList(conv_cls(width, width, 1) for _ in range(depth))
        self.pool = GroupPool(pool)
        self.readout = nn.Conv2d(width, 2, 1)

    def features(self, x: Tensor) -> Tensor:
        """The last group map ``[B, width, |G|, H, W]`` (before pooling)."""
        h = torch.relu(self.lift(x))
        for conv in self.convs:
            h = torch.relu(conv(h))
        return h

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.readout(self.pool(self.features(x)))

    def extra_repr(self) -> str:
        return f"group={self.group!r}, backend={self.backend!r}, " + super().extra_repr()
