r"""e2cnn reference twins of the hand-written layers, and exact weight transfer between them.

Each ``E2*`` class wraps one :class:`e2cnn.nn.R2Conv` behind the constructor arguments and
tensor layout of its hand-written twin in :mod:`gzoo.layers` (``[B, C, H, W]`` into a lifting
layer, ``[B, C, |G|, H, W]`` into a group layer, ``[B, C_out, |G|, H', W']`` out), so a model
is switched to the e2cnn backend by swapping classes (see :data:`REFERENCE_OF`). Each is an
``R2Conv`` between ``C_in`` input fields (trivial for lifting layers, regular otherwise) and
``C_out`` regular output fields, on the gspace

* ``Rot2dOnR2(4)`` for :class:`E2P4LiftConv`, :class:`E2P4Conv` (twins of P4LiftConv, P4Conv);
* ``FlipRot2dOnR2(4)`` for :class:`E2P4MLiftConv`, :class:`E2P4MConv` (P4MLiftConv, P4MConv);
* ``Rot2dOnR2(8)`` for :class:`E2P8LiftConv`, :class:`E2P8Conv` (P8LiftConv, P8Conv).

Conventions (checked against e2cnn's own ``GeometricTensor.transform``, see the tests): e2cnn's
element order and actions are those of :mod:`gzoo.groups` — C_N element k is the rotation by
k·360°/N (``rot90(·, k)`` for C4), D4 element ``(m, k)`` is index ``4m + k`` and acts as
``rot90(flip(·, -1), k)``, and a regular field transforms as ``F'(h) = F(g⁻¹h)`` — so a
flattened group map ``[B, C·|G|, H, W]`` (field-major) is e2cnn's regular-field tensor.

**Parameters.** A hand-written layer learns every kernel pixel: ``C_out·C_in·k²`` (lifting) or
``C_out·C_in·|G|·k²`` weights. e2cnn learns the coefficients of a *band-limited steerable
basis*: the kernel is a sum of rings (radius r) × angular harmonics, keeping on each ring only
frequencies up to a cutoff that grows with r, so pixel patterns with high angular frequency on
the outer ring are not representable. For a 3×3 lifting field pair that is 6 coefficients
instead of 9: the centre, and frequencies 0, 1, 2 on the ring (1 + 2 + 2; the 8-pixel ring also
carries frequencies 3 and 4, which e2cnn cuts off); 11 instead of 25 for 5×5. A group layer
has |G| times as many (3×3: 24 vs 36 for p4, 48 vs 72 for p4m and p8). See
:func:`param_table`. Both have one bias per output field. Hence e2cnn → hand-written is
exact (:func:`load_from_e2cnn`); the reverse is not possible in general. The harmonic p8 layers
(``rotation="harmonic"``, :mod:`gzoo.layers.harmonic`) learn coefficients of e2cnn's own C8
basis (the same count), so they and the ``E2P8*`` twins span the same kernels.

**Eval-mode cache.** ``R2Conv.eval()`` caches the expanded filter; e2cnn builds it with
autograd on, so the cache would keep the graph (and its memory) alive, and it goes stale when
weights change in eval mode. These wrappers do not use it: each call gets its bank from
:class:`gzoo.layers.engine.EvalBankCache` — in eval mode with no gradient needed, the bank
built (under ``torch.no_grad()``) from a copy of the weights that still equals them (values,
dtype, device), so no write path (``p.data``, ``load_state_dict``, ``copy_``, an optimizer
step under ``no_grad``, ``.to()``) can leave it stale; otherwise (training, or autograd
recording in eval mode) e2cnn's expansion afresh, so weight gradients stay correct. Nothing of
it is in the ``state_dict`` (train- and eval-mode state dicts have the same keys).

**Shared bases.** By default e2cnn shares one sampled-basis module between all ``R2Conv`` with
the same types and kernel size, so ``.double()`` or ``.to("cuda")`` on one layer silently
converts the others (which then fail with a dtype or device mismatch). The wrappers build with
``recompute=True``: each layer owns its basis. The basis is sampled in torch's default dtype
at construction (normally float32); in float64 it is that float32 basis, converted.

Importing this module imports e2cnn and applies :mod:`gzoo.layers._e2cnn_compat` (numpy 2).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
from e2cnn import gspaces
from e2cnn import nn as enn
from torch import Tensor, nn

from gzoo.groups import C4, C8, D4, Group

from ._e2cnn_compat import E2CNN_PATCHES, patch_e2cnn
from .conv import P4Conv, P4LiftConv, P4MConv, P4MLiftConv, P8Conv, P8LiftConv
from .engine import EvalBankCache, GroupConvBase, GroupCorrelation
from .harmonic import HarmonicP8Conv, HarmonicP8LiftConv

__all__ = [
    "E2CNN_PATCHES",
    "REFERENCE_LAYERS",
    "REFERENCE_OF",
    "E2P4Conv",
    "E2P4LiftConv",
    "E2P4MConv",
    "E2P4MLiftConv",
    "E2P8Conv",
    "E2P8LiftConv",
    "E2Reference",
    "load_from_e2cnn",
    "param_count",
    "param_table",
    "patch_e2cnn",
]


@functools.cache
def _gspace(name: str) -> gspaces.GeneralOnR2:
    """One shared e2cnn gspace per group (it caches kernel bases; it holds no tensors)."""
    if name == "p4":
        return gspaces.Rot2dOnR2(4)
    if name == "p4m":
        return gspaces.FlipRot2dOnR2(4)  # mirror axis π/2: the column flip ``flip(-1)``
    if name == "p8":
        return gspaces.Rot2dOnR2(8)
    raise ValueError(f"no e2cnn gspace for group {name!r}; expected 'p4', 'p4m' or 'p8'")


class E2Reference(GroupConvBase):
    """Base of the e2cnn twins: an :class:`e2cnn.nn.R2Conv` with the hand-written layout.

    Constructor: exactly the hand-written twin's (:class:`gzoo.layers.engine.GroupConvBase`,
    ``nn.Conv2d``'s arguments: ``in_channels`` trivial fields for lifting layers and regular
    fields otherwise, ``out_channels`` regular fields of ``|G|`` channels, odd
    ``kernel_size``, ``stride``, ``padding`` (an int, ``(p, p)``, ``"same"`` or ``"valid"``),
    ``dilation``, ``bias``, ``padding_mode`` (all four are R2Conv's), ``device``, ``dtype``).

    Attributes: ``conv`` (the R2Conv), ``group`` (:class:`gzoo.groups.Group`), ``group_name``,
    ``group_order``, ``lifting``, ``in_channels``, ``out_channels``, ``kernel_size``,
    ``stride``, ``padding``, ``dilation``, ``padding_mode``; ``bank_cache`` (the
    :class:`~gzoo.layers.engine.EvalBankCache` serving eval calls).
    """

    GROUP: ClassVar[Group]
    LIFTING: ClassVar[bool]
    TWIN: ClassVar[type[GroupCorrelation]]
    _repr_prefix = "e2cnn "

    def _create_parameters(
        self, device: torch.device | str | None, dtype: torch.dtype | None
    ) -> None:
        self.group_name = self.group.name
        gs = _gspace(self.group_name)
        in_repr = gs.trivial_repr if self.lifting else gs.regular_repr
        conv = enn.R2Conv(
            enn.FieldType(gs, self.in_channels * [in_repr]),
            enn.FieldType(gs, self.out_channels * [gs.regular_repr]),
            self.kernel_size, padding=self.padding, stride=self.stride, dilation=self.dilation,
            padding_mode=self.padding_mode, bias=self.has_bias,
            recompute=True,  # a basis of its own (see the module docstring)
        )
        # R2Conv's own eval cache (persistent buffers built by R2Conv.train(False)) is not used:
        # its eval branch convolves with whatever ``filter``/``expanded_bias`` hold, and
        # forward sets them for each call (see there). The inner conv stays in that branch.
        del conv.filter, conv.expanded_bias
        conv.training = False
        self.conv = conv
        self.bank_cache = EvalBankCache()
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------ filter bank
    def expand_filter(self) -> Tensor:
        """e2cnn's expanded filter, ``[C_out·|G|, C_in·|G_in|, k, k]`` (the twin's bank layout)."""
        return self.conv.expand_parameters()[0]

    def expand_bias(self) -> Tensor | None:
        """e2cnn's expanded bias ``[C_out·|G|]``: ``b_o/√|G|`` on every channel of field ``o``."""
        return self.conv.expand_parameters()[1]

    def _bank_sources(self) -> list[Tensor]:
        """What e2cnn's bank is a function of: the basis coefficients and the field biases."""
        return [p for p in (self.conv.weights, self.conv.bias) if p is not None]

    def train(self, mode: bool = True) -> E2Reference:
        """Set train/eval mode as usual, but keep the inner R2Conv in its eval branch: it then
        convolves with the bank :meth:`forward` hands it, and ``R2Conv.train(False)`` (guarded
        by ``if self.training``) never builds its own eval filter, stale once weights change."""
        super().train(mode)
        self.conv.training = False
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        conv = self.conv
        t = enn.GeometricTensor(x if self.lifting else x.flatten(1, 2), conv.in_type)
        # The bank for this call: e2cnn's expansion (a basis contraction, costly at small sizes)
        # served from the eval cache when nothing needs a gradient, afresh otherwise.
        conv.filter, conv.expanded_bias = self.bank_cache.bank(
            self.training, self._bank_sources(), conv.expand_parameters)
        try:
            y = conv(t).tensor  # R2Conv's eval branch: conv2d with filter and expanded_bias
        finally:  # hold no autograd graph (or stale bank) between calls
            del conv.filter, conv.expanded_bias
        return y.unflatten(1, (self.out_channels, self.group_order))


class E2P4LiftConv(E2Reference):
    """e2cnn twin of :class:`~gzoo.layers.P4LiftConv`: ``Rot2dOnR2(4)``, trivial → regular."""

    GROUP, LIFTING, TWIN = C4, True, P4LiftConv


class E2P4Conv(E2Reference):
    """e2cnn twin of :class:`~gzoo.layers.P4Conv`: ``Rot2dOnR2(4)``, regular → regular."""

    GROUP, LIFTING, TWIN = C4, False, P4Conv


class E2P4MLiftConv(E2Reference):
    """e2cnn twin of :class:`~gzoo.layers.P4MLiftConv`: ``FlipRot2dOnR2(4)``, trivial → regular."""

    GROUP, LIFTING, TWIN = D4, True, P4MLiftConv


class E2P4MConv(E2Reference):
    """e2cnn twin of :class:`~gzoo.layers.P4MConv`: ``FlipRot2dOnR2(4)``, regular → regular."""

    GROUP, LIFTING, TWIN = D4, False, P4MConv


class E2P8LiftConv(E2Reference):
    """e2cnn twin of :class:`~gzoo.layers.P8LiftConv`: ``Rot2dOnR2(8)``, trivial → regular.

    The exact twin of ``P8LiftConv(..., rotation="harmonic")`` (the same band-limited basis,
    see :mod:`gzoo.layers.harmonic`; :func:`load_from_e2cnn` maps it at dilation 1). Not an
    exact twin of the default ring-rotation layer: e2cnn's 45° kernel copies are the basis
    turned off-grid, the ring layer permutes pixels. All are exact on the 90° subgroup.
    """

    GROUP, LIFTING, TWIN = C8, True, P8LiftConv


class E2P8Conv(E2Reference):
    """e2cnn twin of :class:`~gzoo.layers.P8Conv`: ``Rot2dOnR2(8)``, regular → regular.

    The exact twin of ``P8Conv(..., rotation="harmonic")``, as :class:`E2P8LiftConv`.
    """

    GROUP, LIFTING, TWIN = C8, False, P8Conv


REFERENCE_LAYERS: tuple[type[E2Reference], ...] = (
    E2P4LiftConv, E2P4Conv, E2P4MLiftConv, E2P4MConv, E2P8LiftConv, E2P8Conv,
)
#: Hand-written class → its e2cnn twin (``REFERENCE_OF[P4Conv] is E2P4Conv``).
REFERENCE_OF: dict[type[GroupCorrelation], type[E2Reference]] = {
    c.TWIN: c for c in REFERENCE_LAYERS
}


@torch.no_grad()
def load_from_e2cnn(
    layer: GroupCorrelation, ref: E2Reference, *, check: bool = True
) -> GroupCorrelation:
    r"""Load hand-written ``layer`` (p4, p4m or harmonic p8) with the weights of its e2cnn twin.

    e2cnn's expanded filter ``K = ref.expand_filter()`` is, by the conventions above, the bank
    of the base kernel found in its identity rows:

    * lifting: ``K[o·|G| + g, i] = L_g ψ[o, i]`` with ``ψ[o, i] = K[o·|G|, i]``;
    * group: ``K[o·|G| + g, i·|G| + h] = L_g ψ[o, i, g⁻¹h]``
      with ``ψ[o, i, h] = K[o·|G|, i·|G| + h]``.

    So ``layer.weight ← K[::|G|]`` (reshaped) and ``layer.bias[o] ← β[o·|G|]`` where e2cnn's
    expanded bias ``β = P b`` spreads each field's bias over the field as ``b_o/√|G|`` (``P`` is
    the trivial column of the regular representation's change of basis). The two layers then
    compute the same function (up to float rounding, in any dtype). ``layer`` must have the
    same group, kind, channels, kernel size and bias flag; stride, padding, dilation and padding
    mode are not weights and are not checked.

    p8: the harmonic layers (``rotation="harmonic"``) have e2cnn's basis, so ``layer.weight``
    ← the least-squares coefficients of the identity rows (:meth:`coefficients_of`; exact, the
    rows lie in the span), and the whole bank then agrees, 45° rows included. The basis depends
    on the dilation in e2cnn and not here, so both must have dilation 1. The ring layers have
    no such map: their 45° copies are pixel permutations, e2cnn's are the basis turned
    off-grid, so no base kernel reproduces e2cnn's bank (they agree only on the 90°
    subgroup). A :class:`ValueError` says so.

    Args:
        layer: the hand-written layer to overwrite (in place).
        ref: its e2cnn twin (an :class:`E2Reference`).
        check: verify that ``layer``'s whole bank now equals e2cnn's (within 1e-5 relative in
            float32, 1e-12 in float64; measured on CPU: bit-exact in float32, ~4e-16 in float64;
            harmonic p8: 1e-5 in both, as e2cnn samples its basis in float32 unless built with
            a float64 default dtype) and that e2cnn's bias is constant on each field; a
            mismatch raises :class:`ValueError` (the conventions disagree).

    Returns:
        ``layer``.
    """
    if not isinstance(layer, GroupCorrelation):
        raise TypeError(f"layer must be a hand-written gzoo layer, got {type(layer).__name__}")
    if not isinstance(ref, E2Reference):
        raise TypeError(f"ref must be an e2cnn reference layer (E2*), got {type(ref).__name__}")
    harmonic = isinstance(layer, (HarmonicP8LiftConv, HarmonicP8Conv))
    if (layer.group.name == "p8" or ref.group_name == "p8") and not harmonic:
        raise ValueError(
            "no exact map from e2cnn to the ring-rotation p8 layers: e2cnn's 45° kernel copies "
            "are its basis turned off-grid, the ring layer's are square-ring pixel permutations; "
            "build the layer with rotation='harmonic' (e2cnn's basis) to load e2cnn's p8 weights"
        )
    if harmonic and (layer.dilation, ref.dilation) != (1, 1):
        raise ValueError(
            f"harmonic p8 layers match e2cnn at dilation 1 only (e2cnn samples its basis at "
            f"dilated offsets), got dilation {layer.dilation} (layer) and {ref.dilation} (ref)"
        )
    mine = (layer.group.name, layer.lifting, layer.in_channels, layer.out_channels,
            layer.kernel_size, layer.bias is not None)
    theirs = (ref.group_name, ref.lifting, ref.in_channels, ref.out_channels,
              ref.kernel_size, ref.conv.bias is not None)
    if mine != theirs:
        names = "(group, lifting, in_channels, out_channels, kernel_size, bias)"
        raise ValueError(f"layer {names} = {mine} does not match e2cnn ref {theirs}")

    n = layer.group_order
    filt, bias = ref.conv.expand_parameters()
    k = layer.kernel_size
    base = filt[::n].reshape(*layer.weight.shape[:2], *([] if layer.lifting else [n]), k, k)
    if isinstance(layer, (HarmonicP8LiftConv, HarmonicP8Conv)):  # e2cnn's basis: coefficients
        layer.weight.copy_(layer.coefficients_of(base))
    else:
        layer.weight.copy_(base)
    if layer.bias is not None:
        assert bias is not None
        layer.bias.copy_(bias[::n])
    if check:
        tol = 1e-5 if harmonic or torch.finfo(filt.dtype).bits <= 32 else 1e-12
        bank = layer.expand_filter().to(filt)
        err = float((bank - filt).abs().max() / filt.abs().max().clamp_min(1e-30))
        if err > tol:
            raise ValueError(
                f"e2cnn's filter bank is not the hand-written bank of its identity rows "
                f"(max relative error {err:.3g} > {tol:g}): the group conventions disagree"
            )
        if bias is not None:
            spread = bias.view(-1, n)
            berr = float((spread - spread[:, :1]).abs().max() / bias.abs().max().clamp_min(1e-30))
            if berr > tol:
                raise ValueError(f"e2cnn's bias is not constant on each field (spread {berr:.3g})")
    return layer


def param_count(layer: nn.Module) -> int:
    """Number of trainable parameters (weights + biases) of a layer or model."""
    return sum(p.numel() for p in layer.parameters() if p.requires_grad)


def param_table(
    in_channels: int = 1, out_channels: int = 1, kernel_size: int = 3
) -> list[dict[str, Any]]:
    """Parameter counts of every hand-written layer and its e2cnn twin, same arguments.

    Rows ``{"layer", "hand_written", "e2cnn"}`` (each count includes one bias per output
    field). e2cnn's are smaller: its band-limited basis omits high angular frequencies (see the
    module docstring); e.g. a 3×3 lifting field pair has 6 coefficients instead of 9.
    """
    rows = []
    for ref_cls in REFERENCE_LAYERS:
        args = (in_channels, out_channels, kernel_size)
        rows.append({
            "layer": ref_cls.TWIN.__name__,
            "hand_written": param_count(ref_cls.TWIN(*args)),
            "e2cnn": param_count(ref_cls(*args)),
        })
    return rows
