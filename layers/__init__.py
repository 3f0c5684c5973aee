"""gzoo.layers: hand-written group-correlation layers for p4, p4m and p8, and their pieces.

The e2cnn twins live in :mod:`gzoo.layers.reference` (imported on demand: it loads e2cnn).
"""

from .conv import P4Conv, P4LiftConv, P4MConv, P4MLiftConv, P8Conv, P8LiftConv
from .engine import GroupConvBase, GroupCorrelation
from .norm import GroupBatchNorm
from .pooling import GroupPool, SpatialPool, group_pool

LAYERS = (P4LiftConv, P4Conv, P4MLiftConv, P4MConv, P8LiftConv, P8Conv)

__all__ = [
    "LAYERS",
    "GroupBatchNorm",
    "GroupConvBase",
    "GroupCorrelation",
    "GroupPool",
    "P4Conv",
    "P4LiftConv",
    "P4MConv",
    "P4MLiftConv",
    "P8Conv",
    "P8LiftConv",
    "SpatialPool",
    "group_pool",
]
