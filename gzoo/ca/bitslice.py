r"""Bit-sliced simulation: 64 cells per ``int64`` word, rules as boolean circuits on bit-planes.

**Layout.** Boards ``[B, H, W]`` are packed along ``W``: bit ``k`` of word ``w`` in row ``i`` is
cell ``(i, 64w + k)``, ``nw = ⌈W/64⌉`` words per row. The packed tensor carries a torus halo,
``int64 [B, H + 2, nw + 2]``: rows ``1..H`` and words ``1..nw`` are the board; row ``0`` repeats
row ``H`` and row ``H + 1`` row ``1``; word ``0`` has the west neighbour of column 0 (cell
``W − 1``) in bit 63, word ``nw + 1`` the east neighbour of the last full word (cell 0) in bit
0, and when ``r = W − 64(nw − 1) < 64`` bit ``r`` of the last word is cell 0 (the east neighbour of
cell ``W − 1``). Bits above ``r`` are don't-cares: a bit-plane operation is bitwise, so they only
ever influence themselves and are never read back into the board.

**Batch layout.** Many small boards (``B ≥ 64`` and ``⌈B/64⌉(W + 2) < B(⌈W/64⌉ + 2)``, e.g.
64 boards of 64²) are packed across the batch instead: bit ``k`` of word ``(g, i, j)`` is cell
``(i, j)`` of board ``64g + k``, ``int64 [⌈B/64⌉, H + 2, W + 2]`` with the halo repeating the
opposite row and column. The neighbour planes are then plain shifted views (no bit shifts),
and the steps below are the same; bits of the missing boards ``B..64⌈B/64⌉ − 1`` are
don't-cares.

**Neighbour planes.** With ``c`` the words of a row, ``p``/``q`` the words west/east of them,

    west[j] = x[j − 1]:  west = (c << 1) | (p >>> 63)
    east[j] = x[j + 1]:  east = (c >>> 1) | (q << 63)

and rows above/below are the same planes one row up/down (views: the halo makes them free).

**Counts by full adders.** For outer-totalistic rules the sum including the cell itself,
``T = n + x``, is added bitwise: per row ``west + c + east = s + 2k`` (a full adder,
``s = west ⊕ c ⊕ east``, ``k = maj(west, c, east)``), then over three rows
``T = Σ s + 2 Σ k`` with two more full adders and two half adders, bits ``T₀..T₃`` (Moore,
``T ≤ 9``); von Neumann adds ``up + down + x`` and ``west + east`` (``T ≤ 5``, bits ``T₀..T₂``).
The rule ``x' = [T ∈ B] if x = 0 else [T − 1 ∈ S]`` is then a boolean function of
``(x, T₀, …)``, compiled like any table (below) with the impossible ``(x, T)`` as don't-cares.

**Any 512-entry table.** Pattern ``n`` has cell ``(r, c)`` alive iff bit ``3r + c`` of ``n`` is
set (:mod:`gzoo.ca.stencil`); the inputs are the nine planes ``(west, c, east)`` at row
offsets ``−1, 0, +1``. :func:`compile_table` turns a truth table into a straight-line
:class:`Circuit` of AND/OR/XOR/NOT by Shannon expansion ``f = v ? f₁ : f₀`` with functional
hashing (every intermediate is identified by its whole truth table, so equal sub-functions are
built once), writing each multiplexer in the cheapest of four equivalent forms, e.g.
``f₀ ⊕ (v ∧ (f₁ ⊕ f₀))``, under several variable orders; the smallest circuit is kept, cached per
table. A random table needs about 230 gates, Life's 9-input table about 60.

**Work.** Each step runs in row chunks of about :data:`CHUNK_WORDS` words so the planes stay in
cache and the working memory is a few chunks plus the two packed buffers (``2 · ⌈W/64⌉ · 8`` bytes
per row, about 0.25 byte per cell). B0 rules run literally, as on the byte path.

**Native.** On CPU, a rule stepped for :data:`gzoo.ca.bitnative.NATIVE_AFTER` seconds goes on
in the same program generated as C (:mod:`gzoo.ca.bitnative`), checked against this eager step
before it is used; this eager step stays the reference, and the path on CUDA.

**Packing.** On CPU (little-endian hosts) rows pack and unpack with ``np.packbits`` /
``np.unpackbits`` (``bitorder="little"``, bytes viewed as words): one C pass each. Elsewhere a
multiply gathers 8 cells per byte and a 256-entry table spreads them back. The batch layout
packs with one broadcast shift and a sum over 8 boards per byte, then interleaves the bytes.
"""

from __future__ import annotations

import functools
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int
from .rule import Rule

__all__ = ["CHUNK_WORDS", "BitBoards", "Circuit", "compile_table"]

#: Words per chunk of a step on CPU: large enough that the per-operation overhead of eager
#: PyTorch is small, small enough for the last-level cache (``benchmarks/simulate.py
#: --chunk-sweep``). CUDA steps up to ``2**26`` words at once.
CHUNK_WORDS = 1 << 18
_CUDA_CHUNK_WORDS = 1 << 26
#: Cells per chunk when packing or unpacking (bounds the temporaries to ~2 MiB).
_IO_CHUNK_CELLS = 1 << 21
_clock = time.perf_counter  # times eager steps for the native tier (gzoo.ca.bitnative)

_LOW63 = (1 << 63) - 1  # clears bit 63 after an arithmetic shift: c >>> 1 = (c >> 1) & _LOW63
#: ``(Σ_k b_k 256^k) · _GATHER_BITS`` has ``b_k`` at bit ``56 + k`` (bytes ``b_k ∈ {0, 1}``): the
#: products ``b_k 2^{8k} · 2^{7j+7}`` land on distinct bits, and those with ``k + j = 7`` on 56 + k.
_GATHER_BITS = 0x0102040810204080


# ====================================================================== circuits
_AND, _OR, _XOR, _NOT = "and", "or", "xor", "not"
_FNS: dict[str, Callable[..., Tensor]] = {
    _AND: torch.bitwise_and,
    _OR: torch.bitwise_or,
    _XOR: torch.bitwise_xor,
    _NOT: torch.bitwise_not,
}
_FALSE, _TRUE = 0, 1  # signals 0 and 1 are the constants; inputs are 2 .. n + 1


@dataclass(frozen=True)
class Circuit:
    """A straight-line boolean program on ``n_inputs`` bit-planes.

    Signals: ``0`` = all zeros, ``1`` = all ones, ``2 + k`` = input ``k``, ``2 + n + i`` = gate
    ``i``; each gate is ``(op, a, b)`` with ``op`` in ``"and"``, ``"or"``, ``"xor"``, ``"not"``
    (``b`` unused). ``output`` is the signal that is the result.
    """

    n_inputs: int
    gates: tuple[tuple[str, int, int], ...]
    output: int
    _plan: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("n_inputs", self.n_inputs)
        for i, gate in enumerate(self.gates):
            me = 2 + self.n_inputs + i
            ok = (isinstance(gate, tuple) and len(gate) == 3 and gate[0] in _FNS
                  and all(isinstance(s, int) and 0 <= s < me for s in gate[1:]))
            if not ok:
                raise ValueError(
                    f"gate {i} must be (op, a, b) with op in {sorted(_FNS)} and signals "
                    f"0 ≤ a, b < {me} (constants, inputs, earlier gates), got {gate!r}")
        if not isinstance(self.output, int) or not 0 <= self.output < 2 + self.n_inputs + len(
                self.gates):
            raise ValueError(f"output must be a signal of the circuit, got {self.output!r}")
        object.__setattr__(self, "_plan", self._make_plan())
        used = frozenset(s - 2 for s in self._reachable() if 2 <= s < 2 + self.n_inputs)
        object.__setattr__(self, "_used", used)
        object.__setattr__(self, "_hash", hash((self.n_inputs, self.gates, self.output)))

    def __hash__(self) -> int:  # (once: circuits key the native libraries and accounts per call)
        return self._hash  # type: ignore[attr-defined]

    @property
    def inputs_used(self) -> frozenset[int]:
        """Indices of the inputs the output depends on."""
        return self._used  # type: ignore[attr-defined]

    def truth_table(self) -> int:
        """The computed function: bit ``i`` is the output when input ``k`` is bit ``k`` of ``i``."""
        n = self.n_inputs
        full = (1 << (1 << n)) - 1
        vals = [0, full, *(_var_table(k, n) for k in range(n))]
        for op, a, b in self.gates:
            vals.append(_apply(op, vals[a], vals[b], full))
        return vals[self.output]

    def _reachable(self) -> set[int]:
        base = 2 + self.n_inputs
        seen: set[int] = set()
        stack = [self.output]
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            if s >= base:
                op, a, b = self.gates[s - base]
                stack += [a] if op == _NOT else [a, b]
        return seen

    def _make_plan(self) -> tuple:
        """Per gate ``(fn, a, b, where)``: ``where`` = ``"out"``, ``"a"``/``"b"`` (overwrite an
        operand that dies here, in place), or ``"new"``; plus the signals freed after it."""
        base = 2 + self.n_inputs
        last: dict[int, int] = {}
        for i, (op, a, b) in enumerate(self.gates):
            for s in (a,) if op == _NOT else (a, b):
                last[s] = base + i
        plan = []
        for i, (op, a, b) in enumerate(self.gates):
            me = base + i
            dies = [s for s in ((a,) if op == _NOT else (a, b)) if s >= base and last[s] == me]
            if me == self.output:
                where = "out"
            elif a in dies:
                where = "a"
            elif b in dies:
                where = "b"  # and/or/xor are commutative
            else:
                where = "new"
            plan.append((_FNS[op], a, None if op == _NOT else b, where, tuple(dies)))
        return tuple(plan)

    def __call__(self, inputs: Sequence[Tensor], out: Tensor) -> Tensor:
        """Evaluate on int64 planes of one shape, writing the result into ``out``."""
        if len(inputs) != self.n_inputs:
            raise ValueError(f"circuit takes {self.n_inputs} input planes, got {len(inputs)}")
        base = 2 + self.n_inputs
        if self.output < base:
            if self.output >= 2:
                return out.copy_(inputs[self.output - 2])
            return out.fill_(-self.output)  # 0 → all zeros, 1 → all ones (-1)
        vals: list[Tensor | None] = [None, None, *inputs, *([None] * len(self.gates))]
        for i, (fn, a, b, where, dies) in enumerate(self._plan):
            args = (vals[a],) if b is None else (vals[a], vals[b])
            if where == "out":
                fn(*args, out=out)
                return out
            if where == "new":
                vals[base + i] = fn(*args)
            else:
                dst = vals[a] if where == "a" else vals[b]
                vals[base + i] = fn(*args, out=dst)
            for s in dies:
                if vals[s] is not vals[base + i]:
                    vals[s] = None
        raise AssertionError("circuit output is not the last live gate")  # pragma: no cover


def _var_table(k: int, n: int) -> int:
    """Truth table of input ``k`` over ``n`` inputs: bit ``i`` set iff bit ``k`` of ``i`` is."""
    block = ((1 << (1 << k)) - 1) << (1 << k)  # 2^k zeros, then 2^k ones
    return sum(block << s for s in range(0, 1 << n, 1 << (k + 1)))


def _apply(op: str, ta: int, tb: int, full: int) -> int:
    if op == _AND:
        return ta & tb
    if op == _OR:
        return ta | tb
    if op == _XOR:
        return ta ^ tb
    return full ^ ta


class _Builder:
    """Gates with functional hashing: a truth table already built is never built again."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.full = (1 << (1 << n)) - 1
        self.vars = [_var_table(k, n) for k in range(n)]
        self.tables = [0, self.full, *self.vars]
        self.index: dict[int, int] = {}
        for s, t in enumerate(self.tables):
            self.index.setdefault(t, s)
        self.gates: list[tuple[str, int, int]] = []

    def gate(self, op: str, a: int, b: int = _FALSE) -> int:
        if op == _XOR and _TRUE in (a, b):
            op, a, b = _NOT, (b if a == _TRUE else a), _FALSE  # x ⊕ 1 = ¬x
        t = _apply(op, self.tables[a], self.tables[b], self.full)
        s = self.index.get(t)
        if s is None:
            self.gates.append((op, a, b))
            self.tables.append(t)
            s = self.index[t] = len(self.tables) - 1
        return s

    def _cost(self, expr: object, new: set[int]) -> int:
        """Truth table of ``expr`` (nested ``(op, x, y)``); collects the tables not built yet."""
        if isinstance(expr, int):
            return self.tables[expr]
        op, *args = expr  # type: ignore[misc]
        ts = [self._cost(x, new) for x in args]  # type: ignore[has-type]
        t = _apply(op, ts[0], ts[-1], self.full)  # type: ignore[has-type]
        if t not in self.index:
            new.add(t)
        return t

    def _emit(self, expr: object) -> int:
        if isinstance(expr, int):
            return expr
        op, *args = expr  # type: ignore[misc]
        s = [self._emit(x) for x in args]  # type: ignore[has-type]
        return self.gate(op, s[0], s[-1])  # type: ignore[has-type]

    def mux(self, v: int, hi: int, lo: int) -> int:
        """``v ? hi : lo`` in the form that adds the fewest gates (constants fold away)."""
        nv = (_NOT, v, v)
        d = (_XOR, hi, lo)
        forms = (
            (_XOR, lo, (_AND, v, d)),  # f₀ ⊕ v(f₁ ⊕ f₀)
            (_XOR, hi, (_AND, nv, d)),  # f₁ ⊕ v̄(f₁ ⊕ f₀)
            (_OR, (_AND, v, hi), (_AND, nv, lo)),
            (_AND, (_OR, v, lo), (_OR, nv, hi)),
        )
        costs = []
        for form in forms:
            new: set[int] = set()
            self._cost(form, new)
            costs.append(len(new))
        return self._emit(forms[costs.index(min(costs))])

    def cofactors(self, t: int, k: int) -> tuple[int, int]:
        """``(t|v_k=0, t|v_k=1)``, each spread over both halves (independent of input ``k``)."""
        shift = 1 << k
        t0 = t & ~self.vars[k] & self.full
        t1 = t & self.vars[k]
        return t0 | (t0 << shift), t1 | (t1 >> shift)

    def synth(self, f: int, care: int, order: Sequence[int], memo: dict) -> int:
        """A signal equal to ``f`` wherever ``care`` is set (Shannon expansion along ``order``)."""
        f &= care
        if f == 0:
            return _FALSE
        if f == care:
            return _TRUE
        key = (f, care, len(order))
        if key in memo:
            return memo[key]
        if care == self.full:
            s = self.index.get(f)
            if s is None and (s := self.index.get(self.full ^ f)) is not None:
                s = self.gate(_NOT, s)
        else:
            s = next((s for s, t in enumerate(self.tables) if not (t ^ f) & care), None)
        if s is not None:
            return s
        for i, k in enumerate(order):
            f0, f1 = self.cofactors(f, k)
            c0, c1 = self.cofactors(care, k)
            if not (f0 ^ f1) & c0 & c1:  # f does not depend on input k where it matters
                f, care = (f0 & c0) | (f1 & c1), c0 | c1
                continue
            lo = self.synth(f0, c0, order[i + 1 :], memo)
            hi = self.synth(f1, c1, order[i + 1 :], memo)
            s = memo[key] = self.mux(2 + k, hi, lo)
            return s
        raise AssertionError("a function constant on its care set was not caught")


def _prune(b: _Builder, output: int) -> Circuit:
    """Only the gates the output needs, renumbered in order."""
    base = 2 + b.n
    need: set[int] = set()
    stack = [output]
    while stack:
        s = stack.pop()
        if s >= base and s not in need:
            need.add(s)
            op, x, y = b.gates[s - base]
            stack += [x] if op == _NOT else [x, y]
    new_id = {s: s for s in range(base)}
    gates: list[tuple[str, int, int]] = []
    for s in sorted(need):
        op, x, y = b.gates[s - base]
        new_id[s] = base + len(gates)
        gates.append((op, new_id[x], new_id[y] if op != _NOT else _FALSE))
    return Circuit(b.n, tuple(gates), new_id[output])


@functools.lru_cache(maxsize=512)
def compile_table(
    table: int, n_inputs: int = 9, care: int | None = None, tries: int = 8
) -> Circuit:
    """The smallest circuit found for the truth table ``table`` over ``n_inputs`` inputs.

    Bit ``i`` of ``table`` is the output for the inputs ``k`` = bit ``k`` of ``i``; bits outside
    ``care`` (default: all) are don't-cares. Shannon expansion with functional hashing under
    ``tries`` input orders (the natural one, its reverse, then seeded shuffles; all orders when
    ``n_inputs! ≤ tries``); the circuit with the fewest gates is returned. Cached per argument.
    """
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or not 1 <= n_inputs <= 12:
        raise ValueError(f"n_inputs must be an int in 1..12, got {n_inputs!r}")
    full = (1 << (1 << n_inputs)) - 1
    for name, value in (("table", table), ("care", full if care is None else care)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= full:
            raise ValueError(
                f"{name} must be an int in [0, 2**{1 << n_inputs}) for {n_inputs} inputs, "
                f"got {value!r}"
            )
    care = full if care is None else care
    orders = _orders(n_inputs, tries)
    best: Circuit | None = None
    for order in orders:
        b = _Builder(n_inputs)
        circuit = _prune(b, b.synth(table, care, order, {}))
        if best is None or len(circuit.gates) < len(best.gates):
            best = circuit
    assert best is not None
    return best


def _orders(n: int, tries: int) -> list[tuple[int, ...]]:
    import itertools
    import math

    if math.factorial(n) <= tries:
        return list(itertools.permutations(range(n)))
    rng = random.Random(n)  # fixed: the same table always compiles to the same circuit
    orders = [tuple(range(n)), tuple(reversed(range(n)))]
    while len(orders) < tries:
        order = list(range(n))
        rng.shuffle(order)
        orders.append(tuple(order))
    return orders[:tries]


# ====================================================================== rules as programs
@dataclass(frozen=True)
class _Program:
    """How one step computes: the inputs (``"moore"``/``"von_neumann"`` counts or the nine
    ``"table"`` planes) and the circuit on them."""

    inputs: str
    circuit: Circuit


@functools.lru_cache(maxsize=512)
def _counts_program(birth: frozenset[int], survival: frozenset[int], hood: str) -> _Program:
    """Circuit on ``(x, T₀, T₁, …)`` with ``T = n + x``: ``x' = [T ∈ B]`` if ``x = 0`` else
    ``[T − 1 ∈ S]``; index ``i = x + 2T``; impossible pairs (``T > m + x`` or ``T < x``) are
    don't-cares."""
    m = 8 if hood == "moore" else 4
    n_bits = (m + 1).bit_length()  # T ≤ m + 1 → 4 bits (Moore) or 3 (von Neumann)
    table = care = 0
    for x in (0, 1):
        for n in range(m + 1):
            i = x + 2 * (n + x)
            care |= 1 << i
            table |= int(n in (survival if x else birth)) << i
    return _Program(hood, compile_table(table, 1 + n_bits, care))


def _program(rule: Rule | str | _Program) -> _Program:
    """The bit-sliced program of a rule: counts for B/S(V) rules, the table circuit otherwise."""
    if isinstance(rule, _Program):
        return rule
    return _rule_program(Rule.parse(rule))


@functools.lru_cache(maxsize=512)  # (looked up on every step: a rule hashes by its table)
def _rule_program(rule: Rule) -> _Program:
    if rule.is_outer_totalistic:
        return _counts_program(rule.birth, rule.survival, rule.neighbourhood)
    return _Program("table", compile_table(rule.table, 9))


# ====================================================================== one step
def _west_east(s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """From halo'd words ``s [..., nw + 2]``: the cells' words ``c`` and their west/east planes."""
    c = s[..., 1:-1]
    west = (c << 1).sub_(s[..., :-2] >> 63)  # x[j−1]: bit 0 ← previous word's bit 63 (0 − (−1))
    east = (c >> 1).bitwise_and_(_LOW63).bitwise_or_(s[..., 2:] << 63)  # x[j+1]
    return west, c, east


def _west_east_batch(s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The same planes in the batch layout: the words west/east of a cell are its neighbours."""
    return s[..., :-2], s[..., 1:-1], s[..., 2:]


WestEast = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


def _full_add(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """``a + b + c = s + 2k`` as one new tensor ``[2, *shape]`` = ``(s, k)``:
    ``s = a ⊕ b ⊕ c``, ``k = ab ∨ c(a ⊕ b)``."""
    sk = torch.empty((2, *a.shape), dtype=a.dtype, device=a.device)
    t = a ^ b
    torch.bitwise_xor(t, c, out=sk[0])
    torch.bitwise_and(a, b, out=sk[1]).bitwise_or_(t.bitwise_and_(c))
    return sk


def _step_moore(s: Tensor, out: Tensor, circuit: Circuit, planes: WestEast) -> None:
    west, c, east = planes(s)
    h = _full_add(west, c, east)  # per row, one halo row each side: west + c + east = h₀ + 2h₁
    del west, east
    # both planes over three rows at once: Σ_rows h_i = v[0, i] + 2 v[1, i]
    v = _full_add(h[:, :, :-2], h[:, :, 1:-1], h[:, :, 2:])
    del h
    t0, a, k1, b = v[0, 0], v[0, 1], v[1, 0], v[1, 1]  # (indexing: unpacking would unbind)
    # T = t0 + 2(k1 + a) + 4b: T₁ = a ⊕ k1, carry e = a k1; T₂ = b ⊕ e, T₃ = b e
    t1 = a ^ k1
    e = a.bitwise_and_(k1)
    t2 = b ^ e
    t3 = b.bitwise_and_(e) if 4 in circuit.inputs_used else b  # (b is not read otherwise)
    circuit([c[:, 1:-1], t0, t1, t2, t3], out)


def _step_von_neumann(s: Tensor, out: Tensor, circuit: Circuit, planes: WestEast) -> None:
    west, x, east = planes(s[:, 1:-1])
    c = s[..., 1:-1]
    sk1 = _full_add(c[:, :-2], c[:, 2:], x)  # up + down + x = s1 + 2k1
    s1, k1 = sk1[0], sk1[1]  # (indexing: unpacking a tensor would unbind it)
    tk2 = _full_add(west, east, s1)  # west + east + s1 = T₀ + 2k2
    t0, k2 = tk2[0], tk2[1]
    del west, east, s1
    circuit([x, t0, k1 ^ k2, k1.bitwise_and_(k2)], out)  # T = T₀ + 2(k1 + k2)


def _step_table(s: Tensor, out: Tensor, circuit: Circuit, planes: WestEast) -> None:
    wce = planes(s)
    rows = out.shape[-2]
    # input 3r + c = cell (r, c) of the 3×3 pattern: row offset r − 1, column offset c − 1
    inputs = [wce[c][:, r : r + rows] for r in range(3) for c in range(3)]
    circuit(inputs, out)


_STEPS = {"moore": _step_moore, "von_neumann": _step_von_neumann, "table": _step_table}


def _chunks(
    batch: int, height: int, row: int, target: int, halo: int = 0
) -> Iterator[tuple[int, int, int, int]]:
    """``(b0, b1, r0, r1)``: blocks of about ``target`` elements (rows of ``row`` elements, plus
    ``halo`` rows read around each block) — several whole boards, or rows of one board."""
    per_board = (height + halo) * row
    if per_board <= target:
        g = max(1, target // per_board)
        for b0 in range(0, batch, g):
            yield b0, min(batch, b0 + g), 0, height
        return
    rows = max(1, target // row - halo)
    for b in range(batch):
        for r0 in range(0, height, rows):
            yield b, b + 1, r0, min(height, r0 + rows)


def _fill_halo(p: Tensor, width: int, batch_layout: bool = False) -> None:
    """Refresh the torus halo of packed boards ``p [B, H + 2, nw + 2]`` (module docstring), or of
    the batch layout ``p [⌈B/64⌉, H + 2, W + 2]``."""
    # (copy_ into views: cheaper per call than __setitem__, which matters for small boards)
    rows = p[:, 1:-1]
    if batch_layout:
        rows.select(-1, 0).copy_(rows.select(-1, -2))
        rows.select(-1, -1).copy_(rows.select(-1, 1))
    else:
        nw = p.shape[-1] - 2
        r = width - 64 * (nw - 1)  # valid bits in the last word, 1..64
        last, first = rows.select(-1, nw), rows.select(-1, 1)
        if r < 64:  # bits r.. of the last word ← cells 0.. (bit r: east neighbour of cell W − 1)
            last.bitwise_and_((1 << r) - 1).bitwise_or_(first << r)
            torch.bitwise_left_shift(last, 64 - r, out=rows.select(-1, 0))  # bit 63 ← cell W − 1
        else:
            rows.select(-1, 0).copy_(last)
        rows.select(-1, nw + 1).copy_(first)  # bit 0 ← cell 0
    p.select(1, 0).copy_(p.select(1, -2))
    p.select(1, -1).copy_(p.select(1, 1))


def _step_words(src: Tensor, dst: Tensor, program: _Program, width: int,
                batch_layout: bool = False) -> None:
    """``dst`` ← one step of ``src`` (packed boards with filled halos), halo included."""
    batch, height, nw = src.shape[0], src.shape[1] - 2, src.shape[2] - 2
    target = _CUDA_CHUNK_WORDS if src.device.type == "cuda" else CHUNK_WORDS
    fn = _STEPS[program.inputs]
    planes = _west_east_batch if batch_layout else _west_east
    for b0, b1, r0, r1 in _chunks(batch, height, nw, target, halo=2):
        fn(src[b0:b1, r0 : r1 + 2], dst[b0:b1, r0 + 1 : r1 + 1, 1:-1], program.circuit, planes)
    _fill_halo(dst, width, batch_layout)


# ====================================================================== packing
#: Whether CPU boards pack and unpack with numpy's ``packbits``/``unpackbits`` (one C pass
#: each): on a little-endian host byte ``m`` of an ``int64`` word is its bits ``8m .. 8m + 7``,
#: so ``packbits(bitorder="little")`` bytes viewed as words put cell ``64w + k`` at bit ``k``.
#: Elsewhere (CUDA, a big-endian host) the PyTorch ``_pack``/``_unpack`` below run.
_NUMPY_IO = sys.byteorder == "little"


def _numpy_io(t: Tensor) -> bool:
    return _NUMPY_IO and t.device.type == "cpu"


@functools.lru_cache(maxsize=8)
def _spread_table(device: torch.device) -> Tensor:
    """``int64 [256]``: byte ``b`` → the int64 whose byte ``k`` is bit ``k`` of ``b`` (0/1)."""
    bits = (torch.arange(256)[:, None] >> torch.arange(8)) & 1
    return (bits << (8 * torch.arange(8))).sum(1).to(device)


def _pack(x: Tensor, out: Tensor) -> None:
    """``x`` uint8 0/1 ``[g, rows, W]`` → ``out`` int64 ``[g, rows, nw]`` (last stride 1)."""
    width, nw = x.shape[-1], out.shape[-1]
    aligned = all(v % 8 == 0 for v in (x.storage_offset(), *x.stride()[:-1]))
    if width != 64 * nw or x.stride(-1) != 1 or not aligned:
        padded = x.new_zeros(*x.shape[:-1], 64 * nw)
        padded[..., :width] = x
        x = padded
    y = x.view(torch.int64) * _GATHER_BITS  # byte m of a word: cells 8m .. 8m+7 at bits 56..63
    out.view(torch.uint8).copy_(y.view(torch.uint8)[..., 7::8])


def _unpack(words: Tensor, out: Tensor) -> None:
    """``words`` int64 ``[g, rows, nw]`` → ``out [g, rows, W]`` of 0/1 in ``out``'s dtype."""
    g, rows, nw = words.shape
    width = out.shape[-1]
    index = words.view(torch.uint8).to(torch.int32).view(-1)  # one byte = 8 cells
    direct = out.dtype in (torch.bool, torch.uint8) and width == 64 * nw and out.is_contiguous()
    if direct and out.storage_offset() % 8 == 0:
        dst = out.view(torch.uint8).view(-1).view(torch.int64)
        torch.index_select(_spread_table(out.device), 0, index, out=dst)
        return
    cells = torch.index_select(_spread_table(out.device), 0, index)
    cells = cells.view(torch.uint8).view(g, rows, 64 * nw)[..., :width]
    out.copy_(cells.view(torch.bool) if out.dtype == torch.bool else cells)


def _pack_numpy(x: Tensor, out: Tensor) -> None:
    """:func:`_pack` on CPU by ``np.packbits``: ``out`` int64 ``[g, rows, nw]`` (last stride 1)
    gets the ``⌈W/8⌉`` packed bytes of each row, then zeros up to ``8 nw`` bytes."""
    packed = np.packbits(x.numpy(), axis=-1, bitorder="little")  # byte m: cells 8m .. 8m + 7
    dst = out.numpy().view(np.uint8)  # [g, rows, 8 nw]: byte 8w + m of a row = byte m of word w
    dst[..., : packed.shape[-1]] = packed
    dst[..., packed.shape[-1] :] = 0


def _unpack_numpy(words: Tensor, width: int) -> Tensor:
    """:func:`_unpack` on CPU by ``np.unpackbits``: a new uint8 ``[g, rows, W]`` tensor (its
    memory is the numpy array's, so it cannot be resized)."""
    cells = np.unpackbits(words.numpy().view(np.uint8), axis=-1, count=width, bitorder="little")
    return torch.from_numpy(cells)


def _pack_batch(x: Tensor, words: Tensor) -> None:
    """Boards ``x`` uint8 0/1 ``[B, H, W]`` into the batch layout ``words`` ``int64 [⌈B/64⌉,
    H + 2, W + 2]`` (halo left alone): board ``64g + 8m + b`` is bit ``b`` of byte ``m``,

        byte[g, m, i, j] = Σ_b x[64g + 8m + b, i, j] · 2^b      (one broadcast shift, one sum)

    computed 8 bytes at a time on ``int64`` views when ``H·W`` allows it (a byte sum ≤ 255 never
    carries into the next byte), then byte ``m`` of every word ``(g, i, j)`` is written (one
    strided copy of ``B·H·W/8`` bytes)."""
    batch, height, width = x.shape
    ng = words.shape[0]
    if batch != 64 * ng or not x.is_contiguous():
        padded = x.new_zeros((64 * ng, height, width))
        padded[:batch] = x
        x = padded
    hw = height * width
    lanes = x.view(ng, 8, 8, hw)
    if hw % 8 == 0 and x.storage_offset() % 8 == 0:
        lanes = lanes.view(torch.int64)  # 0/1 bytes shifted by b < 8 stay in their byte
    shifts = torch.arange(8, dtype=lanes.dtype, device=x.device).view(1, 1, 8, 1)
    acc = (lanes << shifts).sum(2, dtype=lanes.dtype)
    dst = words.view(torch.uint8).view(ng, height + 2, width + 2, 8)[:, 1:-1, 1:-1]
    dst.copy_(acc.view(torch.uint8).view(ng, 8, height, width).permute(0, 2, 3, 1))


def _unpack_batch(words: Tensor, out: Tensor) -> None:
    """The batch layout ``words`` back to boards ``out [B, H, W]`` (any dtype): byte ``m`` of
    word ``(g, i, j)`` holds boards ``64g + 8m .. 64g + 8m + 7``, ``x = (byte >> b) & 1``."""
    batch, height, width = out.shape
    ng = words.shape[0]
    src = words.view(torch.uint8).view(ng, height + 2, width + 2, 8)[:, 1:-1, 1:-1]
    by = src.permute(0, 3, 1, 2).contiguous()  # [g, m, H, W]
    direct = (batch == 64 * ng and out.dtype in (torch.bool, torch.uint8)
              and out.is_contiguous())
    cells = (out.view(torch.uint8) if direct else
             torch.empty((64 * ng, height, width), dtype=torch.uint8, device=out.device))
    shifts = torch.arange(8, dtype=torch.uint8, device=out.device).view(1, 1, 8, 1, 1)
    torch.bitwise_right_shift(by[:, :, None], shifts, out=cells.view(ng, 8, 8, height, width))
    cells.bitwise_and_(1)
    if not direct:
        out.copy_(cells[:batch].view(torch.bool) if out.dtype == torch.bool else cells[:batch])


def _step_uint8(x: Tensor, rule: Rule | str) -> Tensor:
    """One bit-sliced step of validated ``uint8`` boards ``[H, W]``/``[B, H, W]``: a new ``uint8``
    tensor of the same shape. A rule whose steps run natively packs, steps and unpacks in one C
    call (:mod:`gzoo.ca.bitnative`)."""
    from . import bitnative  # (it imports this module)

    y = bitnative.run(rule, x if x.dim() == 3 else x[None], only_hot=True)
    if y is not None:  # the rule runs natively: pack, step and unpack in one C call
        return y if x.dim() == 3 else y[0]
    return BitBoards._from_uint8(x, tuple(x.shape)).step(rule).unpack(torch.uint8)


# ====================================================================== public
class BitBoards:
    """Binary boards on the torus, packed 64 cells per ``int64`` word (module docstring).

    ``BitBoards.pack(boards)`` packs ``[H, W]``/``[B, H, W]`` boards (bool, integer or float 0/1,
    any device); :meth:`step` advances them by a rule (a :class:`Rule` of any family or a rule
    string); :meth:`unpack` returns ordinary boards. ``words`` is the packed tensor
    ``int64 [B, H + 2, ⌈W/64⌉ + 2]`` with its halo (or, with ``batch_layout``, ``int64
    [⌈B/64⌉, H + 2, W + 2]``: one bit per board, see the module docstring); ``shape`` the
    unpacked shape.
    """

    __slots__ = ("batch_layout", "shape", "words")

    def __init__(self, words: Tensor, shape: tuple[int, ...], batch_layout: bool = False) -> None:
        self.words = words
        self.shape = tuple(shape)
        self.batch_layout = batch_layout

    @classmethod
    def pack(cls, boards: Tensor) -> BitBoards:
        """Pack binary boards (checked like :func:`gzoo.ca.step` checks them)."""
        from .simulate import as_uint8_boards  # simulate imports this module

        return cls._from_uint8(as_uint8_boards(boards), tuple(boards.shape))

    @staticmethod
    def prefers_batch_layout(batch: int, width: int) -> bool:
        """Whether packing across the batch takes fewer words than packing along rows."""
        return batch >= 64 and -(-batch // 64) * (width + 2) < batch * (-(-width // 64) + 2)

    @classmethod
    def _from_uint8(cls, x: Tensor, shape: tuple[int, ...]) -> BitBoards:
        x3 = x if x.dim() == 3 else x[None]
        batch, height, width = x3.shape
        if cls.prefers_batch_layout(batch, width):
            ng = -(-batch // 64)
            words = torch.empty((ng, height + 2, width + 2), dtype=torch.int64, device=x.device)
            _pack_batch(x3, words)
            _fill_halo(words, width, batch_layout=True)
            return cls(words, shape, batch_layout=True)
        nw = -(-width // 64)
        words = torch.empty((batch, height + 2, nw + 2), dtype=torch.int64, device=x.device)
        if _numpy_io(x3):
            _pack_numpy(x3, words[:, 1:-1, 1:-1])
        else:
            for b0, b1, r0, r1 in _chunks(batch, height, width, _IO_CHUNK_CELLS):
                _pack(x3[b0:b1, r0:r1], words[b0:b1, r0 + 1 : r1 + 1, 1:-1])
        _fill_halo(words, width)
        return cls(words, shape)

    @property
    def width(self) -> int:
        return self.shape[-1]

    @property
    def height(self) -> int:
        return self.shape[-2]

    def step(self, rule: Rule | str | _Program, steps: int = 1, *, hot: bool | None = None
             ) -> BitBoards:
        """``steps`` steps of ``rule`` (new boards; ``self`` is unchanged).

        A rule that has been stepped long enough runs natively (:mod:`gzoo.ca.bitnative`: all
        ``steps`` in one C call); ``hot`` overrides that choice (``True``: natively now where
        possible, ``False``: eager PyTorch)."""
        from . import bitnative  # (it imports this module)

        steps = check_int("steps", steps, minimum=0)
        if steps == 0:
            return BitBoards(self.words.clone(), self.shape, self.batch_layout)
        program = _program(rule)
        if bitnative.hot(program, self.words.device) if hot is None else hot:
            words = bitnative.step_words(program, self.words, self.width, self.batch_layout,
                                         steps)
            if words is not None:
                return BitBoards(words, self.shape, self.batch_layout)
        last = self
        for last in self._evolve(program, steps, hot):  # noqa: B007 (the last is the result)
            pass
        return last

    @property
    def _batch(self) -> int:
        return self.shape[0] if len(self.shape) == 3 else 1

    def _evolve(self, rule: Rule | str | _Program, steps: int, hot: bool | None = None
                ) -> Iterator[BitBoards]:
        """The states after 1, 2, …, ``steps`` steps; each may be overwritten two steps later.

        ``hot``: ``True`` steps natively (:mod:`gzoo.ca.bitnative`) where possible, ``False``
        eagerly, ``None`` as the rule's account says (tiered: eager steps are charged to it, and
        once they will have cost ``NATIVE_AFTER`` the call goes on natively)."""
        from . import bitnative  # (it imports this module)

        program = _program(rule)
        device = self.words.device
        native = bitnative.hot(program, device) if hot is None else hot
        src, spare = self.words, None
        for i in range(steps):
            dst = None
            if native:  # the same step, in C
                dst = bitnative.step_words(program, src, self.width, self.batch_layout)
                native = dst is not None
            if dst is None:
                dst = torch.empty_like(src) if spare is None else spare
                t0 = _clock()
                _step_words(src, dst, program, self.width, self.batch_layout)
                if hot is None:
                    bitnative.charge(program, _clock() - t0, device)
                    native = bitnative.due(program, device, steps - i - 1)
            yield BitBoards(dst, self.shape, self.batch_layout)
            spare = None if src is self.words or native else src
            src = dst

    def unpack(self, dtype: torch.dtype = torch.bool, *, out: Tensor | None = None) -> Tensor:
        """The boards as a ``dtype`` tensor of 0/1 (written into ``out`` if given).

        On CPU a new bool or uint8 result holds numpy's memory (``np.unpackbits``, no copy):
        an ordinary tensor, except that it cannot be resized in place."""
        if out is not None and tuple(out.shape) != self.shape:
            raise ValueError(f"out must have shape {self.shape}, got {tuple(out.shape)}")
        inner = self.words[:, 1:-1, 1:-1]
        if out is None and dtype in (torch.bool, torch.uint8) and not self.batch_layout and (
                _numpy_io(inner)):
            return _unpack_numpy(inner, self.width).view(dtype).view(self.shape)
        if out is None:
            out = torch.empty(self.shape, dtype=dtype, device=self.words.device)
        o3 = out if out.dim() == 3 else out[None]
        if self.batch_layout:
            _unpack_batch(self.words, o3)
            return out
        batch, height = o3.shape[0], o3.shape[1]
        for b0, b1, r0, r1 in _chunks(batch, height, self.width, _IO_CHUNK_CELLS):
            src, dst = inner[b0:b1, r0:r1], o3[b0:b1, r0:r1]
            if _numpy_io(src):
                cells = _unpack_numpy(src, self.width)
                dst.copy_(cells.view(torch.bool) if dst.dtype == torch.bool else cells)
            else:
                _unpack(src, dst)
        return out

    def __repr__(self) -> str:
        return f"BitBoards(shape={self.shape}, device={self.words.device})"
