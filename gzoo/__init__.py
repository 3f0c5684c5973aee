"""gzoo: group-equivariant CNN layers (p4, p4m, p8), Life-like cellular automata, and a zoo of
pretrained networks that reproduce their rules exactly."""

from __future__ import annotations

__version__ = "0.1.0"

from gzoo.groups import C4, C8, D4, GROUPS, Group, get_group
from gzoo.layers import (
    GroupBatchNorm,
    GroupCorrelation,
    GroupPool,
    P4Conv,
    P4LiftConv,
    P4MConv,
    P4MLiftConv,
    P8Conv,
    P8LiftConv,
    SpatialPool,
    group_pool,
)

__all__ = [
    "C4",
    "C8",
    "D4",
    "GROUPS",
    "Group",
    "GroupBatchNorm",
    "GroupCorrelation",
    "GroupPool",
    "P4Conv",
    "P4LiftConv",
    "P4MConv",
    "P4MLiftConv",
    "P8Conv",
    "P8LiftConv",
    "SpatialPool",
    "__version__",
    "get_group",
    "group_pool",
]
