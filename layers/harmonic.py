r"""Band-limited ("harmonic") p8 filters: a 45° turn of a filter is a rotation of its
circular-harmonic coefficients, not a permutation of its pixels.

``P8LiftConv(..., rotation="harmonic")`` and ``P8Conv(..., rotation="harmonic")`` build the two
classes below. Every base filter ψ (one per output field, input field and, for group layers,
input group element) is a combination of J sampled basis functions::

    ψ(p) = Σ_j w_j b_j(p),    b_j(ρ, θ) = φ_r(ρ) cos mθ  or  φ_r(ρ) sin mθ,
    φ_r(ρ) = exp(−(ρ − r)² / 2σ_r²)

— Gaussian rings of radius r = 0, 1, …, c (c = k // 2) times circular harmonics of frequency
m ≤ F(r). Pixel (i, j) of a k×k filter sits at x = j − c, y = c − i (y up, so θ grows
counter-clockwise as displayed: the direction of ``rot90(·, 1, (-2, -1))``).

**Rotation.** Rotating ψ by α, ``[L_α ψ](p) = ψ(R_α⁻¹ p)``, turns each (cos, sin) coefficient
pair of frequency m by the angle mα::

    (a, b) ↦ (a cos mα − b sin mα,  a sin mα + b cos mα)

This is exact for the continuous filter, which is then sampled on the grid: no pixel is moved,
nothing is interpolated. The quarter turns are exact pixel permutations (``rot90`` of the sampled
basis, which equals the coefficient rotation by 90° because the grid is invariant under it), so
the layers are exactly equivariant under the 90° subgroup, to float precision, on any image.
Under 45° turns of a whole image they are as accurate as the sampled band-limited filter allows
— e2cnn's C8 accuracy, far better than the square-ring rotation of the pixel layers on smooth
images (figures in ``benchmarks/RESULTS.md``).

**Basis = e2cnn's** default for a ``Rot2dOnR2(8)`` ``R2Conv`` (its ``compute_basis_params`` with
the frequency cutoff ``_manual_fco1``): σ_0 = 0.005 (the centre pixel alone), σ_r = 0.6 on inner
rings and 0.4 on the outermost; F(0) = 0, F(c) = 2 and otherwise F(r) = 2r for odd r, 2r − 1 for
even r (r = 1 → 2, 2 → 3, 3 → 6, 4 → 7). A regular C8 field's base filter is unconstrained, so
e2cnn's kernel space is exactly {Σ_j w_j b_j} for each (output, input, input element): the two
layers span the same filters, and :func:`gzoo.layers.reference.load_from_e2cnn` maps an
``E2P8LiftConv``/``E2P8Conv`` onto these layers (J = 1, 6, 11, 18, 31 for k = 1, 3, 5, 7, 9;
e2cnn counts the same). One difference: e2cnn ties its basis to the dilation (it samples the
functions at dilated offsets, rings scaled, widths not); here the basis lives on the k×k kernel
grid and ``dilation`` only spreads it, as in ``conv2d``, so the twins coincide at dilation 1.

**Scale and init.** Both functions of a (ring, frequency) pair share one factor (the pair's
mean squared norm on the grid is 1; an m = 0 function has unit norm), so the coefficient
rotation stays orthogonal and i.i.d. coefficients give a rotation-invariant distribution of
filters. He init over the true fan-in ``C_in·|G_in|·J`` then gives each output unit an expected
filter energy of 2, as He init of a pixel filter does.

**Bank** (C&W eq. 10 / 11 = the notes' eq. 14 / 15, layout as :mod:`gzoo.layers.engine`)::

    bank[o·|G| + g, i·|G_in| + h] = L_g ψ[o, i, g⁻¹h] = Σ_j w[o, i, g⁻¹h, j] T[g, j]

with ``T[g]`` the basis turned by g·45°, precomputed. A group layer first permutes its
coefficients along the group axis (one ``index_select`` of the small coefficient tensor, the
regular permutation ``g⁻¹h``), then one batched matmul with ``T`` writes the bank in its final
layout (a lifting layer skips the permutation); then the engine's single ``conv2d``. Eval calls
under ``no_grad`` take the bank from the engine's value-checked
:class:`~gzoo.layers.engine.EvalBankCache` (as the e2cnn twins do: both banks are basis
contractions); ``export()`` and ``check_equivariance()`` are the engine's.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import Tensor, nn

from .conv import _P8, P8Conv, P8LiftConv, rotation_signature
from .engine import EvalBankCache, GroupCorrelation

__all__ = [
    "HARMONIC_OF", "HarmonicP8Conv", "HarmonicP8LiftConv", "coefficient_rotation", "rings",
    "sampled_basis",
]

_TURNS = 8  # C8: the basis is turned by multiples of 45°


def rings(kernel_size: int) -> tuple[tuple[int, float, int], ...]:
    """``(radius r, width σ_r, highest frequency F(r))`` of each ring: e2cnn's defaults."""
    c = kernel_size // 2
    out = []
    for r in range(c + 1):
        sigma = 0.005 if r == 0 else 0.4 if r == c else 0.6
        top = 0 if r == 0 else 2 if r == c else 2 * r - (r + 1) % 2  # e2cnn's _manual_fco1
        out.append((r, sigma, top))
    return tuple(out)


@functools.cache
def _sampled(kernel_size: int) -> tuple[Tensor, Tensor]:
    """``(T, D45)``: ``T`` ``[8, J, k²]`` float64, ``T[g, j]`` = basis function j turned by g·45°
    and sampled; ``D45`` ``[J, J]``, the coefficient rotation by 45° (``w ↦ D45 w``)."""
    k, c = kernel_size, kernel_size // 2
    ii, jj = torch.meshgrid(torch.arange(k, dtype=torch.float64),
                            torch.arange(k, dtype=torch.float64), indexing="ij")
    x, y = jj - c, c - ii
    rho, theta = torch.hypot(x, y), torch.atan2(y, x)
    rows: list[Tensor] = []
    pairs: list[tuple[int, int]] = []  # (row of the cos function, frequency m) of each pair
    for r, sigma, top in rings(k):
        profile = torch.exp(-0.5 * ((rho - r) / sigma) ** 2)  # φ_r(ρ)
        rows.append(profile / profile.norm())  # m = 0
        for m in range(1, top + 1):
            # cos mθ, sin mθ; at the centre θ is undefined and only m = 0 survives (as e2cnn)
            cos = torch.where(rho > 0, profile * torch.cos(m * theta), 0.0)
            sin = torch.where(rho > 0, profile * torch.sin(m * theta), 0.0)
            scale = math.sqrt(2.0) / torch.cat([cos, sin]).norm()  # one factor per pair
            pairs.append((len(rows), m))
            rows += [cos * scale, sin * scale]
    t0 = torch.stack(rows).flatten(1)  # [J, k²]
    # 45° turn in coefficient space: (a, b) ↦ (a cos mα − b sin mα, a sin mα + b cos mα)
    d45 = torch.eye(len(rows), dtype=torch.float64)
    for a, m in pairs:
        cs, sn = math.cos(m * math.pi / 4), math.sin(m * math.pi / 4)
        d45[a, a], d45[a, a + 1], d45[a + 1, a], d45[a + 1, a + 1] = cs, -sn, sn, cs
    # L_α ψ = (D w)ᵀ T0 = wᵀ (Dᵀ T0): the turned basis; quarter turns by exact rot90
    t1 = d45.T @ t0
    turned = [torch.rot90(t.view(-1, k, k), q, (-2, -1)).flatten(1)
              for q in range(_TURNS // 2) for t in (t0, t1)]  # g = 2q + s
    return torch.stack(turned), d45


def sampled_basis(kernel_size: int) -> Tensor:
    """The harmonic basis of a k×k filter turned by every multiple of 45°, sampled on the grid:
    ``[8, J, k²]`` float64, ``[g, j]`` = basis function j turned by g·45° (a fresh copy)."""
    return _sampled(kernel_size)[0].clone()


def coefficient_rotation(kernel_size: int) -> Tensor:
    """``D`` ``[J, J]`` float64 with ``L_{45°} Σ_j w_j b_j = Σ_j (D w)_j b_j`` (a fresh copy)."""
    return _sampled(kernel_size)[1].clone()


class _Harmonic(_P8):
    """What the harmonic p8 layers change in the engine: the filter parameterisation.

    Parameters: ``weight`` holds the basis coefficients, ``[C_out, C_in, J]`` (lifting) or
    ``[C_out, C_in, 8, J]`` (group), and ``bias`` ``[C_out]`` as for every layer. Buffers (not
    in the ``state_dict``): ``_basis`` ``[8, J, k²]``, the turned basis, and (group layers)
    ``_index``, the regular permutation of the group axis applied to the coefficients.
    ``bank_cache``: the :class:`~gzoo.layers.engine.EvalBankCache` serving eval calls under
    ``no_grad`` (the bank is a basis contraction, as e2cnn's; never stale, it compares values).
    """

    ROTATION = "harmonic"

    def __init__(self, *args: Any, rotation: str = "harmonic", **kwargs: Any) -> None:
        # arguments as P8LiftConv / P8Conv; built directly, the default rotation is this one
        super().__init__(*args, rotation=rotation, **kwargs)

    __init__.__signature__ = rotation_signature("harmonic")  # type: ignore[attr-defined]

    def _create_parameters(
        self, device: torch.device | str | None, dtype: torch.dtype | None
    ) -> None:
        o, i, k = self.out_channels, self.in_channels, self.kernel_size
        g, h = self.group_order, self.in_order
        t = _sampled(k)[0]  # [8, J, k²]
        self.n_basis = t.shape[1]
        shape = (o, i, self.n_basis) if self.lifting else (o, i, h, self.n_basis)
        self.weight = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        self.bias = (nn.Parameter(torch.empty(o, device=device, dtype=dtype)) if self.has_bias
                     else None)
        # a copy of its own (the sampled basis is cached per k): no layer can alter another's
        self._basis: Tensor
        self.register_buffer("_basis", t.to(device, dtype or torch.get_default_dtype(),
                                            copy=True), persistent=False)
        # group layers: row (g, i, h) of the permuted coefficients is row (i, h' = g⁻¹h) of
        # weight[o].view(C_in·8, J): the regular permutation of eq. 11 (lifting: none).
        index = torch.empty(0, dtype=torch.long)
        if not self.lifting:
            src = torch.tensor([self.group.regular_index(e) for e in range(g)])  # [g, h]: g⁻¹h
            index = (torch.arange(i).view(1, -1, 1) * h + src.view(g, 1, h)).reshape(-1)
        self._index: Tensor
        self.register_buffer("_index", index.to(device), persistent=False)
        self.bank_cache = EvalBankCache()
        self.reset_parameters()

    @property
    def fan_in(self) -> int:
        """True fan-in of one output unit: ``C_in · |G_in| · J`` coefficients (unit-scale basis)."""
        return self.in_channels * self.in_order * self.n_basis

    def expand_filter(self) -> Tensor:
        """The filter bank ``[C_out·8, C_in·|G_in|, k, k]``: row ``o·8+g`` is ``L_g ψ_o``."""
        o, i, k, j = self.out_channels, self.in_channels, self.kernel_size, self.n_basis
        w = self.weight.reshape(o, -1, j)  # [C_out, C_in·|G_in|, J]
        if not self.lifting:  # w[o, (g, i, h)] = w[o, i, g⁻¹h]: eq. 11's group-axis permutation
            w = w.index_select(1, self._index)
        # bank[o, g, (i, h)] = Σ_j w[o, g, (i, h), j] T[g, j]: one batched matmul, bank layout
        bank = w.view(o, -1, i * self.in_order, j) @ self._basis  # lifting: broadcast over g
        return bank.view(o * self.group_order, i * self.in_order, k, k)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if torch.jit.is_scripting() or torch.jit.is_tracing():  # a graph of the weights
            weight, bias = self.expand_filter(), self.expand_bias()
        else:
            weight, bias = self._bank()
        return self.correlate(x, weight, bias)

    @torch.jit.unused
    def _bank(self) -> tuple[Tensor, Tensor | None]:
        """This call's bank and bias: from the eval cache when it applies, else expanded."""
        sources = [p for p in (self.weight, self.bias) if p is not None]
        return self.bank_cache.bank(self.training, sources,
                                    lambda: (self.expand_filter(), self.expand_bias()))

    @torch.no_grad()
    def coefficients_of(self, base: Tensor) -> Tensor:
        """Least-squares coefficients of pixel base filters ``base`` (``[C_out, C_in, k, k]``
        lifting, ``[C_out, C_in, 8, k, k]`` group), shaped like ``weight``: exact when ``base``
        lies in the basis' span, e.g. an e2cnn C8 kernel's identity rows."""
        k = self.kernel_size
        want = (*self.weight.shape[:-1], k, k)
        if tuple(base.shape) != want:
            raise ValueError(f"base filters must have shape {list(want)}, got {list(base.shape)}")
        t0 = _sampled(k)[0][0].to(base.device)  # [J, k²], unturned
        # min ‖w T0 − ψ‖: T0 has full row rank (condition number ≤ 6 for k ≤ 9)
        sol = torch.linalg.lstsq(t0.T, base.reshape(-1, k * k).T.to(torch.float64)).solution
        return sol.T.reshape(self.weight.shape).to(self.weight.dtype)


class HarmonicP8LiftConv(_Harmonic, P8LiftConv):
    """``P8LiftConv(..., rotation="harmonic")``: band-limited p8 lifting correlation (C&W eq. 10).

    ``[B, C_in, H, W] → [B, C_out, 8, H', W']``; exact under the 90° subgroup, 45° turns of the
    filter computed in its circular-harmonic basis (see :mod:`gzoo.layers.harmonic`).
    """


class HarmonicP8Conv(_Harmonic, P8Conv):
    """``P8Conv(..., rotation="harmonic")``: band-limited p8 group correlation (C&W eq. 11).

    ``[B, C_in, 8, H, W] → [B, C_out, 8, H', W']``; equivariance as :class:`HarmonicP8LiftConv`.
    """


#: The ring class → its harmonic variant (what ``rotation="harmonic"`` builds).
HARMONIC_OF: dict[type[GroupCorrelation], type[_Harmonic]] = {
    P8LiftConv: HarmonicP8LiftConv, P8Conv: HarmonicP8Conv,
}
