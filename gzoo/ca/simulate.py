"""Batched simulation on the torus, CPU or CUDA, with no Python loop over boards.

Outer-totalistic rules. One step of a rule ``(B, S)`` on boards ``x ∈ {0,1}^{H×W}`` (indices
taken mod ``H``, ``W``):

    n[i, j]  = Σ_{(di,dj) ∈ N} x[i+di, j+dj]          N = Moore (8 offsets) or von Neumann (4)
    x'[i, j] = LUT[x[i, j], n[i, j]]                   LUT[0, n] = [n ∈ B],  LUT[1, n] = [n ∈ S]

The Moore sum is separable: a horizontal 3-sum ``h = x + roll(x, ±1, W)`` then a vertical 3-sum
``v = h + roll(h, ±1, H)`` gives ``v = n + x`` with four ``uint8`` rolls. The table is indexed by
``k = x·(m+1) + n = v + m·x`` (``m`` = 8 or 4) and read from the table packed in an integer,
``x' = (bits >> k) & 1`` (see :attr:`Rule.table_bits`) — one elementwise gather, no int64 index.

Every other rule (isotropic, MAP): the 3×3 block around each cell is read as its pattern index
(:func:`gzoo.ca.stencil.pattern_index`, nine rolls) and looked up in the rule's 512-entry table,
``x'[i, j] = table[index[i, j]]``.

Two backends compute the same steps: ``"bytes"`` (the above, one byte per cell: the reference)
and ``"bits"`` (:mod:`gzoo.ca.bitslice`: 64 cells per word, bitwise adders and compiled rule
circuits). A rule that has been stepped for :data:`gzoo.ca.bitnative.NATIVE_AFTER` seconds
(0.5 s, either backend) goes on in generated C on CPU — pack, step and unpack in one call
(:mod:`gzoo.ca.bitnative`). ``backend="auto"`` (the default) runs bit-sliced once the rule runs
natively (faster at every size measured), else from :data:`BITS_MIN_CELLS` cells on, where the
eager bit-sliced step is measured faster (``benchmarks/simulate.py``).

``B0`` rules are run literally: an empty torus turns fully alive and the background strobes
(Golly runs them differently; see :mod:`gzoo.ca.rule`).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from .._system import advise_huge_pages
from . import bitnative
from .bitslice import BitBoards, _clock, _step_uint8
from .rule import Rule
from .stencil import NEIGHBOURHOODS, pattern_index

__all__ = [
    "BACKENDS",
    "BITS_MIN_CELLS",
    "as_uint8_boards",
    "class_index",
    "neighbour_counts",
    "simulate",
    "step",
]

#: ``backend=`` values of :func:`step` and :func:`simulate`.
BACKENDS = ("auto", "bytes", "bits")
#: From how many cells in a call (all boards together) ``backend="auto"`` runs bit-sliced, for
#: B/S(V) rules (``"counts"``: bitwise adders) and every other rule (``"table"``: the rule's
#: circuit): the crossovers of one :func:`step` call, packing included, measured by
#: ``benchmarks/simulate.py --crossover`` (1 CPU thread; ``simulate`` packs once and gains sooner).
BITS_MIN_CELLS = {"counts": 1 << 19, "table": 1 << 19}

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def as_uint8_boards(
    boards: object, name: str = "boards", *, dtypes: tuple[torch.dtype, ...] | None = None
) -> torch.Tensor:
    """Check ``[H, W]``/``[B, H, W]`` binary boards; return them as ``uint8`` (a view if bool).

    The one board validator of gzoo. ``dtypes`` narrows the accepted dtypes (e.g.
    ``(torch.bool, torch.uint8)``); by default bool, integer and floating tensors holding only
    0 and 1 are accepted. A wrong type or dtype is a ``TypeError``, a wrong shape or a value
    other than 0/1 a ``ValueError``; each message names ``name`` and what it received.
    """
    if not isinstance(boards, torch.Tensor):
        hint = " (wrap numpy arrays with torch.from_numpy)" if hasattr(boards, "__array__") else ""
        raise TypeError(
            f"{name} must be a torch.Tensor of shape [H, W] or [B, H, W], "
            f"got {type(boards).__name__}{hint}"
        )
    if boards.dim() not in (2, 3):
        raise ValueError(
            f"{name} must have shape [H, W] or [B, H, W], got shape {tuple(boards.shape)}"
        )
    if boards.shape[-1] == 0 or boards.shape[-2] == 0:
        raise ValueError(f"{name} must have H, W >= 1, got shape {tuple(boards.shape)}")
    dtype = boards.dtype
    if dtypes is not None and dtype not in dtypes:
        allowed = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{name} must be {allowed}, got dtype {dtype}")
    if dtype == torch.bool:
        return boards.view(torch.uint8)
    if dtype not in _INT_DTYPES and not dtype.is_floating_point:
        raise TypeError(
            f"{name} must be bool, an integer or a float dtype holding 0/1, got dtype {dtype}"
        )
    if boards.numel():
        if dtype in _INT_DTYPES:  # a reduction: no board-sized temporaries on the good path
            low, high = torch.aminmax(boards)
            if low >= 0 and high <= 1:
                return boards if dtype == torch.uint8 else boards.to(torch.uint8)
        bad = (boards != 0) & (boards != 1)
        if bool(bad.any()):
            value = boards[bad].flatten()[0].item()
            raise ValueError(
                f"{name} must be binary (only 0 and 1), got value {value!r} "
                f"(dtype {dtype}, shape {tuple(boards.shape)})"
            )
    return boards if dtype == torch.uint8 else boards.to(torch.uint8)


def _neighbourhood_of(neighbourhood: str | Rule) -> str:
    if isinstance(neighbourhood, Rule):
        return neighbourhood.neighbourhood
    if neighbourhood not in NEIGHBOURHOODS:
        raise ValueError(
            f"neighbourhood must be one of {sorted(NEIGHBOURHOODS)} or a Rule, "
            f"got {neighbourhood!r}"
        )
    return neighbourhood


def _sum_incl_self(x: torch.Tensor, neighbourhood: str) -> torch.Tensor:
    """``n + x`` as uint8: the neighbourhood sum including the cell itself."""
    if neighbourhood == "moore":
        h = x + x.roll(1, -1)
        h += x.roll(-1, -1)
        v = h + h.roll(1, -2)
        v += h.roll(-1, -2)
        return v
    v = x + x.roll(1, -1)
    v += x.roll(-1, -1)
    v += x.roll(1, -2)
    v += x.roll(-1, -2)
    return v


def _class_index(x: torch.Tensor, neighbourhood: str) -> torch.Tensor:
    """``k = x·(m+1) + n`` as uint8 on validated boards (``n + x`` plus ``m·x``)."""
    k = _sum_incl_self(x, neighbourhood)
    return k.add_(x, alpha=NEIGHBOURHOODS[neighbourhood].max_count)


@lru_cache(maxsize=256)
def _table(table: int, device: torch.device) -> torch.Tensor:
    return Rule.from_table(table).lookup().to(device)


def _step_u8(x: torch.Tensor, rule: Rule) -> torch.Tensor:
    """One byte-path step on validated uint8 boards; returns an integer tensor of 0/1."""
    if rule.is_outer_totalistic:
        k = _class_index(x, rule.neighbourhood)
        return torch.bitwise_right_shift(rule.table_bits, k.to(torch.int32)).bitwise_and_(1)
    index = pattern_index(x)  # x' = table[pattern index]
    return _table(rule.table, x.device).index_select(0, index.view(-1).int()).view(x.shape)


def _use_bits(backend: object, x: torch.Tensor, rule: Rule) -> bool:
    """Whether ``backend`` (checked) runs ``x`` bit-sliced: ``"auto"`` whenever the rule runs
    natively (:mod:`gzoo.ca.bitnative`), else from :data:`BITS_MIN_CELLS` cells."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, one of {BACKENDS}, got {type(backend).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend == "bits"
    if bitnative.hot(rule, x.device):  # native steps beat bytes at every size measured
        return True
    return x.numel() >= BITS_MIN_CELLS["counts" if rule.is_outer_totalistic else "table"]


def _restore(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0/1 boards ``y`` in ``dtype`` (a view where ``y`` is ``uint8`` and ``dtype`` bool)."""
    if dtype == torch.bool and y.dtype == torch.uint8:
        return y.view(torch.bool)
    return y.bool() if dtype == torch.bool else y.to(dtype)


def neighbour_counts(boards: torch.Tensor, neighbourhood: str | Rule = "moore") -> torch.Tensor:
    """Live-neighbour counts on the torus as ``uint8``, same shape as ``boards``.

    ``neighbourhood`` is ``"moore"`` (0–8), ``"von_neumann"`` (0–4) or a :class:`Rule`.
    """
    hood = _neighbourhood_of(neighbourhood)
    x = as_uint8_boards(boards)
    return _sum_incl_self(x, hood).sub_(x)


def class_index(boards: torch.Tensor, neighbourhood: str | Rule = "moore") -> torch.Tensor:
    """The (state, live-neighbour count) class of every cell, ``k = s·(m+1) + n``, as uint8.

    ``m`` is the neighbourhood's maximum count (8 Moore, 4 von Neumann); ``k`` is also the class
    id of the outer-totalistic families (:mod:`gzoo.ca.families`).
    """
    return _class_index(as_uint8_boards(boards), _neighbourhood_of(neighbourhood))


def step(boards: torch.Tensor, rule: Rule | str, *, backend: str = "auto") -> torch.Tensor:
    """Advance ``[H, W]`` or ``[B, H, W]`` boards by one step of ``rule`` on the torus.

    Boards may be bool, integer or float tensors holding only 0/1, on any device; the result
    has the same shape, dtype and device. ``backend`` is ``"auto"``, ``"bytes"`` or ``"bits"``
    (module docstring); all give the same result.
    """
    rule = Rule.parse(rule)
    x = as_uint8_boards(boards)
    if _use_bits(backend, x, rule):
        return _restore(_step_uint8(x, rule), boards.dtype)
    t0 = _clock()
    y = _step_u8(x, rule)
    bitnative.charge(rule, _clock() - t0, x.device)
    return _restore(y, boards.dtype)


def _as_uint8(state: torch.Tensor) -> torch.Tensor:
    return state.view(torch.uint8) if state.dtype == torch.bool else state.to(torch.uint8)


def _native_history(rule: Rule, x: torch.Tensor, hist: torch.Tensor, t: int) -> bool:
    """``hist[t + 1:]`` from the state ``x`` (``uint8``) at ``t`` in one native call
    (:mod:`gzoo.ca.bitnative`), written in place for bool/uint8 histories; whether it ran."""
    steps = hist.shape[0] - 1 - t
    boards = x.reshape(-1, *x.shape[-2:])
    in_place = hist.dtype in (torch.bool, torch.uint8)
    frames = (hist[t + 1 :].view(torch.uint8) if in_place else
              torch.empty((steps, *x.shape), dtype=torch.uint8))
    if bitnative.run(rule, boards, steps, frames.view(steps, *boards.shape)) is None:
        return False
    if not in_place:
        hist[t + 1 :] = frames
    return True


def simulate(
    board: torch.Tensor, rule: Rule | str, steps: int, *, backend: str = "auto"
) -> torch.Tensor:
    """History ``[steps + 1, H, W]`` (or ``[steps + 1, B, H, W]``) with ``board`` at index 0.

    Same layout as pyseagull's ``Simulator.get_history()``; dtype and device follow ``board``;
    ``backend`` as in :func:`step`.
    """
    rule = Rule.parse(rule)
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__} {steps!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    x = as_uint8_boards(board)
    hist = torch.empty((steps + 1, *x.shape), dtype=board.dtype, device=board.device)
    advise_huge_pages(hist)  # (a fresh history: first touches of 4 KiB pages cost, see there)
    hist[0] = board
    if _use_bits(backend, x, rule):
        if bitnative.hot(rule, x.device) and _native_history(rule, x, hist, 0):
            return hist
        packed = BitBoards._from_uint8(x, tuple(x.shape))
        for t, state in enumerate(packed._evolve(rule, steps), start=1):
            state.unpack(out=hist[t])
            if t < steps and bitnative.due(rule, x.device, steps - t) and _native_history(
                    rule, _as_uint8(hist[t]), hist, t):
                break
        return hist
    for t in range(steps):
        t0 = _clock()
        y = _step_u8(x, rule)
        bitnative.charge(rule, _clock() - t0, x.device)
        hist[t + 1] = y  # casts int32 0/1 into the history dtype
        if board.dtype in (torch.bool, torch.uint8):
            x = hist[t + 1].view(torch.uint8)
        else:
            x = y.to(torch.uint8)
    return hist
