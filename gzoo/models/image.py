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
also under mirrors (p4m); for p8 approximately under 45° turns (square-ring rotation, see
:mod:`gzoo.groups`). Batch norm shares its statistics over each field (:class:`GroupBatchNorm`).

Parameters: ``25w + w`` (lift) ``+ 5(9|G|w² + w)`` (group convolutions) ``+ 12w`` (batch
norm) ``+ 10w + 10`` (readout) for gzoo's layers; e2cnn's twins learn fewer per convolution (a
band-limited basis, :mod:`gzoo.layers.reference`). E.g. p4, w = 11: 22,373.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from gzoo._checks import check_int
from gzoo.groups import GROUPS
from gzoo.layers import GroupBatchNorm, SpatialPool
from gzoo.mnist import NUM_CLASSES, check_images

# the (lifting, group) layer classes per group, and their e2cnn twins (imported on demand)
from .gcnn import _LAYERS as _GZOO_LAYERS
from .gcnn import BACKENDS, _e2cnn_layers

__all__ = ["IMAGE_BACKENDS", "IMAGE_GROUPS", "IMAGE_MODELS", "RotMNISTNet"]

#: ``None`` is the plain CNN.
IMAGE_GROUPS = (None, "p4", "p4m", "p8")
IMAGE_BACKENDS = BACKENDS  # "gzoo" (hand-written layers) or "e2cnn" (their twins)
_N_CONV = 6  # the 5×5 lift + 5 group convolutions (3×3)
_LIFT_K = 5


def _p8_rotation_kwargs(cls: type[nn.Module], rotation: str) -> dict[str, Any]:
    """``{"rotation": ...}`` for the p8 layers when not the default square-ring rotation.

    The hook for band-limited ("harmonic") p8 filters: passed through to the layer if its
    constructor takes ``rotation``; a clear error if this gzoo's layers do not.
    """
    if rotation == "ring":
        return {}
    if "rotation" not in inspect.signature(cls.__init__).parameters:
        raise ValueError(
            f"p8 rotation {rotation!r} is not available: {cls.__name__} here only does the "
            "square-ring rotation ('ring')")
    return {"rotation": rotation}


class RotMNISTNet(nn.Module):
    """A rotation-invariant digit classifier (module docstring): ``[B, 1, 28, 28]`` pixels in
    [0, 1] → logits ``[B, 10]``.

    Args:
        group: ``"p4"``, ``"p4m"``, ``"p8"``, or ``None`` for the plain CNN.
        width: fields per layer (channels for the plain CNN).
        backend: ``"gzoo"`` (hand-written layers) or ``"e2cnn"`` (their e2cnn twins: C4, D4 and
            C8 regular fields); the plain CNN has only ``"gzoo"`` (``nn.Conv2d``).
        dropout: dropout probability on the invariant features before the readout.
        rotation: p8 only: ``"ring"`` (square-ring 45° rotations) or another filter rotation
            the p8 layers accept (the hook for ``"harmonic"``).
    """

    def __init__(self, group: str | None = "p4", width: int = 11, backend: str = "gzoo",
                 dropout: float = 0.0, rotation: str = "ring") -> None:
        super().__init__()
        if group is not None:
            group = str(group).lower()
        if group not in IMAGE_GROUPS:
            raise ValueError(f"group must be one of {IMAGE_GROUPS}, got {group!r}")
        width = check_int("width", width)
        if backend not in IMAGE_BACKENDS:
            raise ValueError(f"backend must be one of {IMAGE_BACKENDS}, got {backend!r}")
        if group is None and backend != "gzoo":
            raise ValueError("the plain CNN (group=None) has no e2cnn backend")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) \
                or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
        if not isinstance(rotation, str):
            raise TypeError(f"rotation must be a str, got {type(rotation).__name__}")
        if rotation != "ring" and group != "p8":
            raise ValueError(f"rotation {rotation!r} applies to p8 only (group is {group!r})")
        self._kwargs = {"group": group, "width": width, "backend": backend,
                        "dropout": float(dropout), "rotation": rotation}
        self.group = group
        self.backend = backend
        self.width = width
        self.group_order = 1 if group is None else GROUPS[group].order

        if group is None:
            self.convs = nn.ModuleList(
                nn.Conv2d(1 if i == 0 else width, width, _LIFT_K if i == 0 else 3)
                for i in range(_N_CONV))
            self.norms = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(_N_CONV))
            self.pool = nn.MaxPool2d(2)
        else:
            lift, conv = _GZOO_LAYERS[group] if backend == "gzoo" else _e2cnn_layers(group)
            extra = _p8_rotation_kwargs(lift, rotation) if group == "p8" else {}
            self.convs = nn.ModuleList(
                [lift(1, width, _LIFT_K, **extra)]
                + [conv(width, width, 3, **extra) for _ in range(_N_CONV - 1)])
            self.norms = nn.ModuleList(
                GroupBatchNorm(width, self.group_order) for _ in range(_N_CONV))
            self.pool = SpatialPool(2)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(width, NUM_CLASSES)

    # ------------------------------------------------------------------ description
    def init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments, JSON-able: ``RotMNISTNet(**m.init_kwargs())`` rebuilds m."""
        return dict(self._kwargs)

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def name(self) -> str:
        """Short name: ``cnn``, ``p4``, ``p4m``, ``p8`` (``p8-harmonic``), ``e2cnn-C8``, ..."""
        if self.group is None:
            return "cnn"
        if self.backend == "e2cnn":
            return "e2cnn-" + {"p4": "C4", "p4m": "D4", "p8": "C8"}[self.group]
        rot = self._kwargs["rotation"]
        return self.group if rot == "ring" else f"{self.group}-{rot}"

    # ------------------------------------------------------------------ forward
    def features(self, x: Tensor) -> Tensor:
        """The invariant feature vector ``[B, width]`` (before dropout and readout)."""
        h = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = torch.relu(norm(conv(h)))
            if i == 0:
                h = self.pool(h)  # 24×24 → 12×12
        if self.group is not None:
            h = h.amax(dim=2)  # group pool: max over g, [B, w, H, W]
        return h.mean(dim=(-2, -1))  # spatial mean over the final 2×2

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, type(self).__name__)
        return self.readout(self.dropout(self.features(x)))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, n_params={self.n_params}"


#: Image model classes by class name (what an image checkpoint's ``config.json`` records).
IMAGE_MODELS: dict[str, type[RotMNISTNet]] = {RotMNISTNet.__name__: RotMNISTNet}
