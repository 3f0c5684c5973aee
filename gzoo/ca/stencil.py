"""The 3×3 stencil every rule here reads: pattern numbering, neighbourhoods, symmetries.

**Pattern numbering** (one home for it). Cell ``(r, c)`` of a 3×3 block (``r, c ∈ 0..2``, row
``r`` is the offset ``r − 1`` downwards, column ``c`` the offset ``c − 1`` rightwards, the
centre is ``(1, 1)``) is bit ``3r + c`` of the pattern index ``n ∈ 0..511``::

    bit:  0 1 2        NW N  NE
          3 4 5   =    W  C  E
          6 7 8        SW S  SE

A rule is a 512-entry table: bit ``n`` of ``Rule.table`` is the next state of the centre of
pattern ``n`` (Golly's MAP strings number the cells the other way round, NW = bit 8; see
:mod:`gzoo.ca.notation`).

**Neighbourhoods** (:data:`NEIGHBOURHOODS`): Moore (the 8 cells around the centre) and von
Neumann (the 4 orthogonal ones, Golly's ``V`` suffix), as offsets; ``max_count`` is their size.

**Symmetries.** The 8 symmetries of the square act on a pattern as they act on any Z² map (the
element order and actions of :data:`gzoo.groups.D4`, e2cnn's conventions); the 45° square-ring
rotation of :data:`gzoo.groups.C8` shifts the 8 outer cells one place. :func:`pattern_images`
gives, for every element, the index of the transformed pattern; a rule is invariant under an
element exactly when its table is constant along those images.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

from gzoo.groups import Group, get_group

__all__ = [
    "CENTRE_BIT",
    "NEIGHBOURHOODS",
    "N_PATTERNS",
    "NeighbourhoodSpec",
    "all_patterns",
    "orbit_labels",
    "pattern_images",
    "pattern_index",
]

N_PATTERNS = 512
CENTRE_BIT = 4

#: compass names of the cells, by bit (``3r + c``)
CELL_NAMES = ("NW", "N", "NE", "W", "C", "E", "SW", "S", "SE")


@dataclass(frozen=True)
class NeighbourhoodSpec:
    """A neighbourhood inside the 3×3 block: its cells as ``(dr, dc)`` offsets.

    ``suffix`` is Golly's rule-string suffix (``""`` for Moore, ``"V"`` for von Neumann).
    """

    name: str
    offsets: tuple[tuple[int, int], ...]
    suffix: str
    label: str

    @property
    def max_count(self) -> int:
        """Largest live-neighbour count: the number of cells."""
        return len(self.offsets)

    @property
    def bits(self) -> tuple[int, ...]:
        """The pattern bits (``3r + c``) of the cells."""
        return tuple(3 * (dr + 1) + dc + 1 for dr, dc in self.offsets)


#: The neighbourhoods by name; the one home of their names, cells and maximum counts.
NEIGHBOURHOODS: dict[str, NeighbourhoodSpec] = {
    "moore": NeighbourhoodSpec(
        "moore",
        tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)),
        "", "Moore"),
    "von_neumann": NeighbourhoodSpec(
        "von_neumann", ((-1, 0), (0, -1), (0, 1), (1, 0)), "V", "von Neumann"),
}


def all_patterns(device: torch.device | str | None = None) -> Tensor:
    """All 512 patterns as ``uint8 [512, 3, 3]``: cell ``(r, c)`` of pattern n is bit 3r + c."""
    n = torch.arange(N_PATTERNS, device=device)
    bits = (n[:, None] >> torch.arange(9, device=device)) & 1
    return bits.to(torch.uint8).view(N_PATTERNS, 3, 3)


def pattern_index(x: Tensor) -> Tensor:
    """The pattern index of every cell's 3×3 block on the torus, int16, same shape as ``x``.

    ``x`` is a ``uint8`` 0/1 board ``[..., H, W]``: ``index = Σ_{r,c} x[i+r−1, j+c−1] · 2^(3r+c)``
    (nine rolls; 9 bits fit an int16, which keeps the working set small).
    """
    out = torch.zeros(x.shape, dtype=torch.int16, device=x.device)
    for bit in range(9):
        dr, dc = bit // 3 - 1, bit % 3 - 1
        # cell (i + dr, j + dc) lands on (i, j) when the board is rolled by (−dr, −dc)
        out.bitwise_or_(x.roll((-dr, -dc), (-2, -1)).to(torch.int16).bitwise_left_shift_(bit))
    return out


@cache
def _images(name: str) -> Tensor:
    group = get_group(name)
    pats = all_patterns()
    weights = 1 << torch.arange(9)
    return torch.stack([(group.act_z2(pats, g).flatten(1).long() * weights).sum(1)
                        for g in range(group.order)])


def pattern_images(group: Group | str) -> Tensor:
    """``[|G|, 512]`` int64: entry ``[g, n]`` is the index of ``L_g`` applied to pattern n.

    ``group`` is ``"p4"``, ``"p4m"`` (the symmetries of the square) or ``"p8"`` (45° ring
    rotations of the stencil), or a :class:`gzoo.groups.Group`.
    """
    return _images(get_group(group).name).clone()


def orbit_labels(group: Group | str, elements: tuple[int, ...] | None = None) -> Tensor:
    """``[512]`` int64: the smallest pattern index in each pattern's orbit under ``elements``
    of ``group`` (all of them by default) — a label that is equal exactly within an orbit when
    the elements form a subgroup."""
    images = _images(get_group(group).name)
    if elements is not None:
        images = images[list(elements)]
    return images.min(0).values
