r"""Image classifiers for 28×28 digits: a plain CNN and its p4, p4m and p8 twins, on gzoo's
layers or on e2cnn's.

One architecture for every group (P4CNN-like, after Cohen & Welling 2016), ``w`` = ``width``
fields (a field is ``|G|`` channels; the plain CNN has ``w`` channels, ``|G| = 1``)::

    x ∈ [0,1]^{1×28×28}
    lift 5×5 (1 → w)      24×24   BN, ReLU, 2×2 max pool → 12×12
                                  f¹(g) = Σ_y x(y) ψ(g⁻¹y)                      (eq. 14)
    conv 3×3 (w → w) × 5  10, 8, 6, 4, 2   BN, ReLU   fˡ⁺¹(g) = Σ_h fˡ(h) ψ(g⁻¹h)   (eq. 15)
    z = mean_y max_g f⁶(g, y)      invariant features [w]  (group pool, then 2×2 spatial mean)
    logits = A · dropout(z) + c    [10]

The 5×5 lift and the early pool keep the cost at about a third of a P4CNN-style stack of 3×3
layers that pools after the second layer (most of whose work is at 24×24), at the same depth
of receptive field (28×28: the last unit sees the whole image).

Every step commutes with the group's action on the input (valid convolutions and the 2×2 pool
tile a map of even side symmetrically about its centre), and the readout pools over the
group and over space, so the logits are *invariant*: exactly under 90° turns (p4, p8) and
also under mirrors (p4m); for p8 approximately under 45° turns — with square-ring rotated
pixel filters (``rotation="ring"``) or band-limited ones (``rotation="harmonic"``,
:mod:`gzoo.layers.harmonic`, e2cnn's C8 basis). Batch norm shares its statistics over each
field (:class:`GroupBatchNorm`).

Parameters: ``25w + w`` (lift) ``+ 5(9|G|w² + w)`` (group convolutions) ``+ 12w`` (batch
norm) ``+ 10w + 10`` (readout) for pixel filters; harmonic p8 filters and e2cnn's twins learn
fewer per convolution (J = 11 and 6 basis coefficients for a 5×5 and a 3×3 filter instead of
25 and 9). E.g. p4, w = 11: 22,373; harmonic p8 or e2cnn's C8, w = 10: 24,400.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gzoo._checks import check_float, check_int
from gzoo.groups import GROUPS
from gzoo.layers import ROTATIONS, GroupBatchNorm, SpatialPool
from gzoo.mnist import NUM_CLASSES, check_images

# the (lifting, group) layer classes per group, and their e2cnn twins (imported on demand)
from .base import ZooModel, check_param_budget
from .gcnn import _LAYERS as _GZOO_LAYERS
from .gcnn import BACKENDS, _e2cnn_layers

__all__ = ["IMAGE_GROUPS", "RotMNISTNet"]

#: ``None`` is the plain CNN.
IMAGE_GROUPS = (None, "p4", "p4m", "p8")
_N_CONV = 6  # the 5×5 lift + 5 group convolutions (3×3)
_LIFT_K = 5
#: e2cnn's name of each group's regular-field twin.
_E2CNN_NAMES = {"p4": "C4", "p4m": "D4", "p8": "C8"}


def pixel_filter_params(width: int, order: int) -> int:
    """The parameters of :class:`RotMNISTNet` with pixel filters (module docstring):
    ``26w + 5(9|G|w² + w) + 12w + 10w + 10``; an upper bound for band-limited filters."""
    return 26 * width + 5 * (9 * order * width * width + width) + 12 * width + 10 * width + 10


class RotMNISTNet(ZooModel):
    """A rotation-invariant digit classifier (module docstring): ``[B, 1, 28, 28]`` pixels in
    [0, 1] (white digit on black, as MNIST stores them) → logits ``[B, 10]``.

    Args:
        group: ``"p4"``, ``"p4m"``, ``"p8"``, or ``None`` for the plain CNN.
        width: fields per layer (channels for the plain CNN).
        backend: ``"gzoo"`` (hand-written layers) or ``"e2cnn"`` (their e2cnn twins: C4, D4 and
            C8 regular fields); the plain CNN has only ``"gzoo"`` (``nn.Conv2d``).
        dropout: dropout probability on the invariant features before the readout, in [0, 1).
        rotation: gzoo's p8 layers only: how the 45° filter copies are made, ``"ring"``
            (square-ring pixel permutation) or ``"harmonic"`` (band-limited filters).

    The size is checked from the arguments before anything is allocated
    (:data:`gzoo.models.MAX_PARAMS`).
    """

    def __init__(self, group: str | None = "p4", width: int = 11, backend: str = "gzoo",
                 dropout: float = 0.0, rotation: str = "ring") -> None:
        super().__init__()
        if group is not None:
            if not isinstance(group, str):
                raise TypeError(f"group must be a str or None, got {type(group).__name__} "
                                f"{group!r}")
            group = group.lower()
        if group not in IMAGE_GROUPS:
            raise ValueError(f"group must be one of {IMAGE_GROUPS}, got {group!r}")
        width = check_int("width", width)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if group is None and backend != "gzoo":
            raise ValueError("the plain CNN (group=None) has no e2cnn backend")
        dropout = check_float("dropout", dropout, 0.0, 1.0)
        if dropout == 1.0:
            raise ValueError("dropout must be below 1, got 1.0 (it would drop every feature)")
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
        if rotation != "ring" and (group != "p8" or backend != "gzoo"):
            raise ValueError(f"rotation {rotation!r} applies to gzoo's p8 layers only (group "
                             f"{group!r}, backend {backend!r})")
        self._kwargs = {"group": group, "width": width, "backend": backend,
                        "dropout": dropout, "rotation": rotation}
        order = 1 if group is None else GROUPS[group].order
        check_param_budget("RotMNISTNet", self._kwargs, pixel_filter_params(width, order))
        self.group = group
        self.backend = backend
        self.width = width
        self.group_order = order

        if group is None:
            self.convs = nn.ModuleList(
                nn.Conv2d(1 if i == 0 else width, width, _LIFT_K if i == 0 else 3)
                for i in range(_N_CONV))
            self.norms = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(_N_CONV))
            self.pool: nn.Module = nn.MaxPool2d(2)
        else:
            lift, conv = _GZOO_LAYERS[group] if backend == "gzoo" else _e2cnn_layers(group)
            extra = {"rotation": rotation} if group == "p8" and backend == "gzoo" else {}
            self.convs = nn.ModuleList(
                [lift(1, width, _LIFT_K, **extra)]
                + [conv(width, width, 3, **extra) for _ in range(_N_CONV - 1)])
            self.norms = nn.ModuleList(GroupBatchNorm(width, order) for _ in range(_N_CONV))
            self.pool = SpatialPool(2)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(width, NUM_CLASSES)

    @property
    def name(self) -> str:
        """Short name: ``cnn``, ``p4``, ``p4m``, ``p8`` (``p8-harmonic``), ``e2cnn-C8``, ..."""
        if self.group is None:
            return "cnn"
        if self.backend == "e2cnn":
            return "e2cnn-" + _E2CNN_NAMES[self.group]
        rotation = self._kwargs["rotation"]
        return self.group if rotation == "ring" else f"{self.group}-{rotation}"

    def features(self, x: Tensor) -> Tensor:
        """The invariant feature vector ``[B, width]`` (before dropout and readout)."""
        h = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = torch.relu(norm(conv(h)))
            if i == 0:
                h = self.pool(h)  # 24×24 → 12×12
        if self.group is not None:
            h = h.amax(dim=2)  # group pool: max_g, [B, w, H, W]
        return h.mean(dim=(-2, -1))  # spatial mean over the final 2×2

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, type(self).__name__)
        return self.readout(self.dropout(self.features(x)))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, n_params={self.n_params}"
