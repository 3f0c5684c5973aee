"""The one group-correlation engine behind every hand-written layer.

A layer's base filter ψ is turned into the filter bank of all its transformed copies by one
precomputed index gather (the group supplies the index table, see
:meth:`gzoo.groups.Group.kernel_index`), then the whole correlation is a single ``F.conv2d``.

Lifting correlation, Z² → G (the notes' eq. 14)::

    f¹(g) = Σ_y Σ_k f_k(y) ψ_k(g⁻¹y)

Group correlation, G → G (the notes' eq. 15)::

    f^{l+1}(g) = Σ_h Σ_k f_k(h) ψ_k(g⁻¹h)

with ``g = (t, u)`` a translation t and a rotation/reflection u. The translation part is the
ordinary correlation that ``conv2d`` computes; the rotation/reflection part is the bank: the
filter for output element u is ``L_u ψ``, i.e. ``ψ(u⁻¹·)`` on space and, for group maps, on
the group axis too.

Layout: Z² maps ``[B, C, H, W]``; group maps ``[B, C, |G|, H, W]`` where ``C`` counts fields.
The bank is field-major, ``[C_out·|G|, C_in·|G_in|, k, k]`` with row ``o·|G| + g``, so a group
map flattened to ``[B, C·|G|, H, W]`` is exactly e2cnn's regular-field tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo.groups import Group, get_group

__all__ = ["GroupConvBase", "GroupCorrelation"]

_PADDING_MODES = ("zeros", "circular", "reflect", "replicate")


def _square(value: int | tuple[int, ...], what: str) -> int:
    """Accept ``n`` or ``(n, n)``: 90° turns need the same value on both axes."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(
                f"{what} must be an int or a pair of equal ints (rotations swap the axes), "
                f"got {value!r}"
            )
        value = value[0]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {value!r}")
    return value


class GroupConvBase(nn.Module):
    """What every group-correlation layer shares, whatever computes it (this engine or e2cnn).

    Argument checking as :class:`torch.nn.Conv2d` (square kernel, stride, padding and dilation:
    90° turns swap the axes), the input-shape check, :meth:`check_equivariance`,
    :meth:`export` to a plain ``nn.Conv2d`` and ``repr``. Subclasses provide ``forward``,
    ``expand_filter()`` and ``expand_bias()``.
    """

    _repr_prefix = ""

    def _setup(
        self,
        group: Group | str,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int],
        padding: int | tuple[int, int] | str,
        dilation: int | tuple[int, int],
        bias: bool,
        padding_mode: str,
        lifting: bool,
    ) -> None:
        """Check the ``nn.Conv2d``-style arguments and store them as attributes."""
        self.group = get_group(group)
        k = _square(kernel_size, "kernel_size")
        if k < 1 or k % 2 == 0:
            raise ValueError(
                f"kernel_size must be a positive odd int (a centred kernel has a rotation "
                f"centre on the grid), got {kernel_size!r}"
            )
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int (number of fields), got {v!r}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        stride_ = _square(stride, "stride")
        dilation_ = _square(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be an int, 'same' or 'valid', got {padding!r}")
            if padding == "same" and stride_ != 1:
                raise ValueError("padding='same' needs stride=1, as in torch.nn.Conv2d")
            padding = dilation_ * (k - 1) // 2 if padding == "same" else 0
        pad = _square(padding, "padding")
        if stride_ < 1 or dilation_ < 1 or pad < 0:
            raise ValueError(
                f"need stride ≥ 1, dilation ≥ 1, padding ≥ 0; got {stride_}, {dilation_}, {pad}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = k
        self.stride = stride_
        self.padding = pad
        self.dilation = dilation_
        self.padding_mode = padding_mode
        self.has_bias = bool(bias)
        self.lifting = lifting
        self.layer_name = type(self).__name__
        self.group_order = self.group.order
        self.in_order = 1 if lifting else self.group.order

    def _check_input(self, x: Tensor) -> None:
        if self.lifting:
            if x.dim() != 4 or x.shape[1] != self.in_channels:
                raise ValueError(
                    f"{self.layer_name} expects a Z² map [B, {self.in_channels}, H, W], "
                    f"got shape {list(x.shape)}"
                )
        elif x.dim() != 5 or x.shape[1] != self.in_channels or x.shape[2] != self.group_order:
            raise ValueError(
                f"{self.layer_name} expects a {self.group_order}-element group map "
                f"[B, {self.in_channels}, {self.group_order}, H, W], got shape {list(x.shape)}"
            )

    def expand_filter(self) -> Tensor:
        raise NotImplementedError

    def expand_bias(self) -> Tensor | None:
        raise NotImplementedError

    @torch.jit.unused
    def check_equivariance(
        self, x: Tensor | None = None, elements: tuple[int, ...] | None = None
    ) -> dict[int, float]:
        """Relative error ‖Φ(L_g x) − L_g Φ(x)‖/‖Φ(x)‖ per element g (random ``x`` by default).

        ``elements`` defaults to those acting exactly on images (for p8: the 90° subgroup).
        """
        from gzoo.equivariance import equivariance_errors

        if x is None:
            p = next(self.parameters())
            shape = [2, self.in_channels, *([] if self.lifting else [self.group_order]), 15, 15]
            x = torch.randn(shape, dtype=p.dtype, device=p.device)
        kind = "z2" if self.lifting else "group"
        return equivariance_errors(self, x, self.group, kind, "group", elements)

    @torch.jit.unused
    def export(self) -> nn.Conv2d:
        """A plain :class:`torch.nn.Conv2d` holding the expanded bank.

        It maps the flattened input ``x.flatten(1, 2)`` (``[B, C_in·|G_in|, H, W]``) to the
        flattened output; ``y.unflatten(1, (C_out, |G|))`` gives this layer's output.
        """
        with torch.no_grad():
            w, b = self.expand_filter(), self.expand_bias()
        conv = nn.Conv2d(
            w.shape[1], w.shape[0], self.kernel_size, self.stride, self.padding,
            self.dilation, bias=b is not None, padding_mode=self.padding_mode,
            device=w.device, dtype=w.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(w)
            if b is not None:
                conv.bias.copy_(b)
        return conv.train(self.training)

    def extra_repr(self) -> str:
        s = (f"{self._repr_prefix}{self.group.name}, {self.in_channels}, {self.out_channels}, "
             f"kernel_size={self.kernel_size}, stride={self.stride}")
        if self.padding:
            s += f", padding={self.padding}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if not self.has_bias:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s


class GroupCorrelation(GroupConvBase):
    r"""Lifting (Z² → G) or group (G → G) correlation for a finite rotation/reflection group.

    Args:
        group: the group, a :class:`gzoo.groups.Group` or its name (``"p4"``, ``"p4m"``, ``"p8"``).
        in_channels: input fields (a group field is ``|G|`` channels; a Z² field is one).
        out_channels: output fields, each ``|G|`` channels.
        kernel_size: odd kernel size ``k``.
        stride, padding, dilation, bias, padding_mode: as :class:`torch.nn.Conv2d`
            (``padding`` may be an int, ``"same"`` or ``"valid"``).
        lifting: ``True`` for eq. 14 (input ``[B, C_in, H, W]``), ``False`` for eq. 15 (input
            ``[B, C_in, |G|, H, W]``).

    Parameters: ``weight`` ``[C_out, C_in, k, k]`` (lifting) or ``[C_out, C_in, |G|, k, k]``,
    and ``bias`` ``[C_out]``, one value per output field shared over the group axis.

    Equivariance: ``Φ(L_g x) = L_g Φ(x)`` for every g, with ``L_g`` acting on group maps by
    the spatial action plus the left-regular permutation of the group axis. Exact for p4 and
    p4m; for p8 exact on the 90° subgroup (and for ring rotations of a k×k stencil). With
    ``stride`` s it is exact when ``(H + 2p − d(k−1) − 1)`` is divisible by s.

    In eval mode with no gradient needed, the expanded bank is cached and rebuilt whenever the
    weights change (in place, by ``load_state_dict`` or by ``.to()``).
    """

    __constants__ = [  # noqa: RUF012
        "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
        "padding_mode", "lifting", "group_order", "in_order", "layer_name", "has_bias",
    ]

    def __init__(
        self,
        group: Group | str,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        lifting: bool,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self._setup(group, in_channels, out_channels, kernel_size, stride, padding, dilation,
                    bias, padding_mode, lifting)
        k = self.kernel_size

        factory = {"device": device, "dtype": dtype}
        shape = (out_channels, in_channels, k, k) if lifting else (
            out_channels, in_channels, self.group_order, k, k)
        self.weight = nn.Parameter(torch.empty(shape, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        # _index[n]: source in weight.flatten() of entry n of bank.flatten(), so the bank is one
        # index_select (one kernel; backward one index_add_). Built from the group's table
        # idx[g, q] (source of entry q of the bank row for element g): bank[o, g, i, q] =
        # ψ[o, i, idx[g, q]].
        idx = self.group.kernel_index(k, lifting)
        per = idx.shape[1]  # |G_in|·k²
        flat = (torch.arange(out_channels).view(-1, 1, 1, 1) * (in_channels * per)
                + torch.arange(in_channels).view(1, 1, -1, 1) * per
                + idx.view(1, self.group_order, 1, per))
        self.register_buffer("_index", flat.reshape(-1).to(device), persistent=False)
        self._cache: tuple[tuple[int, ...], Tensor, Tensor | None] | None = None
        self.reset_parameters()

    # ------------------------------------------------------------------ parameters
    @property
    def fan_in(self) -> int:
        """True fan-in of one output unit: ``C_in · |G_in| · k²``."""
        return self.in_channels * self.in_order * self.kernel_size * self.kernel_size

    def reset_parameters(self) -> None:
        """He-normal init over the true fan-in; zero bias."""
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / self.fan_in))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def expand_filter(self) -> Tensor:
        """The filter bank ``[C_out·|G|, C_in·|G_in|, k, k]``: row ``o·|G|+g`` is ``L_g ψ_o``."""
        o, i, k = self.out_channels, self.in_channels, self.kernel_size
        # bank[o, g, i, q] = ψ[o, i, idx[g, q]]: eq. 14 / eq. 15 as one gather.
        bank = self.weight.reshape(-1).index_select(0, self._index)
        return bank.view(o * self.group_order, i * self.in_order, k, k)

    def expand_bias(self) -> Tensor | None:
        """The bias per output channel: each field's bias repeated over the group axis."""
        if self.bias is None:
            return None
        return self.bias.unsqueeze(1).expand(-1, self.group_order).reshape(-1)

    def _bank(self) -> tuple[Tensor, Tensor | None]:
        if torch.jit.is_scripting() or self.training:
            return self.expand_filter(), self.expand_bias()
        return self._cached_bank()

    @torch.jit.unused
    def _cached_bank(self) -> tuple[Tensor, Tensor | None]:
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if needs_grad or torch.compiler.is_compiling():
            return self.expand_filter(), self.expand_bias()
        key = tuple(
            v
            for p in (self.weight, self.bias)
            if p is not None
            for v in (p._version, p.data_ptr(), hash(p.dtype), hash(p.device))
        )
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self.expand_filter(), self.expand_bias())
        return self._cache[1], self._cache[2]

    def train(self, mode: bool = True) -> GroupCorrelation:
        self._cache = None
        return super().train(mode)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        weight, bias = self._bank()
        x = x.flatten(1, 2) if not self.lifting else x
        if self.padding_mode == "zeros":
            y = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)
        else:
            p = self.padding
            x = F.pad(x, [p, p, p, p], mode=self.padding_mode)
            y = F.conv2d(x, weight, bias, self.stride, 0, self.dilation)
        return y.unflatten(1, (self.out_channels, self.group_order))
