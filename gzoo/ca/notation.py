"""Golly's rule notations as data: Hensel's isotropic letters and the ``MAP`` base64 format.

**Hensel notation.** An isotropic rule is invariant under the 8 symmetries of the square, so it
depends on the centre and on the *orbit* of the 8 outer cells under those symmetries. For a
live-neighbour count ``n`` the orbits are named by letters: ``1c`` (a corner) and ``1e`` (an
edge); ``2c 2e 2k 2a 2i 2n``; ten letters for 3 and 5, thirteen for 4; counts 0 and 8 have one
orbit each and no letter. Count ``8 − n`` uses the same letters for the complementary
neighbourhoods. :data:`HENSEL` holds one representative per letter (the neighbours alive, as
compass names); the other members of each orbit follow by symmetry. 2 × 51 = 102 classes.

A rule string lists, after each digit, the letters that are on (``B2ae``), or a ``-`` and the
letters that are off (``S2-i``); a bare digit means every letter. Golly's canonical form, used
by :func:`hensel_string`: letters in alphabetical order, the negative form when more than half
the letters (rounded up) are on, and a bare digit when all are.

**MAP.** ``MAP`` and 86 base64 characters hold all 512 entries (von Neumann rules: 6
characters, 32 entries). The bit stream is the characters' 6-bit values, most significant bit
first; stream bit ``i`` is the next state for Golly's neighbourhood index ``i``, which numbers
the cells NW = bit 8, N = 7, NE = 6, W = 5, C = 4, E = 3, SW = 2, S = 1, SE = 0 — the reverse
of :mod:`gzoo.ca.stencil`'s order. 512 = 85·6 + 2, so the last character carries two bits and
its four low bits are zero; Golly's optional ``==`` padding is accepted.
"""

from __future__ import annotations

import math
from functools import cache

from .stencil import CELL_NAMES, N_PATTERNS

__all__ = [
    "HENSEL",
    "hensel_classes",
    "hensel_string",
    "map_decode",
    "map_encode",
]

#: One representative per Hensel letter, by count: the live neighbours as compass names (up to
#: symmetry; counts 5–7 are the complements of 3–1 with the same letter).
HENSEL: dict[int, dict[str, tuple[str, ...]]] = {
    0: {"": ()},
    1: {"c": ("SE",), "e": ("S",)},
    2: {
        "c": ("SE", "SW"), "e": ("S", "E"), "k": ("SE", "W"),
        "a": ("SE", "S"), "i": ("E", "W"), "n": ("SW", "NE"),
    },
    3: {
        "c": ("SE", "SW", "NE"), "e": ("S", "E", "W"), "k": ("S", "W", "NE"),
        "a": ("SE", "S", "E"), "i": ("SE", "S", "SW"), "n": ("SE", "SW", "E"),
        "y": ("SE", "W", "NE"), "q": ("S", "SW", "NE"), "j": ("S", "SW", "E"),
        "r": ("SE", "E", "W"),
    },
    4: {
        "c": ("SE", "SW", "NE", "NW"), "e": ("S", "E", "W", "N"), "k": ("SE", "S", "W", "NE"),
        "a": ("SE", "S", "SW", "E"), "i": ("SE", "SW", "E", "W"), "n": ("SE", "S", "SW", "NE"),
        "y": ("SE", "SW", "W", "NE"), "q": ("S", "SW", "W", "NE"), "j": ("S", "E", "W", "NE"),
        "r": ("SE", "S", "E", "W"), "t": ("SE", "E", "W", "NE"), "w": ("S", "SW", "E", "NE"),
        "z": ("SW", "E", "W", "NE"),
    },
}
_OUTER = tuple(name for name in CELL_NAMES if name != "C")
for _n in (5, 6, 7):
    HENSEL[_n] = {k: tuple(c for c in _OUTER if c not in v) for k, v in HENSEL[8 - _n].items()}
HENSEL[8] = {"": _OUTER}

_BIT = {name: bit for bit, name in enumerate(CELL_NAMES)}


def _orbit(pattern: int) -> set[int]:
    from .stencil import _images  # the symmetry images, computed once

    return set(_images("p4m")[:, pattern].tolist())


def hensel_classes() -> dict[tuple[int, int, str], frozenset[int]]:
    """``{(state, count, letter): pattern indices}``: the 102 isotropic classes (letter ``""``
    for counts 0 and 8), each the orbit of :data:`HENSEL`'s representative."""
    return dict(_hensel_classes())


@cache
def _hensel_classes() -> dict[tuple[int, int, str], frozenset[int]]:
    out: dict[tuple[int, int, str], frozenset[int]] = {}
    for state in (0, 1):
        for count, letters in HENSEL.items():
            for letter, cells in letters.items():
                rep = sum(1 << _BIT[c] for c in cells) | (state << _BIT["C"])
                out[state, count, letter] = frozenset(_orbit(rep))
    return out


def hensel_part(on: dict[int, set[str]]) -> str:
    """The canonical text of one half (birth or survival) from the letters that are on per
    count (``{2: {"a", "e"}, 3: {""}}``): see the module docstring."""
    text = ""
    for count in range(9):
        letters = set(on.get(count, set()))
        all_letters = set(HENSEL[count])
        if not letters:
            continue
        if letters == all_letters:
            text += str(count)
            continue
        m = len(all_letters)
        if len(letters) > math.ceil(m / 2):  # Golly: the shorter, negative form
            text += f"{count}-" + "".join(sorted(all_letters - letters))
        else:
            text += str(count) + "".join(sorted(letters))
    return text


def hensel_string(table: int) -> str:
    """Golly's canonical Hensel string (``B2-a/S12``) of an isotropic 512-bit table."""
    parts = []
    for state in (0, 1):
        on: dict[int, set[str]] = {}
        for (s, count, letter), pats in _hensel_classes().items():
            if s == state and (table >> min(pats)) & 1:
                on.setdefault(count, set()).add(letter)
        parts.append(hensel_part(on))
    return f"B{parts[0]}/S{parts[1]}"


# ------------------------------------------------------------------------------------ MAP
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_REVERSE9 = [int(f"{n:09b}"[::-1], 2) for n in range(N_PATTERNS)]  # ours ↔ Golly's index


def _vn_golly_index(n: int) -> int:
    """Golly's 5-bit von Neumann index of our pattern ``n``: N, W, C, E, S from high to low."""
    cells = (_BIT["N"], _BIT["W"], _BIT["C"], _BIT["E"], _BIT["S"])
    return sum(((n >> b) & 1) << (4 - i) for i, b in enumerate(cells))


def _chars_for(n_bits: int) -> int:
    return -(-n_bits // 6)


def map_encode(table: int) -> str:
    """The ``MAP`` string (86 base64 characters, no padding) of a 512-bit table."""
    bits = [(table >> _REVERSE9[i]) & 1 for i in range(N_PATTERNS)]
    bits += [0] * (6 * _chars_for(N_PATTERNS) - N_PATTERNS)
    chars = [_B64[int("".join(map(str, bits[k:k + 6])), 2)] for k in range(0, len(bits), 6)]
    return "MAP" + "".join(chars)


def map_decode(body: str) -> int:
    """A 512-bit table from the base64 part of a ``MAP`` rule (86 characters for Moore, 6 for
    von Neumann, optionally followed by ``==``). Raises ``ValueError`` saying what is wrong."""
    text = body[:-2] if body.endswith("==") else body
    sizes = {_chars_for(512): 512, _chars_for(32): 32}
    if len(text) not in sizes:
        hint = " (22 characters: the hexagonal neighbourhood, not supported)" if len(
            text) == 22 else ""
        raise ValueError(
            f"a MAP rule needs 86 base64 characters (Moore) or 6 (von Neumann), got "
            f"{len(text)}{hint}")
    bad = [c for c in text if c not in _B64]
    if bad:
        raise ValueError(f"character {bad[0]!r} is not base64 (A–Z a–z 0–9 + /)")
    n_bits = sizes[len(text)]
    value = 0
    stream = "".join(f"{_B64.index(c):06b}" for c in text)
    if "1" in stream[n_bits:]:
        raise ValueError(
            f"the last character {text[-1]!r} has bits set beyond the {n_bits} entries "
            "(not a canonical MAP string)")
    bits = [int(b) for b in stream[:n_bits]]
    if n_bits == 512:
        for i, b in enumerate(bits):
            value |= b << _REVERSE9[i]
        return value
    for n in range(N_PATTERNS):  # the diagonal cells are ignored
        value |= bits[_vn_golly_index(n)] << n
    return value
