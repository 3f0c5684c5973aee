"""The six hand-written layers: each binds one group to the engine, lifting or not (p8: with
ring or harmonic 45° rotations).

Constructor arguments are :class:`~gzoo.layers.engine.GroupConvBase`'s (``nn.Conv2d``'s).
C&W: T. S. Cohen and M. Welling, "Group Equivariant Convolutional Networks", ICML 2016; lifting
correlation is their eq. 10 (the notes' eq. 14), group correlation their eq. 11 (the notes'
eq. 15).
"""

from __future__ import annotations

import inspect
from typing import Any

from gzoo.groups import C4, C8, D4

from .engine import GroupConvBase, GroupCorrelation

__all__ = [
    "ROTATIONS", "P4Conv", "P4LiftConv", "P4MConv", "P4MLiftConv", "P8Conv", "P8LiftConv",
]


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


#: How a p8 layer makes the 45° copies of its filter: ``"ring"`` permutes pixels (square-ring
#: rotation, exact on a k×k stencil: cellular automata), ``"harmonic"`` turns the coefficients of
#: a band-limited circular-harmonic basis (accurate on smooth images; e2cnn's C8 basis, see
#: :mod:`gzoo.layers.harmonic`).
ROTATIONS = ("ring", "harmonic")


class _RotationDispatch(GroupCorrelation):
    """``P8LiftConv(..., rotation="harmonic")`` builds the harmonic subclass (an instance of
    ``P8LiftConv`` too). Apart from ``__init__`` so that ``inspect.signature`` reads the latter."""

    ROTATION = "ring"

    def __new__(cls, *args: Any, rotation: str = "ring", **kwargs: Any) -> _RotationDispatch:
        build: type[_RotationDispatch] = cls
        if rotation == "harmonic" and cls.ROTATION == "ring":
            from .harmonic import HARMONIC_OF  # harmonic.py subclasses the classes below

            build = HARMONIC_OF[cls]
        return super().__new__(build)


def rotation_signature(default: str) -> inspect.Signature:
    """``GroupConvBase``'s constructor signature plus the keyword ``rotation=default``: what
    ``help()`` and ``inspect.signature`` show for the p8 layers (which take ``*args``)."""
    base = inspect.signature(GroupConvBase.__init__)
    rotation = inspect.Parameter("rotation", inspect.Parameter.KEYWORD_ONLY, default=default,
                                 annotation="str")
    return base.replace(parameters=[*base.parameters.values(), rotation])


class _P8(_RotationDispatch):
    """A p8 layer: ``nn.Conv2d``'s arguments and ``rotation``, how the 45° copies are made."""

    def __init__(self, *args: Any, rotation: str = "ring", **kwargs: Any) -> None:
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
        if rotation != self.ROTATION:
            raise ValueError(
                f"{type(self).__name__} makes {self.ROTATION!r} rotations, got rotation="
                f"{rotation!r}; build P8LiftConv/P8Conv(..., rotation={rotation!r}) instead"
            )
        super().__init__(*args, **kwargs)
        self.rotation = rotation

    __init__.__signature__ = rotation_signature("ring")  # type: ignore[attr-defined]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rotation={self.rotation!r}"


class P8LiftConv(_P8):
    """p8 lifting correlation (C&W eq. 10): ``[B, C_in, H, W] → [B, C_out, 8, H', W']``.

    ``rotation="ring"`` (default): square-ring 45° rotations of a pixel filter; exactly
    equivariant under the 90° subgroup and under ring rotation of a k×k stencil, only
    approximately under 45° turns of whole images. ``rotation="harmonic"``: a band-limited
    filter whose 45° copy is computed in its circular-harmonic basis (:mod:`gzoo.layers.harmonic`):
    exact under the 90° subgroup, as accurate as e2cnn's C8 under 45° turns of smooth images.
    """

    GROUP, LIFTING = C8, True


class P8Conv(_P8):
    """p8 group correlation (C&W eq. 11): ``[B, C_in, 8, H, W] → [B, C_out, 8, H', W']``.

    ``rotation`` and equivariance as :class:`P8LiftConv`.
    """

    GROUP, LIFTING = C8, False
