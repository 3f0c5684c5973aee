"""The one group-correlation engine behind every hand-written layer.

A layer's base filter ψ is turned into the filter bank of all its transformed copies by one
precomputed index gather (the group supplies the index table, see
:meth:`gzoo.groups.Group.kernel_index`), then the whole correlation is a single ``F.conv2d``.

Lifting correlation, Z² → G (the notes' eq. 14; Cohen & Welling 2016, eq. 10)::

    f¹(g) = Σ_y Σ_k f_k(y) ψ_k(g⁻¹y)

Group correlation, G → G (the notes' eq. 15; Cohen & Welling 2016, eq. 11)::

    f^{l+1}(g) = Σ_h Σ_k f_k(h) ψ_k(g⁻¹h)

with ``g = (t, u)`` a translation t and a rotation/reflection u. The translation part is the
ordinary correlation that ``conv2d`` computes; the rotation/reflection part is the bank: the
filter for output element u is ``L_u ψ``, i.e. ``ψ(u⁻¹·)`` on space and, for group maps, on
the group axis too. (T. S. Cohen and M. Welling, "Group Equivariant Convolutional Networks",
ICML 2016, section 6; its section 7 is this gather-then-conv2d implementation.)

Layout: Z² maps ``[B, C, H, W]``; group maps ``[B, C, |G|, H, W]`` where ``C`` counts fields.
The bank is field-major, ``[C_out·|G|, C_in·|G_in|, k, k]`` with row ``o·|G| + g``, so a group
map flattened to ``[B, C·|G|, H, W]`` is exactly e2cnn's regular-field tensor.

**No eval cache here.** The bank is gathered afresh on every call, in eval mode too (one
``index_select``), so nothing can serve a stale bank after the weights change. A cache whose
freshness check cannot be fooled must compare values (``torch.equal``), which reads a boolean
back from the device — a sync per layer and call on CUDA, and impossible inside a CUDA-graph
capture — to save one gather: on CPU about a tenth of an eval call's time at the smallest
sizes (one 64×64 board, 512 3×3 patterns) and nothing measurable at batch sizes
(``benchmarks/speed.py``, column *hand cached*). :class:`EvalBankCache` is that cache, for
layers whose expansion is costly: the e2cnn twins (a basis contraction).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo._checks import check_int
from gzoo.groups import Group

__all__ = ["EvalBankCache", "GroupConvBase", "GroupCorrelation"]

_PADDING_MODES = ("zeros", "circular", "reflect", "replicate")


def _square(value: int | tuple[int, ...], what: str, minimum: int = 1) -> int:
    """Accept ``n`` or ``(n, n)`` (an int ≥ ``minimum``): 90° turns need the same value on both
    axes."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(
                f"{what} must be an int or a pair of equal ints (rotations swap the axes), "
                f"got {value!r}"
            )
        value = value[0]
    return check_int(what, value, minimum)


class EvalBankCache:
    """A layer's expanded filter bank and bias, kept for the calls that may reuse them.

    :meth:`bank` returns the cached pair when it :meth:`applies` (eval mode, no source needs a
    gradient, eager execution) and every source tensor still equals the copy the pair was built
    from — same dtype, device, shape and values (``torch.equal``); otherwise it expands afresh
    (outside :meth:`applies`: with autograd as usual, and nothing stored). Comparing values, not
    ``_version`` counters or pointers, is what makes it unfoolable: ``p.data`` writes,
    ``load_state_dict``, ``copy_``, an optimizer step under ``no_grad``, ``.to()`` and dtype
    changes all change what is compared. The copies are as large as the sources (the parameters,
    ``|G|`` times smaller than the bank), plain attributes outside the ``state_dict``. The check
    reads a boolean back from the device: one sync per call on CUDA.
    """

    def __init__(self) -> None:
        self._sources: list[Tensor] | None = None
        self._bank: tuple[Tensor, Tensor | None] | None = None

    @staticmethod
    def applies(training: bool, sources: Sequence[Tensor]) -> bool:
        """Whether a cached bank may serve a call now: eval mode, no gradient to record for any
        source, and not being traced by ``torch.compile``."""
        if training or torch.compiler.is_compiling():
            return False
        return not (torch.is_grad_enabled() and any(t.requires_grad for t in sources))

    def _fresh(self, sources: Sequence[Tensor]) -> bool:
        old = self._sources
        return old is not None and len(old) == len(sources) and all(
            a.dtype == b.dtype and a.device == b.device and a.shape == b.shape
            and torch.equal(a, b)
            for a, b in zip(old, sources, strict=True)
        )

    def bank(
        self, training: bool, sources: Sequence[Tensor],
        expand: Callable[[], tuple[Tensor, Tensor | None]],
    ) -> tuple[Tensor, Tensor | None]:
        """``expand()``, or its cached result, for a layer in mode ``training`` whose bank is a
        function of ``sources`` (its parameters) alone."""
        if not self.applies(training, sources):
            return expand()
        if self._bank is None or not self._fresh(sources):
            with torch.no_grad():
                self._sources = [t.detach().clone() for t in sources]
                self._bank = expand()
        return self._bank

    def clear(self) -> None:
        """Forget the cached bank and the copies it was built from."""
        self._sources = self._bank = None


class GroupConvBase(nn.Module):
    """What every group-correlation layer shares, whatever computes it (this engine or e2cnn).

    The one constructor: ``nn.Conv2d``'s arguments, checked as :class:`torch.nn.Conv2d`
    checks them (square kernel, stride, padding and dilation: 90° turns swap the axes). The
    group and the kind are class data: a layer class sets ``GROUP`` (a
    :class:`gzoo.groups.Group`) and ``LIFTING`` (``True``: Z² → G, ``False``: G → G) and
    implements :meth:`_create_parameters`, ``forward``, ``expand_filter()`` and
    ``expand_bias()``. Shared too: the input-shape check, :meth:`check_equivariance`,
    :meth:`export` to a plain ``nn.Conv2d`` and ``repr``.
    """

    GROUP: ClassVar[Group]
    LIFTING: ClassVar[bool]
    _repr_prefix = ""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """
        Args:
            in_channels: input fields (a group field is ``|G|`` channels; a Z² field is one).
            out_channels: output fields, each ``|G|`` channels.
            kernel_size: odd kernel size ``k`` (or ``(k, k)``).
            stride, padding, dilation, bias, padding_mode: as :class:`torch.nn.Conv2d`
                (``padding`` may be an int, ``(p, p)``, ``"same"`` or ``"valid"``;
                ``padding_mode`` one of ``zeros``, ``circular``, ``reflect``, ``replicate``).
            device, dtype: where the parameters live.
        """
        super().__init__()
        group, lifting = getattr(type(self), "GROUP", None), getattr(type(self), "LIFTING", None)
        if not isinstance(group, Group) or not isinstance(lifting, bool):
            raise TypeError(
                f"{type(self).__name__} binds no group: a layer class sets GROUP (a "
                f"gzoo.groups.Group) and LIFTING (a bool), as P4Conv does; got GROUP={group!r}, "
                f"LIFTING={lifting!r}"
            )
        k = _square(kernel_size, "kernel_size")
        if k % 2 == 0:
            raise ValueError(
                f"kernel_size must be a positive odd int (a centred kernel has a rotation "
                f"centre on the grid), got {kernel_size!r}"
            )
        check_int("in_channels", in_channels)
        check_int("out_channels", out_channels)
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
        self.group = group
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = k
        self.stride = stride_
        self.padding = _square(padding, "padding", minimum=0)
        self.dilation = dilation_
        self.padding_mode = padding_mode
        self.has_bias = bool(bias)
        self.lifting = lifting
        self.layer_name = type(self).__name__
        self.group_order = group.order
        self.in_order = 1 if lifting else group.order
        self._create_parameters(device, dtype)

    def _create_parameters(
        self, device: torch.device | str | None, dtype: torch.dtype | None
    ) -> None:
        """Create the parameters (and whatever expands them) for the checked arguments."""
        raise NotImplementedError

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
            self.dilation, bias=b is not None,
            padding_mode=self.padding_mode,  # type: ignore[arg-type]  # checked in __init__
            device=w.device, dtype=w.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(w)
            if b is not None and conv.bias is not None:
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
    r"""The hand-written engine: lifting (Z² → G) or group (G → G) correlation by one gather.

    A concrete layer binds a group and a kind, e.g. ``class P4Conv(GroupCorrelation): GROUP,
    LIFTING = C4, False`` (:mod:`gzoo.layers.conv`); any :class:`gzoo.groups.Group` works.
    Constructor arguments: :class:`GroupConvBase`'s (``nn.Conv2d``'s).

    Parameters: ``weight`` ``[C_out, C_in, k, k]`` (lifting) or ``[C_out, C_in, |G|, k, k]``,
    and ``bias`` ``[C_out]``, one value per output field shared over the group axis.

    Equivariance: ``Φ(L_g x) = L_g Φ(x)`` for every g, with ``L_g`` acting on group maps by
    the spatial action plus the left-regular permutation of the group axis. Exact for p4 and
    p4m; for p8 exact on the 90° subgroup (and for ring rotations of a k×k stencil). With
    ``stride`` s it is exact when ``(H + 2p − d(k−1) − 1)`` is divisible by s.

    The bank is expanded on every call, in every mode (see the module docstring: no cache, so
    no stale bank after any weight change).
    """

    __constants__ = [  # noqa: RUF012
        "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
        "padding_mode", "lifting", "group_order", "in_order", "layer_name", "has_bias",
    ]

    def _create_parameters(
        self, device: torch.device | str | None, dtype: torch.dtype | None
    ) -> None:
        o, i, k, n = self.out_channels, self.in_channels, self.kernel_size, self.group_order
        shape = (o, i, k, k) if self.lifting else (o, i, n, k, k)
        self.weight = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        self.bias = (nn.Parameter(torch.empty(o, device=device, dtype=dtype)) if self.has_bias
                     else None)
        # _index[n]: source in weight.flatten() of entry n of bank.flatten(), so the bank is one
        # index_select (one kernel; backward one index_add_). Built from the group's table
        # idx[g, q] (source of entry q of the bank row for element g): bank[o, g, i, q] =
        # ψ[o, i, idx[g, q]].
        idx = self.group.kernel_index(k, self.lifting)
        per = idx.shape[1]  # |G_in|·k²
        flat = (torch.arange(o).view(-1, 1, 1, 1) * (i * per)
                + torch.arange(i).view(1, 1, -1, 1) * per
                + idx.view(1, n, 1, per))
        self._index: Tensor
        self.register_buffer("_index", flat.reshape(-1).to(device), persistent=False)
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
        # bank[o, g, i, q] = ψ[o, i, idx[g, q]]: lifting (eq. 10 of Cohen & Welling 2016) or
        # group correlation (their eq. 11) as one gather.
        bank = self.weight.reshape(-1).index_select(0, self._index)
        return bank.view(o * self.group_order, i * self.in_order, k, k)

    def expand_bias(self) -> Tensor | None:
        """The bias per output channel: each field's bias repeated over the group axis."""
        if self.bias is None:
            return None
        return self.bias.repeat_interleave(self.group_order)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self.correlate(x, self.expand_filter(), self.expand_bias())

    def correlate(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The translation part: ``conv2d`` of the (flattened) input with a bank ``weight``
        laid out as :meth:`expand_filter`'s, with this layer's stride, padding and dilation."""
        x = x.flatten(1, 2) if not self.lifting else x
        if self.padding_mode == "zeros":
            y = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)
        else:
            p = self.padding
            x = F.pad(x, [p, p, p, p], mode=self.padding_mode)
            y = F.conv2d(x, weight, bias, self.stride, 0, self.dilation)
        return y.unflatten(1, (self.out_channels, self.group_order))
