r"""Native bit-sliced steps: a rule's step, with packing and unpacking, as generated C.

``step`` and ``simulate`` take and give one byte per cell, so a bit-sliced step behind them
packs, steps and unpacks. As separate PyTorch or numpy passes the packing costs several times
the step itself. Here all three run in one C call, built for one rule by the system C compiler
(``cc -O3 -march=native``; about 0.6 s with its self-test) and loaded with :mod:`ctypes`:

    pack     word k of row i  = Σ_b [x[i, 64k + b] ≠ 0] 2^b        (AVX-512: one mask test)
    halo     the torus around each row and board (as :func:`gzoo.ca.bitslice._fill_halo`)
    step     w = (c << 1) | (c_prev >> 63),  e = (c >> 1) | (c_next << 63)
             full adders → T₀ … T₃ (or the nine planes) → the rule's circuit, gate by gate
    unpack   y[i, 64k + b] = (word >> b) & 1                        (AVX-512: one masked set)

over the words of whole boards at a time (a flat loop the compiler vectorises). Boards up to
64 cells wide take one word per row and rotate it in place (no halo words). Many boards run in
chunks of about :data:`CHUNK_WORDS` words, so the working memory is two chunks.

Packed boards (:class:`~gzoo.ca.bitslice.BitBoards`) step in the same library, on their own
halo'd words (:func:`step_words`, both layouts, several steps per call).

**When.** A build costs about half a second, so, like a JIT, the library is built only for rules
that are stepped: once a rule's steps (byte and eager bit-sliced, each timed and charged to its
account) have cost :data:`NATIVE_AFTER` seconds, or are foreseen to within one ``simulate`` or
``BitBoards.step`` call — ski rental: rent until the rent paid equals the price. CPU only, on
little-endian hosts with a C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``); without one,
steps run as before, silently.

**Trust.** Each built library first steps a fixed set of boards — widths 1 to 200, one and
several words per row, chunks split, several steps and every frame, and the same boards packed in
both layouts, word for word — and each new board shape's first step is compared with the eager
bit-sliced step. A build that fails or a step that
disagrees turns native steps off for the process with one warning; the eager PyTorch step (the
reference, and the path on CUDA) runs instead.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from . import bitslice as bs

__all__ = ["CACHE_SIZE", "CHUNK_WORDS", "NATIVE_AFTER", "available", "c_source", "charge", "due",
           "hot", "run", "spent", "step_words"]

#: Seconds of stepping a rule (byte or eager bit-sliced steps) after which its ``step`` and
#: ``simulate`` calls run natively (``None``: never, ``0``: at once). About what a build and its
#: self-test cost (0.56–0.74 s, ``benchmarks/simulate.py --compile``).
NATIVE_AFTER: float | None = 0.5
#: Words of packed boards stepped per chunk (two chunks are the working memory).
CHUNK_WORDS = 1 << 16

class _Lib(NamedTuple):
    """A rule's built library: ``run`` (bytes in and out) and ``words`` (packed words)."""

    run: Any  # ctypes functions
    words: Any


#: Libraries kept (one per rule); the oldest is dropped first.
CACHE_SIZE = 32

_libs: dict[bs._Program, _Lib] = {}
_spent: dict[bs._Program, float] = {}  # the account: seconds of steps per rule (CPU)
_last: dict[bs._Program, float] = {}  # seconds of its last step
_checked: set[tuple] = set()  # (program, shape, …) whose first native step agreed
_broken: str | None = None
_LITTLE_ENDIAN = sys.byteorder == "little"  # (the generated packing reads bytes as words)

_ARGS = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 6
_WORD_ARGS = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 5
#: Target flags tried in turn: this CPU's instructions (AVX-512 or AVX2 packing where it has them),
#: else the compiler's default target (the portable packing).
_ARCH_FLAGS: tuple[list[str], ...] = (["-march=native"], [])


def available(device: torch.device) -> bool:
    """Whether native steps may run on ``device`` in this process: switched on, nothing broken,
    CPU, a little-endian host with a C compiler, not inside a ``torch.compile`` trace."""
    return (NATIVE_AFTER is not None and _broken is None and device.type == "cpu"
            and _LITTLE_ENDIAN and not torch.compiler.is_compiling() and _compiler() is not None)


def charge(rule: Any, seconds: float, device: torch.device) -> None:
    """Add ``seconds`` of stepping ``rule`` (an eager bit-sliced or a byte step) on ``device`` to
    its account, where native steps could run (bounded: an atlas steps many rules briefly)."""
    if available(device):
        program = bs._program(rule)
        if len(_spent) > 4096:
            _spent.clear()
            _last.clear()
        _spent[program] = _spent.get(program, 0.0) + seconds
        _last[program] = seconds


def spent(program: bs._Program) -> float:
    """Seconds of eager bit-sliced and byte steps of ``program`` so far in this process (CPU)."""
    return _spent.get(program, 0.0)


def hot(rule: Any, device: torch.device) -> bool:
    """Whether ``rule``'s steps on ``device`` run natively now (its account is full)."""
    return available(device) and _hot(bs._program(rule))


def due(rule: Any, device: torch.device, steps_ahead: int) -> bool:
    """:func:`hot`, or the rule's account plus ``steps_ahead`` more eager steps (at the speed
    of its last one) reaches :data:`NATIVE_AFTER`."""
    if not available(device):
        return False
    assert NATIVE_AFTER is not None
    program = bs._program(rule)
    return spent(program) + _last.get(program, 0.0) * steps_ahead >= NATIVE_AFTER


def run(rule: Any, x: Tensor, steps: int = 1, frames: Tensor | None = None, *,
        only_hot: bool = False) -> Tensor | None:
    """``steps`` steps of ``rule`` on validated ``uint8`` boards ``x`` ``[B, H, W]``: the last
    state (a new tensor), or with ``frames`` (``uint8 [steps, B, H, W]``, contiguous) every
    state written there (and ``frames`` returned). ``None`` where native steps are off, or with
    ``only_hot`` where the rule is not :func:`hot` (then step otherwise)."""
    if x.dtype not in (torch.uint8, torch.bool) or x.dim() != 3:
        raise TypeError(f"x must be uint8/bool boards [B, H, W], got {x.dtype} {tuple(x.shape)}")
    if frames is not None and (frames.dtype != torch.uint8 or not frames.is_contiguous()
                               or tuple(frames.shape) != (steps, *x.shape)):
        raise ValueError(f"frames must be contiguous uint8 of shape {(steps, *x.shape)}, got "
                         f"{frames.dtype} {tuple(frames.shape)}")
    if steps < 1 or not available(x.device):
        return None
    program = bs._program(rule)
    if only_hot and not _hot(program):
        return None
    lib = _libs.get(program) or _library(program)
    if lib is None:
        return None
    x = x.contiguous()
    batch, height, width = x.shape
    chunk = _chunk(batch, height, width, CHUNK_WORDS)
    if not _first_step_agrees((program, *x.shape), lambda: _call(lib.run, x, 1, None, chunk),
                              lambda: _eager(program, x, 1), f"boards {tuple(x.shape)}"):
        return None
    return _call(lib.run, x, steps, frames, chunk)


def step_words(rule: Any, words: Tensor, width: int, batch_layout: bool, steps: int = 1
               ) -> Tensor | None:
    """``steps`` steps of packed boards as :class:`~gzoo.ca.bitslice.BitBoards` holds them
    (``int64`` halo'd ``words`` of boards ``width`` cells wide, row or batch layout): new words,
    halo filled, equal word for word to the eager steps. ``None`` where native steps are off."""
    span = width + 2 if batch_layout else -(-width // 64) + 2
    if words.dtype != torch.int64 or words.dim() != 3 or words.shape[1] < 3 or (
            words.shape[2] != span):  # (the C code reads exactly this much)
        raise ValueError(f"words must be int64 [B, H + 2, {span}] for boards {width} wide "
                         f"({'batch' if batch_layout else 'row'} layout), got {words.dtype} "
                         f"{tuple(words.shape)}")
    if steps < 1 or not available(words.device):
        return None
    program = bs._program(rule)
    lib = _libs.get(program) or _library(program)
    if lib is None:
        return None
    words = words.contiguous()
    if not _first_step_agrees(
            (program, "words", *words.shape, width, batch_layout),
            lambda: _call_words(lib.words, words, width, batch_layout, 1),
            lambda: _eager_words(program, words, width, batch_layout, 1),
            f"packed words {tuple(words.shape)}"):
        return None
    return _call_words(lib.words, words, width, batch_layout, steps)


def _first_step_agrees(key: tuple, got: Callable[[], Tensor], want: Callable[[], Tensor],
                       what: str) -> bool:
    """Whether ``key`` (a rule and a shape) was checked, or now is: its first native step
    ``got()`` equals the eager ``want()``; if not, native steps are off (one warning)."""
    if key in _checked:
        return True
    if not torch.equal(got(), want()):
        _give_up(f"a native bit-sliced step disagreed with the eager step on {what}; "
                 "please report it")
        return False
    if len(_checked) > 4096:
        _checked.clear()
    _checked.add(key)
    return True


def _hot(program: bs._Program) -> bool:
    assert NATIVE_AFTER is not None
    return NATIVE_AFTER == 0 or spent(program) >= NATIVE_AFTER


# ---------------------------------------------------------------------- calling
def _chunk(batch: int, height: int, width: int, words: int) -> int:
    """Boards per chunk: about ``words`` words of packed boards, at least one board."""
    per_board = (height + 2) * (1 if width <= 64 else -(-width // 64) + 2)
    return max(1, min(batch, words // per_board))


def _call(fn: Any, x: Tensor, steps: int, frames: Tensor | None, chunk: int) -> Tensor:
    batch, height, width = x.shape
    out = frames if frames is not None else torch.empty_like(x)
    if fn(x.data_ptr(), out.data_ptr(), batch, height, width, steps, frames is not None, chunk):
        raise MemoryError(f"no memory for the packed scratch of {chunk} boards of "
                          f"{height}×{width} cells")
    return out


def _call_words(fn: Any, words: Tensor, width: int, batch_layout: bool, steps: int) -> Tensor:
    out = torch.empty_like(words)
    if fn(words.data_ptr(), out.data_ptr(), words.shape[0], words.shape[1] - 2, width, steps,
          batch_layout):
        raise MemoryError(f"no memory for a second copy of packed boards {tuple(words.shape)}")
    return out


def _eager_words(program: bs._Program, words: Tensor, width: int, batch_layout: bool,
                 steps: int) -> Tensor:
    for _ in range(steps):
        out = torch.empty_like(words)
        bs._step_words(words, out, program, width, batch_layout)
        words = out
    return words


def _eager(program: bs._Program, x: Tensor, steps: int) -> Tensor:
    packed = bs.BitBoards._from_uint8(x, tuple(x.shape))
    return packed.step(program, steps, hot=False).unpack(torch.uint8)


def _library(program: bs._Program) -> _Lib | None:
    if _broken is not None:
        return None
    try:
        lib = _build(c_source(program))
    except Exception as exc:  # no usable compiler, a failed build: the other paths are exact
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _give_up(f"building a native bit-sliced step failed ({type(exc).__name__}: {first})")
        return None
    why = _self_test(lib, program)
    if why is not None:
        _give_up(f"a native bit-sliced step failed its self-test ({why}); please report it")
        return None
    while len(_libs) >= CACHE_SIZE:
        _libs.pop(next(iter(_libs)))
    _libs[program] = lib
    return lib


#: (boards, rows, width, chunk words): one and several words per row, partial last words,
#: one-row and one-column boards, and batches split into chunks.
_SELF_TEST = ((3, 5, 1, 7), (2, 1, 7, 3), (4, 3, 64, 10), (3, 4, 65, 12), (1, 6, 130, 1),
              (3, 2, 200, 48), (2, 64, 63, 1 << 16))


def _self_test(lib: _Lib, program: bs._Program) -> str | None:
    g = torch.Generator().manual_seed(0)
    for batch, height, width, chunk_words in _SELF_TEST:
        x = (torch.rand((batch, height, width), generator=g) < 0.4).to(torch.uint8)
        chunk = _chunk(batch, height, width, chunk_words)
        want = [_eager(program, x, s) for s in (1, 2, 3)]
        last = _call(lib.run, x, 3, None, chunk)
        frames = _call(lib.run, x, 3, torch.empty((3, *x.shape), dtype=torch.uint8), chunk)
        if not torch.equal(last, want[2]) or not torch.equal(frames, torch.stack(want)):
            return f"boards {tuple(x.shape)}, {chunk} per chunk"
        for layout in (False, True):  # packed words, halo and don't-care bits included
            words = _batch_words(x) if layout else bs.BitBoards._from_uint8(x, x.shape).words
            for steps in (1, 3):
                if not torch.equal(_call_words(lib.words, words, width, layout, steps),
                                   _eager_words(program, words, width, layout, steps)):
                    return f"packed boards {tuple(x.shape)}, batch layout {layout}"
    return None


def _batch_words(x: Tensor) -> Tensor:
    """``x`` in the batch layout (one bit per board), whatever its batch size."""
    ng = -(-x.shape[0] // 64)
    words = torch.empty((ng, x.shape[1] + 2, x.shape[2] + 2), dtype=torch.int64)
    bs._pack_batch(x, words)
    bs._fill_halo(words, x.shape[2], batch_layout=True)
    return words


def _give_up(why: str) -> None:
    global _broken
    _broken = why
    _libs.clear()
    warnings.warn(f"gzoo: {why}; native bit-sliced steps are off from now on", RuntimeWarning,
                  stacklevel=4)


# ---------------------------------------------------------------------- building
def _compiler() -> list[str] | None:
    """The C compiler command: ``$CC`` (split like a shell word list, e.g. ``ccache gcc``), else
    the first of ``cc``, ``gcc``, ``clang`` found; ``None`` if there is none."""
    return _which(os.environ.get("CC") or None)


@functools.lru_cache(maxsize=8)
def _which(cc: str | None) -> list[str] | None:
    if cc is not None:
        words = shlex.split(cc)
        found = shutil.which(words[0]) if words else None
        return [found, *words[1:]] if found else None
    return next(([p] for c in ("cc", "gcc", "clang") if (p := shutil.which(c))), None)


def _build(source: str) -> _Lib:
    """Compile ``source`` into a shared library (``-march=native``, else without it) and load
    it; the temporary directory is removed once the library is mapped."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found ($CC, cc, gcc, clang)")  # (available() said so)
    with tempfile.TemporaryDirectory(prefix="gzoo-native-", ignore_cleanup_errors=True) as d:
        src, lib = os.path.join(d, "step.c"), os.path.join(d, "step.so")
        with open(src, "w", encoding="utf-8") as f:
            f.write(source)
        errors = ""
        for arch in _ARCH_FLAGS:
            cmd = [*cc, "-O3", *arch, "-std=c11", "-shared", "-fPIC", "-o", lib, src]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            if res.returncode == 0:
                break
            errors = res.stderr.strip() or f"exit status {res.returncode}"
        else:
            raise RuntimeError(f"{os.path.basename(cc[0])}: {errors}")
        loaded = ctypes.CDLL(lib)
    fn, words = loaded.gzoo_run, loaded.gzoo_step_words
    fn.argtypes, words.argtypes = _ARGS, _WORD_ARGS
    fn.restype = words.restype = ctypes.c_int
    return _Lib(fn, words)


_OPS = {"and": "{a} & {b}", "or": "{a} | {b}", "xor": "{a} ^ {b}", "not": "~{a}"}

_PRELUDE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512BW__) || defined(__AVX2__)
#include <immintrin.h>
#endif
typedef uint64_t u64;

/* 64 bytes -> one word: bit b = [p[b] != 0] */
static inline u64 pack64(const uint8_t *p) {
#if defined(__AVX512BW__)
    __m512i v = _mm512_loadu_si512((const void *)p);
    return (u64)_mm512_test_epi8_mask(v, v);
#elif defined(__AVX2__)
    __m256i z = _mm256_setzero_si256();
    uint32_t lo = ~(uint32_t)_mm256_movemask_epi8(
        _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)p), z));
    uint32_t hi = ~(uint32_t)_mm256_movemask_epi8(
        _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(p + 32)), z));
    return (u64)lo | ((u64)hi << 32);
#else
    u64 w = 0;
    for (int m = 0; m < 8; m++) {  /* bit 8k+7 of t: byte k != 0; the product gathers them */
        u64 v;
        memcpy(&v, p + 8 * m, 8);
        u64 t = (((v & 0x7F7F7F7F7F7F7F7FULL) + 0x7F7F7F7F7F7F7F7FULL) | v) & 0x8080808080808080ULL;
        w |= ((t * 0x0002040810204081ULL) >> 56) << (8 * m);
    }
    return w;
#endif
}

/* one word -> 64 bytes of 0/1 */
static inline void unpack64(u64 w, uint8_t *p) {
#if defined(__AVX512BW__)
    _mm512_storeu_si512((void *)p, _mm512_maskz_set1_epi8((__mmask64)w, 1));
#elif defined(__AVX2__)
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL,
                                            0x0303030303030303LL);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    for (int h = 0; h < 2; h++) {  /* byte j <- bit j of the 32-bit half */
        __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)(uint32_t)(w >> (32 * h))), shuf);
        v = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit),
                             _mm256_set1_epi8(1));
        _mm256_storeu_si256((__m256i *)(p + 32 * h), v);
    }
#else
    for (int m = 0; m < 8; m++) {  /* byte k of t: bit k of the byte, then 0x80 -> 1 */
        u64 t = (((w >> (8 * m)) & 255) * 0x0101010101010101ULL) & 0x8040201008040201ULL;
        t = ((t + 0x7F7F7F7F7F7F7F7FULL) >> 7) & 0x0101010101010101ULL;
        memcpy(p + 8 * m, &t, 8);
    }
#endif
}

static inline u64 pack_tail(const uint8_t *x, int64_t n) {  /* n < 64 cells */
    uint8_t tmp[64] = {0};
    memcpy(tmp, x, (size_t)n);
    return pack64(tmp);
}

static inline void unpack_tail(u64 w, uint8_t *y, int64_t n) {
    uint8_t tmp[64];
    unpack64(w, tmp);
    memcpy(y, tmp, (size_t)n);
}

/* the torus around one row's words e[1..nw] (bitslice._fill_halo): e[0] bit 63 = cell W-1,
   e[nw+1] bit 0 = cell 0, and bits r.. of a partial last word = cells 0.. */
static void halo_row(u64 *e, int64_t W, int64_t nw) {
    int64_t r = W - 64 * (nw - 1);
    u64 first = e[1], last;
    if (r < 64) {
        last = e[nw] & ((1ULL << r) - 1);
        if (nw == 1) { last |= last << r; first = last; } else { last |= first << r; }
        e[nw] = last;
        e[0] = last << (64 - r);
    } else {
        last = e[nw];
        e[0] = last;
    }
    e[nw + 1] = first;
}

static void vhalo(u64 *p, int64_t H, int64_t S) {  /* rows 0, H + 1 <- rows H, 1 */
    memcpy(p, p + H * S, (size_t)S * 8);
    memcpy(p + (H + 1) * S, p + S, (size_t)S * 8);
}
"""

_STEPS = r"""
/* wide boards: words [rows H + 2][S = nw + 2] per board, halo'd; every word of a chunk is
   stepped in one flat loop (the halo words' results are overwritten or ignored) */
static void step_wide(const u64 *restrict P, u64 *restrict Q, int64_t n, int64_t S) {
    for (int64_t k = S + 1; k < n - S - 1; k++) {
        const u64 *u = P + k - S, *m = P + k, *d = P + k + S;
        Q[k] = cell((u[0] << 1) | (u[-1] >> 63), u[0], (u[0] >> 1) | (u[1] << 63),
                    (m[0] << 1) | (m[-1] >> 63), m[0], (m[0] >> 1) | (m[1] << 63),
                    (d[0] << 1) | (d[-1] >> 63), d[0], (d[0] >> 1) | (d[1] << 63));
    }
}

/* narrow boards (W <= 64): one word per row, rows H + 2 per board; west/east rotate the W
   cells in place: west of cell j is cell j - 1 mod W */
static inline void step_narrow(const u64 *restrict P, u64 *restrict Q, int64_t n, int64_t W) {
    const u64 mask = W == 64 ? ~0ULL : (1ULL << W) - 1;
    const int s = (int)(W - 1);
    for (int64_t k = 1; k < n - 1; k++) {
        u64 u = P[k - 1], m = P[k], d = P[k + 1];
        Q[k] = cell(((u << 1) | (u >> s)) & mask, u, (u >> 1) | ((u << s) & mask),
                    ((m << 1) | (m >> s)) & mask, m, (m >> 1) | ((m << s) & mask),
                    ((d << 1) | (d >> s)) & mask, d, (d >> 1) | ((d << s) & mask)) & mask;
    }
}

/* the batch layout (one bit per board): words [rows H + 2][S = W + 2] per group of 64 boards;
   a cell's west/east neighbours are the neighbouring words */
static void step_batch(const u64 *restrict P, u64 *restrict Q, int64_t n, int64_t S) {
    for (int64_t k = S + 1; k < n - S - 1; k++)
        Q[k] = cell(P[k - S - 1], P[k - S], P[k - S + 1], P[k - 1], P[k], P[k + 1],
                    P[k + S - 1], P[k + S], P[k + S + 1]);
}

/* packed boards as gzoo.ca.bitslice.BitBoards holds them (halo'd words, row or batch layout):
   src [B][H + 2][S] -> dst, `steps` steps later, halo filled (1: no memory) */
int gzoo_step_words(const u64 *src, u64 *dst, int64_t B, int64_t H, int64_t W, int64_t steps,
                    int64_t batch_layout) {
    const int64_t nw = (W + 63) / 64, S = batch_layout ? W + 2 : nw + 2, R = H + 2;
    const int64_t n = B * R * S;
    u64 *T = steps > 1 ? malloc((size_t)n * sizeof(u64)) : NULL;
    if (steps > 1 && !T) return 1;
    const u64 *P = src;
    for (int64_t s = 0; s < steps; s++) {
        u64 *Q = (steps - 1 - s) % 2 == 0 ? dst : T;  /* the last step lands in dst */
        if (batch_layout) step_batch(P, Q, n, S); else step_wide(P, Q, n, S);
        for (int64_t b = 0; b < B; b++) {
            u64 *q = Q + b * R * S;
            for (int64_t i = 1; i <= H; i++) {
                u64 *row = q + i * S;
                if (batch_layout) { row[0] = row[W]; row[W + 1] = row[1]; }
                else halo_row(row, W, nw);
            }
            vhalo(q, H, S);
        }
        P = Q;
    }
    free(T);
    return 0;
}

/* B boards x [B][H][W] (bytes) -> y: the state after `steps` steps, or with `frames` every
   state, y [steps][B][H][W]; boards go `chunk` at a time through the scratch P, Q (1: no
   memory for them) */
int gzoo_run(const uint8_t *x, uint8_t *y, int64_t B, int64_t H, int64_t W, int64_t steps,
             int64_t frames, int64_t chunk) {
    const int narrow = W <= 64;
    const int64_t nw = (W + 63) / 64, S = narrow ? 1 : nw + 2, R = H + 2, cells = H * W;
    u64 *P0 = malloc((size_t)(2 * chunk * R * S) * sizeof(u64)), *Q0 = P0 + chunk * R * S;
    if (!P0) return 1;
    for (int64_t b0 = 0; b0 < B; b0 += chunk) {
        const int64_t nb = B - b0 < chunk ? B - b0 : chunk, n = nb * R * S;
        u64 *P = P0, *Q = Q0;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *xb = x + (b0 + b) * cells;
            u64 *p = P + b * R * S;
            for (int64_t i = 0; i < H; i++) {
                u64 *row = p + (1 + i) * S;
                if (narrow) {
                    row[0] = W == 64 ? pack64(xb + i * W) : pack_tail(xb + i * W, W);
                    continue;
                }
                for (int64_t k = 0; k < W / 64; k++) row[1 + k] = pack64(xb + i * W + 64 * k);
                if (W % 64) row[nw] = pack_tail(xb + i * W + 64 * (nw - 1), W % 64);
                halo_row(row, W, nw);
            }
            vhalo(p, H, S);
        }
        for (int64_t s = 0; s < steps; s++) {
            const int last = s == steps - 1;
            if (W == 64) step_narrow(P, Q, n, 64);  /* (a constant width: rotations) */
            else if (narrow) step_narrow(P, Q, n, W);
            else step_wide(P, Q, n, S);
            for (int64_t b = 0; b < nb; b++) {
                u64 *q = Q + b * R * S;
                uint8_t *yb = y + ((frames ? s * B : 0) + b0 + b) * cells;
                for (int64_t i = 1; i <= H; i++) {
                    u64 *row = q + i * S;
                    if (!narrow && !last) halo_row(row, W, nw);
                    if (!last && !frames) continue;
                    uint8_t *out = yb + (i - 1) * W;
                    if (narrow) {
                        if (W == 64) unpack64(row[0], out); else unpack_tail(row[0], out, W);
                        continue;
                    }
                    for (int64_t k = 0; k < W / 64; k++) unpack64(row[1 + k], out + 64 * k);
                    if (W % 64) unpack_tail(row[nw], out + 64 * (nw - 1), W % 64);
                }
                if (!last) vhalo(q, H, S);
            }
            u64 *t = P; P = Q; Q = t;
        }
    }
    free(P0);
    return 0;
}
"""


def c_source(program: bs._Program) -> str:
    """C source of ``gzoo_run`` for ``program``: the prelude (pack, unpack, halo), the rule's
    cell function on the nine neighbourhood words (west/centre/east of the rows above, at and
    below the cell), and the narrow and wide steps around it (module docstring)."""
    lines = ["/* inlined into the loops whatever its size: a call per word would not vectorise */",
             "static inline __attribute__((always_inline))",
             "u64 cell(u64 wu, u64 cu, u64 eu, u64 wm, u64 cm, u64 em, u64 wd, u64 cd, u64 ed) {"]
    emit = lines.append
    if program.inputs == "moore":  # T = n + x by full adders (bitslice docstring)
        for r in "umd":
            emit(f"    u64 h0{r} = w{r} ^ c{r} ^ e{r},"  # w + c + e = h0 + 2 h1
                 f" h1{r} = (w{r} & c{r}) | ((w{r} ^ c{r}) & e{r});")
        emit("    u64 t0 = h0u ^ h0m ^ h0d, k1 = (h0u & h0m) | ((h0u ^ h0m) & h0d);  /* Σ h0 */")
        emit("    u64 a = h1u ^ h1m ^ h1d, v = (h1u & h1m) | ((h1u ^ h1m) & h1d);  /* Σ h1 */")
        emit("    u64 t1 = a ^ k1, q = a & k1, t2 = v ^ q, t3 = v & q;"
             "  /* T = t0 + 2(k1 + a) + 4v */")
        inputs = ["cm", "t0", "t1", "t2", "t3"]
    elif program.inputs == "von_neumann":
        emit("    u64 s1 = cu ^ cd ^ cm, k1 = (cu & cd) | ((cu ^ cd) & cm);  /* up + down + x */")
        emit("    u64 t0 = wm ^ em ^ s1, k2 = (wm & em) | ((wm ^ em) & s1);  /* w + e + s1 */")
        emit("    u64 t1 = k1 ^ k2, t2 = k1 & k2;  /* T = t0 + 2(k1 + k2) */")
        inputs = ["cm", "t0", "t1", "t2"]
    else:  # input 3r + c: row r (up, middle, down), column c (west, centre, east)
        inputs = [f"{p}{r}" for r in "umd" for p in "wce"]
    emit("    (void)wu; (void)cu; (void)eu; (void)wd; (void)cd; (void)ed; (void)wm; (void)em;")
    circuit = program.circuit
    name = {0: "(u64)0", 1: "~(u64)0"}
    name.update({2 + k: expr for k, expr in enumerate(inputs)})
    base = 2 + circuit.n_inputs
    for g, (op, a, b) in enumerate(circuit.gates):
        name[base + g] = f"g{g}"
        emit(f"    u64 g{g} = " + _OPS[op].format(a=name[a], b=name[b]) + ";")
    emit(f"    return {name[circuit.output]};")
    emit("}")
    return _PRELUDE + "\n".join(lines) + "\n" + _STEPS
