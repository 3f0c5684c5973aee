"""Rule families as data: each is a partition of the 512 patterns into classes.

A rule of a family gives the same answer on every pattern of a class, so a family with ``k``
classes holds ``2^k`` rules and a rule of it is ``k`` decisions:

=====================  =========  ==============================================================
family                 classes    a class is
=====================  =========  ==============================================================
``von_neumann``        10         (centre, live orthogonal neighbours 0–4): Golly's ``B/S…V``
``outer_totalistic``   18         (centre, live neighbours 0–8): Golly's ``B/S``
``isotropic``          102        an orbit under the 8 symmetries of the square: Hensel letters
``rotational``         140        an orbit under the 4 rotations (no notation: written as MAP)
``map``                512        one pattern: Golly's ``MAP``
=====================  =========  ==============================================================

Class ids are ``state·(max_count + 1) + count`` for the two outer-totalistic families (the
(state, count) index of :func:`gzoo.ca.class_index`), Hensel order (state, count, letter) for
``isotropic``, and the order of each class's smallest pattern otherwise. A new family is one
more entry: a name, a ``[512]`` class index and the class names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

from .notation import hensel_classes
from .stencil import CENTRE_BIT, N_PATTERNS, NEIGHBOURHOODS, all_patterns, orbit_labels

__all__ = ["FAMILIES", "Family", "get_family", "state_count_name"]


def state_count_name(state: int, count: int) -> str:
    """``"B3"`` for a dead cell with 3 live neighbours, ``"S2"`` for a live one with 2."""
    return f"{'B' if state == 0 else 'S'}{count}"


@dataclass(frozen=True, eq=False)
class Family:
    """A partition of the 512 patterns (see the module docstring).

    Attributes:
        name: the family's id (``"isotropic"``, ...).
        label: a short description for tables and messages.
        classes: ``[512]`` int64, the class id of each pattern.
        class_names: one name per class id (``"B3"``, ``"S2-i"``-style ``"S2a"``, ...).
    """

    name: str
    label: str
    classes: Tensor
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def representatives(self) -> Tensor:
        """The smallest pattern of each class, int64 ``[n_classes]``."""
        out = torch.full((self.n_classes,), N_PATTERNS, dtype=torch.int64)
        return out.scatter_reduce_(0, self.classes, torch.arange(N_PATTERNS), "amin")

    def class_state_count(self) -> tuple[Tensor, Tensor]:
        """Each class's centre state and live-neighbour count (von Neumann counts for the
        ``von_neumann`` family, Moore counts otherwise), int64 ``[n_classes]`` each."""
        hood = NEIGHBOURHOODS["von_neumann" if self.name == "von_neumann" else "moore"]
        reps = all_patterns()[self.representatives()].flatten(1).long()
        return reps[:, CENTRE_BIT], reps[:, list(hood.bits)].sum(1)

    def class_sizes(self) -> Tensor:
        """Patterns per class, int64 ``[n_classes]``."""
        return torch.bincount(self.classes, minlength=self.n_classes)

    def decisions(self, table: int) -> list[int] | None:
        """The per-class answers of a 512-bit table, or ``None`` if it is not in the family."""
        bits = [(table >> n) & 1 for n in range(N_PATTERNS)]
        out: list[int | None] = [None] * self.n_classes
        for n, c in enumerate(self.classes.tolist()):
            if out[c] is None:
                out[c] = bits[n]
            elif out[c] != bits[n]:
                return None
        return [int(v) for v in out]  # type: ignore[arg-type]

    def contains(self, table: int) -> bool:
        return self.decisions(table) is not None

    def table(self, decisions: Sequence[int]) -> int:
        """The 512-bit table whose class ``c`` answers ``decisions[c]`` (0 or 1)."""
        if len(decisions) != self.n_classes:
            raise ValueError(
                f"{self.name} rules need {self.n_classes} decisions, got {len(decisions)}")
        bad = [d for d in decisions if d not in (0, 1)]
        if bad:
            raise ValueError(f"decisions must be 0 or 1, got {bad[0]!r}")
        table = 0
        for n, c in enumerate(self.classes.tolist()):
            table |= int(decisions[c]) << n
        return table


def _outer_totalistic(name: str, hood: str, label: str) -> Family:
    spec = NEIGHBOURHOODS[hood]
    pats = all_patterns().flatten(1).long()
    count = pats[:, list(spec.bits)].sum(1)
    state = pats[:, CENTRE_BIT]
    names = tuple(state_count_name(s, n) for s in (0, 1) for n in range(spec.max_count + 1))
    return Family(name, label, state * (spec.max_count + 1) + count, names)


def _isotropic() -> Family:
    classes = torch.empty(N_PATTERNS, dtype=torch.int64)
    names = []
    for i, ((state, count, letter), pats) in enumerate(sorted(hensel_classes().items())):
        classes[sorted(pats)] = i
        names.append(state_count_name(state, count) + letter)
    return Family("isotropic", "isotropic (Hensel)", classes, tuple(names))


def _by_orbits(name: str, label: str, labels: Tensor) -> Family:
    reps, classes = torch.unique(labels, return_inverse=True)  # sorted by smallest pattern
    pats = all_patterns().flatten(1).long()
    count = pats.sum(1) - pats[:, CENTRE_BIT]
    names = tuple(f"{state_count_name(int(pats[r, CENTRE_BIT]), int(count[r]))}:p{int(r)}"
                  for r in reps)
    return Family(name, label, classes, names)


@cache
def _families() -> dict[str, Family]:
    fams = [
        _outer_totalistic("von_neumann", "von_neumann", "outer-totalistic, von Neumann (B/S…V)"),
        _outer_totalistic("outer_totalistic", "moore", "outer-totalistic, Moore (B/S)"),
        _isotropic(),
        _by_orbits("rotational", "rotations only (C4)", orbit_labels("p4")),
        _by_orbits("map", "any 3×3 rule (MAP)", torch.arange(N_PATTERNS)),
    ]
    return {f.name: f for f in fams}


def get_family(name: str | Family) -> Family:
    """A family by name: ``"von_neumann"``, ``"outer_totalistic"``, ``"isotropic"``,
    ``"rotational"`` or ``"map"``."""
    if isinstance(name, Family):
        return name
    fams = _families()
    if name not in fams:
        raise ValueError(f"unknown rule family {name!r}; expected one of {list(fams)}")
    return fams[name]


#: The family names, fewest classes first (the order model selection walks).
FAMILIES: tuple[str, ...] = ("von_neumann", "outer_totalistic", "isotropic", "rotational", "map")
