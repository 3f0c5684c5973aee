"""gzoo.layers: hand-written group-correlation layers for p4, p4m and p8 (ring or harmonic 45°
rotations), and their pieces.

The e2cnn twins live in :mod:`gzoo.layers.reference` (imported on demand: it loads e2cnn).
"""

from .conv import ROTATIONS, P4Conv, P4LiftConv, P4MConv, P4MLiftConv, P8Conv, P8LiftConv
from .engine import GroupConvBase, GroupCorrelation
from .harmonic import HarmonicP8Conv, HarmonicP8LiftConv
from .norm import GroupBatchNorm
from .pooling import GroupPool, SpatialPool, group_pool

LAYERS = (P4LiftConv, P4Conv, P4MLiftConv, P4MConv, P8LiftConv, P8Conv)
#: The band-limited p8 variants (``P8LiftConv/P8Conv(..., rotation="harmonic")`` builds these).
HARMONIC_LAYERS = (HarmonicP8LiftConv, HarmonicP8Conv)

__all__ = [
    "HARMONIC_LAYERS",
    "LAYERS",
    "ROTATIONS",
    "GroupBatchNorm",
    "GroupConvBase",
    "GroupCorrelation",
    "GroupPool",
    "HarmonicP8Conv",
    "HarmonicP8LiftConv",
    "P4Conv",
    "P4LiftConv",
    "P4MConv",
    "P4MLiftConv",
    "P8Conv",
    "P8LiftConv",
    "SpatialPool",
    "group_pool",
]
