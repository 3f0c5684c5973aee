"""A small torus on which every 3×3 neighbourhood occurs: all 512 patterns on one board.

A network whose answer at a cell is a function of that cell's 3×3 window on the torus (what
:func:`gzoo.certify.read_structure` establishes for the GCNNs) answers on this 24×32 board all
512 neighbourhoods in one forward pass: the board holds each pattern at least once (at most 5
times), in 768 cells instead of the 512 · 9 = 4608 cells of 512 separate 3×3 tori. It is the
training data of :mod:`gzoo.population`.

It was found by simulated annealing (:func:`search_covering_torus`): start from a random board,
flip one cell at a time, accept a flip that does not increase the number of missing patterns
(else with probability ``exp(−Δ/T)``, ``T`` falling linearly from 0.6). With
``search_covering_torus(24, 32, seed=0)`` it finished after 1 749 790 flips (about 4 minutes
in CPython); 24×24 (576 cells) still missed 28 patterns after 3 million. The board is stored
below, row ``r`` as a 32-bit integer whose bit ``c`` is cell ``(r, c)``.
"""

from __future__ import annotations

import math
import random
from functools import cache

import torch
from torch import Tensor

from .stencil import N_PATTERNS, pattern_index

__all__ = ["COVERING_SHAPE", "covering_torus", "pattern_multiplicity", "search_covering_torus"]

COVERING_SHAPE = (24, 32)
_ROWS = (
    0xfc3b46d7, 0xba5c8f96, 0xe01716c0, 0x2d6316c5, 0xa21349c3, 0x49ab7318, 0xb9c9426d,
    0x521f0157, 0xee554fd3, 0xe5ecaf30, 0x2f301da4, 0x5ef9b10e, 0xdf1231f5, 0x66561bfc,
    0xd05d203c, 0x6641c7d2, 0x8ab5ed08, 0x7772064e, 0x93aac1cc, 0x1c0c60f4, 0xf6e57e68,
    0xead84093, 0x9b93f01f, 0xf92996d1,
)


@cache
def _board() -> Tensor:
    w = COVERING_SHAPE[1]
    return torch.tensor([[(row >> c) & 1 for c in range(w)] for row in _ROWS],
                        dtype=torch.uint8)


def covering_torus(device: torch.device | str | None = None) -> Tensor:
    """The 24×32 ``uint8`` board (module docstring) on which all 512 patterns occur."""
    return _board().to(device).clone()


def pattern_multiplicity(board: Tensor) -> Tensor:
    """How often each of the 512 patterns occurs on a ``[H, W]`` torus: int64 ``[512]``."""
    return torch.bincount(pattern_index(board).flatten(), minlength=N_PATTERNS)


def search_covering_torus(h: int, w: int, *, seed: int = 0, flips: int = 3_000_000
                          ) -> Tensor | None:
    """Simulated annealing for an ``h×w`` torus holding every 3×3 pattern (module docstring);
    ``None`` if ``flips`` cell flips were not enough. Pure Python: minutes, not for hot paths."""
    rng = random.Random(seed)
    cells = [[rng.randrange(2) for _ in range(w)] for _ in range(h)]

    def window(i: int, j: int) -> int:  # pattern index of the window centred on (i, j)
        return sum(cells[(i + b // 3 - 1) % h][(j + b % 3 - 1) % w] << b for b in range(9))

    count = [0] * N_PATTERNS
    for i in range(h):
        for j in range(w):
            count[window(i, j)] += 1
    missing = count.count(0)
    for t in range(flips):
        if missing == 0:
            return torch.tensor(cells, dtype=torch.uint8)
        temperature = 0.6 * (1 - t / flips) + 1e-3
        i, j = rng.randrange(h), rng.randrange(w)
        around = [((i + di) % h, (j + dj) % w) for di in (-1, 0, 1) for dj in (-1, 0, 1)]
        old = [window(a, b) for a, b in around]
        cells[i][j] ^= 1
        new = [window(a, b) for a, b in around]
        delta = 0  # change in the number of missing patterns
        for v in old:
            count[v] -= 1
            delta += count[v] == 0
        for v in new:
            delta -= count[v] == 0
            count[v] += 1
        if delta <= 0 or rng.random() < math.exp(-delta / temperature):
            missing += delta
        else:  # undo
            cells[i][j] ^= 1
            for v in new:
                count[v] -= 1
            for v in old:
                count[v] += 1
    return None
