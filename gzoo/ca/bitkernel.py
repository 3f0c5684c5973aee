r"""Fused bit-sliced steps: a rule's whole step as generated code, compiled by ``torch.compile``.

The eager step of :mod:`gzoo.ca.bitslice` issues ~35 (Life) to ~250 (a random table) PyTorch
calls per chunk of words, and their fixed cost, not the bitwise work, dominates it. Here the
same step is written out as straight-line Python for one rule and one board width
(:func:`kernel_source`) —

    w = (c << 1) | (p >>> 63)      e = (c >>> 1) | (q << 63)          (neighbour planes)
    full adders → T₀ … T₃, or the nine planes   →   g₀ = …, g₁ = …, …   (the rule's circuit)
    halo: rows 0, H + 1 and words 0, nw + 1 of the result               (the torus)

— and handed to ``torch.compile`` (``fullgraph``, static shapes), whose code generator fuses it
into one loop over the words: halo'd words in, the next halo'd words out, as
:func:`gzoo.ca.bitslice._step_words` computes them. Packing and unpacking rows stay eager
(numpy's ``packbits``/``unpackbits`` are one pass each; compiled ones were no faster when tried);
``step`` on many small boards (the batch layout) packs, steps and unpacks in one compiled call
(:func:`once_kernel`), since there the fixed cost of each separate call outweighs the work.
``step`` and ``simulate`` themselves go native sooner (:mod:`gzoo.ca.bitnative`: generated C
that packs and unpacks as it steps, built in under a second); the kernels here serve
:class:`~gzoo.ca.bitslice.BitBoards` steps, and ``step``/``simulate`` where native steps are off.
``BitBoards.step`` on small boards runs up to :data:`STEPS_PER_CALL` steps per call
(:func:`steps_per_call`).

**When.** A compile costs seconds (measured in ``benchmarks/simulate.py --compile``), so a rule's
steps go compiled only once eager stepping has cost, or is about to cost, more than that — a
tiered JIT: each eager bit-sliced step's time is added to its rule's account, and when the
account plus the steps still ahead in the same call (at the speed just measured) reaches
:data:`COMPILE_AFTER` seconds, the kernel is built and the call continues on it; later calls of
that rule start compiled. ``COMPILE_AFTER = None`` turns kernels off, ``0`` builds them at once.
CPU only: the CUDA path stays eager (never run here: no GPU was lent).

**Trust.** Each new kernel's first step is checked word for word against the eager step it
replaces. A kernel that fails to build or disagrees is dropped with one warning, and from then on
every step runs eagerly. The eager step is the reference; the suite tests both.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from . import bitslice as bs
from .rule import Rule

__all__ = ["CACHE_SIZE", "COMPILE_AFTER", "STEPS_PER_CALL", "STEPS_PER_CALL_GATES",
           "STEPS_PER_CALL_MAX_WORDS", "charge", "hot", "kernel", "kernel_source", "last_step",
           "once_kernel", "spend", "spent", "steps_per_call"]

#: Seconds of stepping one rule (eager bit-sliced and byte steps in this process, plus what the
#: current call will still spend) from which its steps run compiled; ``None``: never, ``0``: at
#: once. About what a build costs (ski rental: rent until the rent paid equals the price):
#: 4.9–5.7 s in a fresh process with PyTorch's on-disk cache filled, 16.7–26.2 s with it empty
#: (``benchmarks/simulate.py --compile``).
COMPILE_AFTER: float | None = 5.0
#: Kernels kept (one per rule, packed shape and steps per call); the oldest is dropped first.
CACHE_SIZE = 32
#: Most steps per compiled call when only the last state is wanted (``BitBoards.step``) and the
#: boards have at most ``STEPS_PER_CALL_MAX_WORDS`` words: fewer calls, less fixed cost per step
#: (at 64 × 64² about half the time per step; no gain at 2048², measured in development). Build
#: time grows with the steps unrolled (a random table, 239 gates: 4.7 s for 1 step, 36 s for 8,
#: in development), so a rule gets ``STEPS_PER_CALL_GATES // gates`` steps per call, at most
#: ``STEPS_PER_CALL`` (Life: 8; a random table: 1).
STEPS_PER_CALL = 8
STEPS_PER_CALL_MAX_WORDS = 1 << 15
STEPS_PER_CALL_GATES = 256

Kernel = Callable[[Tensor], Tensor]

_spent: dict[bs._Program, float] = {}  # seconds of eager bit-sliced and byte steps per rule (CPU)
_last: dict[bs._Program, float] = {}  # seconds of its last such step
_cache: dict[tuple, Kernel] = {}
_broken: str | None = None  # why kernels are off in this process, once one failed
_serial = itertools.count()


def hot(rule: Rule | str | bs._Program, device: torch.device) -> bool:
    """Whether ``rule``'s steps on ``device`` run compiled from the start (its account is full,
    or kernels are on at once)."""
    if not _allowed(device):
        return False
    assert COMPILE_AFTER is not None
    if COMPILE_AFTER > 0 and not _spent:  # nothing stepped eagerly yet (no circuit compiled)
        return False
    return _spent.get(bs._program(rule), 0.0) >= COMPILE_AFTER


def spend(program: bs._Program, seconds: float, steps_ahead: int, device: torch.device) -> bool:
    """Add one eager step's ``seconds`` to ``program``'s account (CPU); whether to compile now,
    with ``steps_ahead`` more steps of the same size still to run in this call."""
    if device.type != "cpu":
        return False
    if len(_spent) > 4096:  # (bounded: an atlas runs many rules briefly)
        _spent.clear()
        _last.clear()
    total = _spent[program] = _spent.get(program, 0.0) + seconds
    _last[program] = seconds
    if not _allowed(device):
        return False
    assert COMPILE_AFTER is not None
    if total + seconds * steps_ahead < COMPILE_AFTER:
        return False
    _spent[program] = max(total, COMPILE_AFTER)  # due now: later calls start compiled
    return True


def charge(rule: Rule | str | bs._Program, seconds: float, device: torch.device) -> None:
    """Add ``seconds`` of stepping ``rule`` some other way (the byte path) to its account (CPU),
    without building anything now: the native tier (:mod:`gzoo.ca.bitnative`) reads it."""
    if device.type == "cpu" and not torch.compiler.is_compiling():
        program = bs._program(rule)
        if len(_spent) > 4096:
            _spent.clear()
            _last.clear()
        _spent[program] = _spent.get(program, 0.0) + seconds
        _last[program] = seconds


def spent(program: bs._Program) -> float:
    """Seconds of eager bit-sliced and byte steps of ``program`` so far in this process (CPU)."""
    return _spent.get(program, 0.0)


def last_step(program: bs._Program) -> float:
    """Seconds of ``program``'s last eager bit-sliced or byte step (0 if none)."""
    return _last.get(program, 0.0)


def steps_per_call(program: bs._Program, words: Tensor) -> int:
    """How many steps one compiled call of ``BitBoards.step`` runs on ``words`` (1: one a call)."""
    if words.numel() > STEPS_PER_CALL_MAX_WORDS:
        return 1
    return max(1, min(STEPS_PER_CALL, STEPS_PER_CALL_GATES // max(1, len(program.circuit.gates))))


def _allowed(device: torch.device) -> bool:
    if COMPILE_AFTER is None or _broken is not None or device.type != "cpu":
        return False
    return not torch.compiler.is_compiling()  # inside a caller's compiled region: stay eager


def kernel(program: bs._Program, words: Tensor, width: int, batch_layout: bool,
           steps: int = 1) -> Kernel | None:
    """The compiled ``steps`` steps of ``program`` (halo included, one call) for halo'd ``words``
    shaped like these, checked against the eager steps on ``words`` when first built; ``None``
    once kernels are broken in this process (then step eagerly)."""
    def eager(words: Tensor) -> Tensor:
        want = words
        for _ in range(steps):
            want, src = torch.empty_like(words), want
            bs._step_words(src, want, program, width, batch_layout)
        return want

    return _build((program, tuple(words.shape), width, batch_layout, steps), words, eager,
                  lambda: kernel_source(program, width, batch_layout, steps), "step")


def once_kernel(program: bs._Program, boards: Tensor) -> Kernel | None:
    """One compiled call from ``uint8`` boards ``[B, H, W]`` (contiguous, in the batch layout:
    :meth:`BitBoards.prefers_batch_layout <gzoo.ca.bitslice.BitBoards.prefers_batch_layout>`)
    to the next boards: pack, step and unpack — small boards, where each of those as separate
    calls costs more than the step. Checked like :func:`kernel`."""
    batch, _, width = boards.shape

    def eager(x: Tensor) -> Tensor:
        packed = bs.BitBoards._from_uint8(x, tuple(x.shape))
        return next(packed._evolve(program, 1, hot=False)).unpack(torch.uint8)

    return _build((program, tuple(boards.shape), "once"), boards, eager,
                  lambda: kernel_source(program, width, True, 1, batch=batch), "once")


def _build(key: tuple, example: Tensor, eager: Kernel, source: Callable[[], str], entry: str
           ) -> Kernel | None:
    """The cached kernel ``key``, or ``entry`` of ``source()`` compiled, run on ``example`` and
    compared with ``eager`` on it; ``None`` (and kernels off) if either step fails."""
    fn = _cache.get(key)
    if fn is not None or _broken is not None:
        return fn
    # (integer tensors carry no gradient: no no_grad wrapper, whose cost per call is measurable)
    fn = torch.compile(_exec(source(), entry), fullgraph=True, dynamic=False)
    try:
        with warnings.catch_warnings():  # (the compiler's own deprecation notices are not ours)
            warnings.simplefilter("ignore")
            got = fn(example)
    except Exception as exc:  # no compiler, an unsupported platform, …: the eager path is exact
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _give_up(f"compiling a bit-sliced step failed ({type(exc).__name__}: {first})")
        return None
    if not torch.equal(got, eager(example)):
        _give_up(f"a compiled bit-sliced step ({entry}, input {tuple(example.shape)}, key "
                 f"{key[1:]}) disagreed with the eager step; please report it")
        return None
    while len(_cache) >= CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    _cache[key] = fn
    return fn


def _give_up(why: str) -> None:
    global _broken
    _broken = why
    _cache.clear()
    warnings.warn(f"gzoo: {why}; bit-sliced steps run eagerly from now on", RuntimeWarning,
                  stacklevel=4)


def _exec(source: str, entry: str = "step") -> Kernel:
    """The function ``entry`` of ``source`` as a fresh code object: ``torch.compile`` caches per
    code object, so every rule and shape gets its own entry (no recompile limit is reached)."""
    namespace: dict[str, Any] = {"torch": torch}
    exec(compile(source, f"<gzoo bit-sliced step {next(_serial)}>", "exec"), namespace)
    return namespace[entry]


_OPS = {"and": "{a} & {b}", "or": "{a} | {b}", "xor": "{a} ^ {b}", "not": "~{a}"}


def kernel_source(program: bs._Program, width: int, batch_layout: bool, steps: int = 1,
                  batch: int | None = None) -> str:
    """Python source of ``step(s)`` (module docstring) for boards of width ``width``: ``s`` are
    halo'd words as in :mod:`gzoo.ca.bitslice`, in its row or batch layout; ``step`` runs
    ``steps`` steps (``one`` is a single step). With ``batch`` boards in the batch layout, also
    ``once(x)``: ``uint8 [batch, H, W]`` → pack → ``one`` → unpack."""
    out: list[str] = []
    emit = out.append
    nw = -(-width // 64)
    # ---- halo: the torus around the cells' words y (bitslice._fill_halo, for this width)
    emit("def halo(y):")
    if batch_layout:
        emit("    y = torch.cat([y[..., -1:], y, y[..., :1]], -1)")
    else:
        r = width - 64 * (nw - 1)  # cells in the last word
        emit("    first = y[..., :1]")
        if r < 64:  # bits r.. of the last word ← cells 0..; word 0's bit 63 ← cell W − 1
            emit(f"    last = y[..., -1:] & {(1 << r) - 1}")
            if nw == 1:  # one word, first and last: extended in place, as the eager halo does
                emit(f"    last = last | (last << {r})")
                emit("    first = last")
            else:
                emit(f"    last = last | (first << {r})")
            emit(f"    west = last << {64 - r}")
        else:
            emit("    last = y[..., -1:]")
            emit("    west = last")
        middle = "y[..., :-1], " if nw > 1 else ""
        emit(f"    y = torch.cat([west, {middle}last, first], -1)")
    emit("    return torch.cat([y[:, -1:], y, y[:, :1]], 1)")
    # ---- the step
    emit("def one(s):")
    if batch_layout:  # one bit per board: the neighbours are the neighbouring words
        emit("    w, c, e = s[..., :-2], s[..., 1:-1], s[..., 2:]")
    else:
        emit("    c = s[..., 1:-1]")
        emit("    w = (c << 1) | ((s[..., :-2] >> 63) & 1)  # x[j − 1]")
        emit(f"    e = ((c >> 1) & {bs._LOW63}) | (s[..., 2:] << 63)  # x[j + 1]")
    circuit = program.circuit
    if program.inputs == "moore":  # T = n + x by full adders (bitslice docstring)
        emit("    h0 = w ^ c ^ e; h1 = (w & c) | ((w ^ c) & e)  # w + c + e = h0 + 2 h1")
        emit("    a0, b0, c0 = h0[:, :-2], h0[:, 1:-1], h0[:, 2:]")
        emit("    a1, b1, c1 = h1[:, :-2], h1[:, 1:-1], h1[:, 2:]")
        emit("    t0 = a0 ^ b0 ^ c0; k1 = (a0 & b0) | ((a0 ^ b0) & c0)  # Σ h0 = t0 + 2 k1")
        emit("    u = a1 ^ b1 ^ c1; v = (a1 & b1) | ((a1 ^ b1) & c1)  # Σ h1 = u + 2 v")
        emit("    t1 = u ^ k1; q = u & k1; t2 = v ^ q; t3 = v & q  # T = t0 + 2(k1 + u) + 4v")
        inputs = ["c[:, 1:-1]", "t0", "t1", "t2", "t3"]
    elif program.inputs == "von_neumann":
        emit("    x, w, e = c[:, 1:-1], w[:, 1:-1], e[:, 1:-1]")
        emit("    up, dn = c[:, :-2], c[:, 2:]")
        emit("    s1 = up ^ dn ^ x; k1 = (up & dn) | ((up ^ dn) & x)  # up + down + x = s1 + 2 k1")
        emit("    t0 = w ^ e ^ s1; k2 = (w & e) | ((w ^ e) & s1)  # w + e + s1 = t0 + 2 k2")
        emit("    t1 = k1 ^ k2; t2 = k1 & k2  # T = t0 + 2(k1 + k2)")
        inputs = ["x", "t0", "t1", "t2"]
    else:  # input 3r + c: cell (r, c) of the 3×3 pattern, row offset r − 1, column offset c − 1
        emit("    rows = s.shape[1] - 2")
        inputs = [f"{p}[:, {r}:{r} + rows]" for r in range(3) for p in ("w", "c", "e")]
    base = 2 + circuit.n_inputs
    name = {0: "torch.zeros_like(c[:, 1:-1])", 1: "torch.full_like(c[:, 1:-1], -1)"}
    for k, expr in enumerate(inputs):
        name[2 + k] = f"i{k}"
        emit(f"    i{k} = {expr}")
    for g, (op, a, b) in enumerate(circuit.gates):
        name[base + g] = f"g{g}"
        emit(f"    g{g} = " + _OPS[op].format(a=name[a], b=name[b]))
    emit(f"    return halo({name[circuit.output]})")
    emit("def step(s):")
    emit(f"    for _ in range({steps}):  # (unrolled when traced: one compiled call)")
    emit("        s = one(s)")
    emit("    return s")
    if batch is not None and batch_layout:  # board 64g + 8m + b is bit b of byte m of word g
        groups = -(-batch // 64)
        emit("def once(x):")
        if 64 * groups > batch:
            emit(f"    x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, {64 * groups - batch}))")
        emit(f"    x = x.view({groups}, 8, 8, x.shape[1], {width})")
        emit("    b = torch.arange(8, dtype=torch.uint8, device=x.device).view(1, 1, 8, 1, 1)")
        emit("    by = (x << b).sum(2, dtype=torch.uint8)  # byte m = Σ_b x[8m + b] 2^b")
        emit("    w = by[:, 0].to(torch.int64)")
        emit("    for m in range(1, 8):")
        emit("        w = w | (by[:, m].to(torch.int64) << (8 * m))  # word = Σ_m byte_m 2^8m")
        emit("    y = one(halo(w))[:, 1:-1, 1:-1]")
        emit("    k = torch.arange(64, device=x.device).view(1, 64, 1, 1)")
        emit(f"    x = ((y[:, None] >> k) & 1).reshape({64 * groups}, y.shape[1], {width})")
        emit(f"    return x[:{batch}].to(torch.uint8)")
    return "\n".join(out) + "\n"
