"""Two-state rules on the 3×3 neighbourhood, in Golly's notations.

Every rule is a 512-entry table: bit ``n`` of :attr:`Rule.table` is the next state of the centre
of the 3×3 pattern ``n`` (numbering in :mod:`gzoo.ca.stencil`). Two rules are equal exactly when
their tables are. The notations are ways of writing tables of a family
(:mod:`gzoo.ca.families`):

* **outer-totalistic** ``B/S`` — ``s' = [n ∈ B]`` for a dead cell, ``[n ∈ S]`` for a live one,
  ``n`` the live-neighbour count over the Moore neighbourhood (8 cells, ``n ∈ 0..8``) or, with
  Golly's ``V`` suffix, the von Neumann one (4 cells, ``n ∈ 0..4``): ``B36/S23``, ``B2/S``,
  ``B2`` (empty survival), ``b3s23``, ``B3_S23``, ``B13/S012V``;
* **isotropic** (Hensel) — letters after a count pick orbits of neighbourhoods under the 8
  symmetries of the square: ``B3/S2-i34q`` (tlife), ``B2-a/S12`` (Just Friends); see
  :mod:`gzoo.ca.notation`;
* **MAP** — ``MAP`` and 86 base64 characters (6 for von Neumann): any table.

Parsing is case-insensitive and strict: the whole string must match, and anything else raises
:class:`RuleError`, a :class:`ValueError` whose message quotes the input and says what is wrong
(digit out of range, repeated digit or letter, a letter that does not exist for its count,
Generations ``/C3`` or bounded-grid ``:T64,64`` suffixes, the hexagonal ``H`` neighbourhood, ...).
``str(rule)`` is the canonical string of the first notation that holds it — ``B/S`` (Moore, then
``V``), else Golly's canonical Hensel form, else ``MAP`` — and parses back to the same rule.

``B0`` rules are valid. gzoo simulates them *literally* on the torus, so an empty board turns
fully alive in one step and the background strobes (unless the all-alive neighbourhood
survives). Golly runs B0 rules differently: on its unbounded plane it emulates them with an
equivalent pair of alternating rules on the complemented pattern, so the background never
strobes there and histories differ from gzoo's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import torch

from .families import FAMILIES, Family, get_family
from .notation import HENSEL, hensel_classes, hensel_string, map_decode, map_encode
from .stencil import N_PATTERNS, NEIGHBOURHOODS, pattern_images

__all__ = ["NAMES", "RULES", "Neighbourhood", "Rule", "RuleError", "RuleSymmetry"]

Neighbourhood = Literal["moore", "von_neumann"]

_EXAMPLES = ("expected B<counts>[/S<counts>][V] with optional Hensel letters, or MAP<base64>, "
             "e.g. 'B3/S23', 'B2/S', 'b3s23', 'B13/S012V', 'B2-a/S12'")
_FULL = (1 << N_PATTERNS) - 1
_LETTERS = "cekainyqjrtwz"
_RULE_RE = re.compile(  # the shape only; _parse_part reads each half strictly
    rf"b(?P<b>[0-9{_LETTERS}\-]*?)(?:[/_]?s(?P<s>[0-9{_LETTERS}\-]*?))?(?P<v>v)?", re.IGNORECASE)


class RuleError(ValueError):
    """A rule string (or rule value) that gzoo cannot read; the message quotes the input."""


def _short(value: object) -> str:
    """``repr(value)``, cut short for long inputs (a pasted file is named, not echoed whole)."""
    quoted = repr(value)
    return quoted if len(quoted) <= 120 else f"{quoted[:80]}… ({len(quoted)} characters)"


def _fail(text: object, what: str) -> RuleError:
    return RuleError(f"invalid rule {_short(text)}: {what}")


@dataclass(frozen=True)
class RuleSymmetry:
    """The symmetries of a rule's table.

    Attributes:
        elements: the symmetries of the square that leave the table unchanged, as element
            indices of :data:`gzoo.groups.D4` (``0`` = identity, ``1–3`` = quarter turns,
            ``4–7`` = the mirrors ``r^k·f``) — always a subgroup.
        name: that subgroup: ``"D4"``, ``"C4"``, ``"D2 (| —)"``, ``"D2 (/ \\)"``, ``"C2"``,
            ``"D1 (|)"``, ``"D1 (—)"``, ``"D1 (/)"``, ``"D1 (\\)"`` or ``"1"`` (none).
        ring: whether the 45° square-ring rotation of the stencil leaves it unchanged.
    """

    elements: tuple[int, ...]
    name: str
    ring: bool

    @property
    def groups(self) -> tuple[str, ...]:
        """The plane groups whose invariant networks can represent the rule exactly."""
        ok = {"p4": set(range(4)) <= set(self.elements),
              "p4m": len(self.elements) == 8, "p8": self.ring}
        return tuple(g for g in ("p4", "p4m", "p8") if ok[g])


# the 10 subgroups of the square's symmetries, by their elements (gzoo.groups.D4 order: f is
# the column mirror "|", r²f the row mirror "—", r·f mirrors in "\" and r³·f in "/")
SYMMETRY_SUBGROUPS = {
    (0,): "1", (0, 2): "C2", (0, 1, 2, 3): "C4", (0, 4): "D1 (|)", (0, 6): "D1 (—)",
    (0, 5): "D1 (\\)", (0, 7): "D1 (/)", (0, 2, 4, 6): "D2 (| —)", (0, 2, 5, 7): "D2 (/ \\)",
    tuple(range(8)): "D4",
}


class Rule:
    """A two-state rule on the 3×3 neighbourhood: a 512-entry table (module docstring).

    Construct with :meth:`parse` (``Rule.parse("B36/S23")``, ``Rule.parse("B2-a/S12")``), from
    birth and survival counts (``Rule({3, 6}, {2, 3})``, ``Rule({1, 3}, {0, 1, 2},
    "von_neumann")``) or from a table (:meth:`from_table`). Rules are immutable, hashable and
    equal exactly when their tables are.
    """

    __slots__ = ("table",)
    table: int

    def __init__(
        self,
        birth: Iterable[int],
        survival: Iterable[int],
        neighbourhood: Neighbourhood = "moore",
    ) -> None:
        if neighbourhood not in NEIGHBOURHOODS:
            raise RuleError(
                f"invalid rule neighbourhood {neighbourhood!r}: "
                f"expected one of {sorted(NEIGHBOURHOODS)}")
        top = NEIGHBOURHOODS[neighbourhood].max_count
        sets = []
        for field, raw in (("birth", birth), ("survival", survival)):
            if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
                raise RuleError(f"invalid rule {field} {raw!r}: expected a set of neighbour counts")
            values = frozenset(raw)
            for n in values:
                if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= top:
                    raise RuleError(
                        f"invalid rule {field} {set(raw)!r}: count {n!r} is not an integer in "
                        f"0..{top} ({neighbourhood} neighbourhood)")
            sets.append(values)
        family = get_family("outer_totalistic" if neighbourhood == "moore" else "von_neumann")
        width = top + 1
        decisions = [int(n in sets[s]) for s in (0, 1) for n in range(width)]
        object.__setattr__(self, "table", family.table(decisions))

    @classmethod
    def from_table(cls, table: int | torch.Tensor | Iterable[int]) -> Rule:
        """The rule with this table: an int ``0 ≤ t < 2^512`` (bit n = next state of pattern
        n), or 512 values 0/1 (a sequence or a tensor), entry n for pattern n."""
        if isinstance(table, bool):
            raise RuleError(f"invalid rule table {table!r}: expected an int or 512 values 0/1")
        if isinstance(table, int):
            if not 0 <= table <= _FULL:
                raise RuleError(f"invalid rule table {table!r}: an int table must be in "
                                "0..2^512 − 1")
            value = table
        else:
            if isinstance(table, torch.Tensor):
                if table.shape != (N_PATTERNS,) or table.is_floating_point() or \
                        table.is_complex():
                    raise RuleError(f"invalid rule table: expected a bool or integer tensor of "
                                    f"shape (512,), got {table.dtype} {tuple(table.shape)}")
                entries = table.tolist()
            elif isinstance(table, str | bytes) or not isinstance(table, Iterable):
                raise RuleError(f"invalid rule table {table!r}: expected an int or 512 values 0/1")
            else:
                entries = list(table)
            if len(entries) != N_PATTERNS:
                raise RuleError(f"invalid rule table: expected 512 entries, got {len(entries)}")
            bad = [v for v in entries if type(v) not in (int, bool) or v not in (0, 1)]
            if bad:
                raise RuleError(f"invalid rule table: entries must be 0 or 1, got {bad[0]!r}")
            value = sum(int(v) << n for n, v in enumerate(entries))
        rule = object.__new__(cls)
        object.__setattr__(rule, "table", value)
        return rule

    # ------------------------------------------------------------------ immutability
    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Rule is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Rule is immutable (cannot delete {name!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Rule.from_table, (self.table,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and other.table == self.table

    def __hash__(self) -> int:
        return hash(("Rule", self.table))

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, text: str | Rule) -> Rule:
        """Read a rule string strictly (module docstring); a :class:`Rule` is returned as is."""
        if isinstance(text, Rule):
            return text
        if not isinstance(text, str):
            raise _fail(text, f"expected a rule string, got {type(text).__name__}; {_EXAMPLES}")
        if not text.strip():
            raise _fail(text, f"empty rule string; {_EXAMPLES}")
        if text != text.strip():
            raise _fail(text, "surrounding whitespace is not allowed")
        if text[:3].upper() == "MAP":
            try:
                return cls.from_table(map_decode(text[3:]))
            except ValueError as e:
                raise _fail(text, str(e)) from None
        m = _RULE_RE.fullmatch(text)
        if m is None:
            raise _fail(text, _diagnose(text))
        hood: Neighbourhood = "von_neumann" if m.group("v") else "moore"
        parts = [_parse_part(text, "B", m.group("b"), hood),
                 _parse_part(text, "S", m.group("s") or "", hood)]
        if all(letters is None for part in parts for letters in part.values()):
            return cls({n for n in parts[0]}, {n for n in parts[1]}, hood)
        classes = hensel_classes()
        table = 0
        for state, part in enumerate(parts):
            for count, letters in part.items():
                for letter in (HENSEL[count] if letters is None else letters):
                    for p in classes[state, count, letter]:
                        table |= 1 << p
        return cls.from_table(table)

    # ------------------------------------------------------------------ what the table is
    @property
    def family(self) -> str:
        """The first family holding the rule, in the order of its string (module docstring):
        ``"outer_totalistic"``, ``"von_neumann"``, ``"isotropic"``, ``"rotational"``, ``"map"``."""
        return _analyse(self.table)[0]

    @property
    def is_outer_totalistic(self) -> bool:
        """Whether the rule depends only on the centre and a neighbour count (a B/S rule)."""
        return self.family in ("outer_totalistic", "von_neumann")

    def in_family(self, family: str | Family) -> bool:
        """Whether the table is constant on every class of ``family``."""
        return get_family(family).contains(self.table)

    @property
    def symmetry(self) -> RuleSymmetry:
        """Which symmetries of the square (and the 45° ring rotation) leave the table unchanged."""
        return _analyse(self.table)[1]

    @property
    def neighbourhood(self) -> Neighbourhood:
        """``"von_neumann"`` for a ``V`` rule, else ``"moore"`` (every other rule reads the
        whole 3×3 block)."""
        return "von_neumann" if self.family == "von_neumann" else "moore"

    @property
    def max_count(self) -> int:
        """Largest neighbour count: 8 (Moore) or 4 (von Neumann)."""
        return NEIGHBOURHOODS[self.neighbourhood].max_count

    def _bs(self) -> tuple[frozenset[int], frozenset[int]]:
        if not self.is_outer_totalistic:
            raise RuleError(f"rule {self} is {self.family}, not outer-totalistic: it has no "
                            "birth and survival counts (use .table)")
        return _analyse(self.table)[2]

    @property
    def birth(self) -> frozenset[int]:
        """Neighbour counts at which a dead cell is born (outer-totalistic rules only)."""
        return self._bs()[0]

    @property
    def survival(self) -> frozenset[int]:
        """Neighbour counts at which a live cell survives (outer-totalistic rules only)."""
        return self._bs()[1]

    @property
    def slug(self) -> str:
        """Lower-case file-system name, e.g. ``b36s23``, ``b13s012v``, ``b2-as12``; MAP rules
        ``map`` and the first 16 base64 characters with ``+``/``/`` as ``-``/``_``."""
        text = str(self)
        if text.startswith("MAP"):
            return "map" + text[3:19].replace("+", "-").replace("/", "_").lower()
        return text.replace("/", "").lower()

    @property
    def name(self) -> str | None:
        """Common name (``"Life"``, ``"HighLife"``, ``"tlife"``, ...) or ``None``."""
        return NAMES.get(str(self))

    def lookup(self) -> torch.Tensor:
        """The table as ``uint8 [512]``: entry n is the next state of pattern n."""
        return torch.tensor([(self.table >> n) & 1 for n in range(N_PATTERNS)],
                            dtype=torch.uint8)

    def lookup_table(self) -> torch.Tensor:
        """Next state as a ``uint8`` table ``[2, max_count + 1]`` indexed by ``[state, count]``
        (outer-totalistic rules only)."""
        birth, survival = self._bs()
        lut = torch.zeros(2, self.max_count + 1, dtype=torch.uint8)
        lut[0, sorted(birth)] = 1
        lut[1, sorted(survival)] = 1
        return lut

    @property
    def table_bits(self) -> int:
        """The ``[state, count]`` table packed into an int: bit ``s·(max_count+1) + n`` is the
        next state (outer-totalistic rules only)."""
        birth, survival = self._bs()
        width = self.max_count + 1
        return sum(1 << n for n in birth) | sum(1 << (width + n) for n in survival)

    def __str__(self) -> str:
        return _analyse(self.table)[3]

    def __repr__(self) -> str:
        return f"Rule.parse({str(self)!r})"


@lru_cache(maxsize=4096)
def _analyse(table: int) -> tuple[str, RuleSymmetry, tuple[frozenset[int], frozenset[int]],
                                  str]:
    """(family, symmetry, (birth, survival) if outer-totalistic, canonical string) of a table."""
    family = next(f for f in ("outer_totalistic", *FAMILIES) if get_family(f).contains(table))
    bs: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())
    if family in ("outer_totalistic", "von_neumann"):
        width = NEIGHBOURHOODS["moore" if family == "outer_totalistic" else "von_neumann"
                               ].max_count + 1
        d = get_family(family).decisions(table)
        assert d is not None
        bs = (frozenset(n for n in range(width) if d[n]),
              frozenset(n for n in range(width) if d[width + n]))
        suffix = "V" if family == "von_neumann" else ""
        text = (f"B{''.join(map(str, sorted(bs[0])))}/S{''.join(map(str, sorted(bs[1])))}"
                f"{suffix}")
    elif family == "isotropic":
        text = hensel_string(table)
    else:
        text = map_encode(table)
    bits = [(table >> n) & 1 for n in range(N_PATTERNS)]

    def invariant(images: torch.Tensor) -> bool:
        return all(bits[m] == bits[n] for n, m in enumerate(images.tolist()))

    d4 = pattern_images("p4m")
    elements = tuple(g for g in range(8) if invariant(d4[g]))
    sym = RuleSymmetry(elements, SYMMETRY_SUBGROUPS[elements], invariant(pattern_images("p8")[1]))
    return family, sym, bs, text


def _parse_part(text: str, part: str, body: str, hood: Neighbourhood
                ) -> dict[int, tuple[str, ...] | None]:
    """``{count: None (every letter) or the letters that are on}`` of one half of a rule."""
    top = NEIGHBOURHOODS[hood].max_count
    out: dict[int, tuple[str, ...] | None] = {}
    i, body = 0, body.lower()
    while i < len(body):
        ch = body[i]
        if not ch.isdigit():  # the shape regex lets only digits, letters and '-' through
            raise _fail(text, f"{ch!r} in the {part} part must follow a digit (a Hensel letter "
                              "or '-' after a neighbour count)")
        n = int(ch)
        if n > top:
            label = "von Neumann neighbourhood (V)" if hood == "von_neumann" else \
                "Moore neighbourhood"
            raise _fail(text, f"digit {n} in the {part} part is out of range 0–{top} for the "
                              f"{label}")
        if n in out:
            raise _fail(text, f"repeated digit {n} in the {part} part")
        i += 1
        negative = i < len(body) and body[i] == "-"
        i += negative
        j = i
        while j < len(body) and body[j] in _LETTERS:
            j += 1
        letters = body[i:j]
        if negative and not letters:
            raise _fail(text, f"'-' after {n} in the {part} part needs the letters to leave out")
        if letters and hood == "von_neumann":
            raise _fail(text, "Hensel letters need the Moore neighbourhood (no V suffix)")
        valid = "".join(sorted(k for k in HENSEL[n] if k))
        for k, letter in enumerate(letters):
            if letter not in HENSEL[n] or not letter:
                allowed = f"letters {valid!r}" if valid else "no letters"
                raise _fail(text, f"letter {letter!r} after {n} in the {part} part does not "
                                  f"exist for {n} neighbours (allowed: {allowed})")
            if letter in letters[:k]:
                raise _fail(text, f"repeated letter {letter!r} after {n} in the {part} part")
        if not letters:
            out[n] = None
        else:
            on = set(letters) if not negative else set(HENSEL[n]) - set(letters)
            out[n] = tuple(sorted(on))
        i = j
    return out


def _diagnose(text: str) -> str:
    """Explain why ``text`` is not a rule string."""
    up = text.upper()
    if ":" in up:
        return ("bounded-grid suffixes (':T64,64', ':P...', ...) are not supported; gzoo always "
                "simulates on a torus of the board's own shape")
    if re.search(r"[/_]C?[0-9]+V?$", up) and re.match(r"B[0-9A-Z\-]*[/_]?S[0-9A-Z\-]*[/_]", up):
        return "Generations rules ('/C3', '/3') are not supported: gzoo rules have two states"
    if up.startswith("G") or re.search(r"/C[0-9]", up):
        return "Generations rules are not supported: gzoo rules have two states"
    if up.endswith("H"):
        return "the hexagonal neighbourhood (H) is not supported; use Moore or V"
    if not up.startswith("B"):
        if up.startswith("S"):
            return "missing or misplaced B (birth) part: write it first, e.g. 'B3/S23'"
        if re.fullmatch(r"[0-9]*/[0-9]*V?", up):
            return "missing the B part (the old S/B form '23/3' is not accepted); write 'B3/S23'"
        return f"missing the B (birth) part; {_EXAMPLES}"
    m = re.fullmatch(r"B[0-9\-" + _LETTERS.upper() + r"]*[/_]?S?[0-9\-" + _LETTERS.upper()
                     + r"]*(.*)", up)
    if m and m.group(1):
        return f"unexpected trailing text {_short(text[len(text) - len(m.group(1)):])}; {_EXAMPLES}"
    return _EXAMPLES


#: Common names of well-known rules, keyed by canonical string.
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
