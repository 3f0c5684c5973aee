"""Outer-totalistic Life-like rules in Golly's ``B/S`` notation.

A rule maps a cell's state ``s ∈ {0, 1}`` and its live-neighbour count ``n`` to the next state:

    s' = [n ∈ B]  if s = 0        (birth)
    s' = [n ∈ S]  if s = 1        (survival)

with ``n`` counted over the Moore neighbourhood (8 cells, ``n ∈ 0..8``) or, with Golly's ``V``
suffix, over the von Neumann neighbourhood (4 orthogonal cells, ``n ∈ 0..4``).

Accepted spellings (case-insensitive, the whole string must match): ``B36/S23``, ``B2/S``, Golly's
short form ``B2`` (empty survival), ``b3s23`` (no separator), ``B3_S23`` (``_`` as separator) and a
trailing ``V``: ``B13/S012V``. Everything else raises :class:`RuleError`, a :class:`ValueError`
whose message quotes the input and says what is wrong (digit out of range, repeated digit, missing
``B`` part, Hensel letters, Generations ``/C3`` or bounded-grid ``:T64,64`` suffixes, ...).

``B0`` rules are valid. gzoo simulates them *literally* on the torus, so an empty board turns fully
alive in one step and the background strobes (unless ``8 ∈ S``, or ``4 ∈ S`` for ``V``). Golly runs
B0 rules differently: on its unbounded plane it emulates them with an equivalent pair of
alternating rules on the complemented pattern, so the background never strobes there and histories
differ from gzoo's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["NAMES", "RULES", "Neighbourhood", "Rule", "RuleError"]

Neighbourhood = Literal["moore", "von_neumann"]

_MAX_COUNT: dict[str, int] = {"moore": 8, "von_neumann": 4}
_RULE_RE = re.compile(r"B(?P<b>[0-9]*)(?:[/_]?S(?P<s>[0-9]*))?(?P<v>V)?")
_EXAMPLES = "expected B<digits>[/S<digits>][V], e.g. 'B3/S23', 'B2/S', 'b3s23', 'B13/S012V'"


class RuleError(ValueError):
    """A rule string (or rule value) that gzoo cannot read; the message quotes the input."""


def _fail(text: object, what: str) -> RuleError:
    return RuleError(f"invalid rule {text!r}: {what}")


@dataclass(frozen=True)
class Rule:
    """An outer-totalistic two-state rule: birth counts, survival counts and a neighbourhood.

    Construct with :meth:`parse` (``Rule.parse("B36/S23")``) or directly
    (``Rule({3, 6}, {2, 3})``). Rules compare equal by meaning and are hashable; ``str(rule)`` is
    the canonical form with sorted, unique digits (``B36/S23``, ``B2/S``, ``B13/S012V``).
    """

    birth: frozenset[int]
    survival: frozenset[int]
    neighbourhood: Neighbourhood = "moore"

    def __post_init__(self) -> None:
        if self.neighbourhood not in _MAX_COUNT:
            raise RuleError(
                f"invalid rule neighbourhood {self.neighbourhood!r}: "
                "expected 'moore' or 'von_neumann'"
            )
        top = _MAX_COUNT[self.neighbourhood]
        for field in ("birth", "survival"):
            raw = getattr(self, field)
            if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
                raise RuleError(f"invalid rule {field} {raw!r}: expected a set of neighbour counts")
            values = frozenset(raw)
            for n in values:
                if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= top:
                    raise RuleError(
                        f"invalid rule {field} {set(raw)!r}: count {n!r} is not an integer in "
                        f"0..{top} ({self.neighbourhood} neighbourhood)"
                    )
            object.__setattr__(self, field, values)

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, text: str | Rule) -> Rule:
        """Read a rule string strictly (module docstring); a :class:`Rule` is returned as is.

        Raises :class:`RuleError` quoting ``text`` for anything that is not a plain B/S rule.
        """
        if isinstance(text, Rule):
            return text
        if not isinstance(text, str):
            raise _fail(text, f"expected a rule string, got {type(text).__name__}; {_EXAMPLES}")
        if not text.strip():
            raise _fail(text, f"empty rule string; {_EXAMPLES}")
        if text != text.strip():
            raise _fail(text, "surrounding whitespace is not allowed")
        up = text.upper()
        m = _RULE_RE.fullmatch(up)
        if m is None:
            raise _fail(text, _diagnose(text))
        vn = m.group("v") is not None
        neighbourhood: Neighbourhood = "von_neumann" if vn else "moore"
        top = _MAX_COUNT[neighbourhood]
        sets: list[frozenset[int]] = []
        for part, digits in (("B", m.group("b")), ("S", m.group("s") or "")):
            seen: set[int] = set()
            for ch in digits:
                n = int(ch)
                if n > top:
                    hood = "von Neumann neighbourhood (V)" if vn else "Moore neighbourhood"
                    raise _fail(
                        text, f"digit {n} in the {part} part is out of range 0–{top} for the {hood}"
                    )
                if n in seen:
                    raise _fail(text, f"repeated digit {n} in the {part} part")
                seen.add(n)
            sets.append(frozenset(seen))
        return cls(sets[0], sets[1], neighbourhood)

    # --------------------------------------------------------------- properties
    @property
    def max_count(self) -> int:
        """Largest neighbour count: 8 (Moore) or 4 (von Neumann)."""
        return _MAX_COUNT[self.neighbourhood]

    @property
    def slug(self) -> str:
        """Lower-case file-system name, e.g. ``b36s23``, ``b2s``, ``b13s012v``."""
        return str(self).replace("/", "").lower()

    @property
    def name(self) -> str | None:
        """Common name (``"Life"``, ``"HighLife"``, ...) or ``None``."""
        return NAMES.get(str(self))

    def lookup_table(self) -> torch.Tensor:
        """Next state as a ``uint8`` table ``[2, max_count + 1]`` indexed by ``[state, count]``."""
        lut = torch.zeros(2, self.max_count + 1, dtype=torch.uint8)
        lut[0, sorted(self.birth)] = 1
        lut[1, sorted(self.survival)] = 1
        return lut

    @property
    def table_bits(self) -> int:
        """The lookup table packed into an int: bit ``s·(max_count+1) + n`` is the next state."""
        width = self.max_count + 1
        return sum(1 << n for n in self.birth) | sum(1 << (width + n) for n in self.survival)

    def __str__(self) -> str:
        b = "".join(map(str, sorted(self.birth)))
        s = "".join(map(str, sorted(self.survival)))
        return f"B{b}/S{s}{'V' if self.neighbourhood == 'von_neumann' else ''}"

    def __repr__(self) -> str:
        return f"Rule.parse({str(self)!r})"


def _diagnose(text: str) -> str:
    """Explain why ``text`` is not a plain B/S rule."""
    up = text.upper()
    if ":" in up:
        return (
            "bounded-grid suffixes (':T64,64', ':P...', ...) are not supported; gzoo always "
            "simulates on a torus of the board's own shape"
        )
    if re.search(r"[/_]C?[0-9]+V?$", up) and re.match(r"B[0-9]*[/_]?S[0-9]*[/_]", up):
        return "Generations rules ('/C3', '/3') are not supported: gzoo rules have two states"
    if up.startswith("G") or re.search(r"/C[0-9]", up):
        return "Generations rules are not supported: gzoo rules have two states"
    if "-" in up or re.search(r"[0-9][ACEIJKNQRTWYZ]", up):
        return (
            "Hensel (non-totalistic) letters such as '2-a' or '3ai' are not supported; "
            "only outer-totalistic digits are"
        )
    if up.endswith("H"):
        return "the hexagonal neighbourhood (H) is not supported; use Moore or V"
    if not up.startswith("B"):
        if up.startswith("S"):
            return "missing or misplaced B (birth) part: write it first, e.g. 'B3/S23'"
        if re.fullmatch(r"[0-9]*/[0-9]*V?", up):
            return "missing the B part (the old S/B form '23/3' is not accepted); write 'B3/S23'"
        return f"missing the B (birth) part; {_EXAMPLES}"
    m = re.fullmatch(r"B[0-9]*[/_]?S?[0-9]*(.*)", text, re.IGNORECASE)
    if m and m.group(1):
        return f"unexpected trailing text {m.group(1)!r}; {_EXAMPLES}"
    return _EXAMPLES


#: Common names of the project's rules, keyed by canonical string.
NAMES: dict[str, str] = {
    "B3/S23": "Life",
    "B36/S23": "HighLife",
    "B3678/S34678": "Day & Night",
    "B35678/S5678": "Diamoeba",
    "B2/S": "Seeds",
    "B234/S": "Serviettes",
    "B345/S5": "LongLife",
}

#: The nine rules of the project, keyed by canonical string, in the issue's order.
RULES: dict[str, Rule] = {
    str(r): r
    for r in map(
        Rule.parse,
        [
            "B3/S23",
            "B36/S23",
            "B3678/S34678",
            "B35678/S5678",
            "B2/S",
            "B234/S",
            "B345/S5",
            "B13/S012V",
            "B2/S013V",
        ],
    )
}
