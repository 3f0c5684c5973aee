"""Rule families, Hensel and MAP notation, symmetries (gzoo.ca.rule, .notation, .families).

The references here are written from the definitions, independently of gzoo's tables: Hensel
letters from a published table of one neighbourhood per letter (neighbours in the order N, NE,
E, SE, S, SW, W, NW) closed under the square's symmetries by the test's own ring permutations;
MAP bits from Golly's documented cell order.
"""

from __future__ import annotations

import base64
import random

import pytest
import torch

from gzoo.ca import FAMILIES, Rule, RuleError, get_family, make_dataset, simulate, step

RING = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")  # clockwise
CELL = {"NW": (0, 0), "N": (0, 1), "NE": (0, 2), "W": (1, 0), "C": (1, 1), "E": (1, 2),
        "SW": (2, 0), "S": (2, 1), "SE": (2, 2)}
# one neighbourhood per letter, letters in the order c e k a i n y q j r t w z
NAPKINS = {
    1: ("00000001", "10000000"),
    2: ("01000001", "10000010", "00100001", "10000001", "10001000", "00010001"),
    3: ("01000101", "10100010", "00101001", "10000011", "11000001", "01100001", "01001001",
        "10010001", "10100001", "10001001"),
    4: ("01010101", "10101010", "01001011", "11100001", "01100011", "11000101", "01100101",
        "10010011", "10101001", "10100011", "11001001", "10110001", "10011001"),
}
LETTERS = "cekainyqjrtwz"


def _symmetries(napkin: str) -> set[str]:
    """The orbit of a ring string under the 4 rotations (shift by 2) and the mirror N–S axis."""
    out = set()
    s = napkin
    for _ in range(4):
        s = s[-2:] + s[:-2]
        out.add(s)
        out.add(s[0] + s[1:][::-1])  # mirror: NE↔NW, E↔W, SE↔SW
    return out


def reference_letters() -> dict[int, dict[str, set[str]]]:
    """count → letter → set of ring strings (counts 5–7 by complement)."""
    ref: dict[int, dict[str, set[str]]] = {0: {"": {"0" * 8}}, 8: {"": {"1" * 8}}}
    for n, napkins in NAPKINS.items():
        ref[n] = {LETTERS[i]: _symmetries(k) for i, k in enumerate(napkins)}
    for n in (5, 6, 7):
        flip = str.maketrans("01", "10")
        ref[n] = {k: {s.translate(flip) for s in v} for k, v in ref[8 - n].items()}
    return ref


REF = reference_letters()


def ring_of(pattern: int) -> str:
    return "".join(str((pattern >> (3 * CELL[c][0] + CELL[c][1])) & 1) for c in RING)


def letter_of(pattern: int) -> tuple[int, str]:
    ring = ring_of(pattern)
    n = ring.count("1")
    (letter,) = [k for k, v in REF[n].items() if ring in v]
    return n, letter


def test_reference_letters_partition_the_ring():
    for n, letters in REF.items():
        union = set().union(*letters.values())
        assert sum(len(v) for v in letters.values()) == len(union)  # disjoint orbits
        assert len(union) == sum(1 for p in range(256) if bin(p).count("1") == n)
    assert sum(len(v) for v in REF.values()) * 2 == 102


@pytest.mark.parametrize("count", range(9))
def test_each_hensel_letter_is_its_orbit(count):
    for letter, rings in REF[count].items():
        for state, text in ((0, f"B{count}{letter}/S"), (1, f"B/S{count}{letter}")):
            table = Rule.parse(text).table
            on = {p for p in range(512) if (table >> p) & 1}
            expected = {p for p in range(512)
                        if (p >> 4) & 1 == state and ring_of(p) in rings}
            assert on == expected, text


def random_hensel_spec(rng: random.Random) -> dict[tuple[int, int], set[str]]:
    spec = {}
    for state in (0, 1):
        for n in range(9):
            letters = sorted(REF[n])
            spec[state, n] = {k for k in letters if rng.random() < 0.5}
    return spec


def spec_text(spec: dict[tuple[int, int], set[str]], rng: random.Random) -> str:
    """A valid, deliberately non-canonical spelling: positive, negative or bare digit."""
    halves = []
    for state in (0, 1):
        text = ""
        for n in rng.sample(range(9), 9):  # any digit order
            on, every = spec[state, n], set(REF[n])
            if not on:
                continue
            if on == every:
                text += str(n) if rng.random() < 0.5 or n in (0, 8) else str(n) + "".join(
                    sorted(on))
            elif rng.random() < 0.5:
                text += str(n) + "".join(rng.sample(sorted(on), len(on)))
            else:
                text += f"{n}-" + "".join(sorted(every - on))
        halves.append(text)
    return f"B{halves[0]}/S{halves[1]}"


def reference_step(board: torch.Tensor, spec: dict[tuple[int, int], set[str]]) -> torch.Tensor:
    """One step from the definition: per cell, its (state, count, letter) looked up in spec."""
    h, w = board.shape
    out = torch.zeros_like(board)
    for i in range(h):
        for j in range(w):
            p = 0
            for r, c in CELL.values():
                p |= int(board[(i + r - 1) % h, (j + c - 1) % w]) << (3 * r + c)
            n, letter = letter_of(p)
            out[i, j] = int(letter in spec[(p >> 4) & 1, n])
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_hensel_rules_simulate_as_defined(seed):
    rng = random.Random(seed)
    spec = random_hensel_spec(rng)
    text = spec_text(spec, rng)
    rule = Rule.parse(text)
    assert Rule.parse(str(rule)) == rule
    g = torch.Generator().manual_seed(seed)
    board = (torch.rand(7, 9, generator=g) < 0.45).to(torch.uint8)
    for _ in range(3):
        expected = reference_step(board, spec)
        assert torch.equal(step(board, rule), expected), text
        board = expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("B3/S2-i34q", "B3/S2-i34q"),  # tlife
        ("B2-a/S12", "B2-a/S12"),  # Just Friends
        ("b2ceikn/s12", "B2-a/S12"),
        ("B2aceikn/S", "B2/S"),  # every letter: totalistic
        ("B3/S2acekn34q", "B3/S2-i34q"),
        ("B2cekain/S1", "B2/S1"),
        ("B34acekijnqrty/S", "B34-wz/S"),  # 11 of 13: negative
        ("B4aceijknqr/S", "B4-twyz/S"),  # 9 of 13: negative
        ("B4aceijkn/S", "B4aceijkn/S"),  # 7 of 13: positive (Golly)
        ("B3/S23", "B3/S23"),
    ],
)
def test_canonical_hensel_strings(text, canonical):
    rule = Rule.parse(text)
    assert str(rule) == canonical
    assert Rule.parse(canonical) == rule


def test_von_neumann_rules_equal_their_hensel_forms():
    # from the issue, checked there against an independent simulator
    assert Rule.parse("B13/S012V") == Rule.parse(
        "B1e2ak3einqy4jnry5einqy6ak7e/S0123-e4-ejr5aejkr6ei")
    assert Rule.parse("B2/S013V") == Rule.parse(
        "B2ei3ajkr4aikqtwz5ajkr6ei/S012-ei3-ajkr4cjnry5einqy6ak7e")
    assert str(Rule.parse("B1e2ak3einqy4jnry5einqy6ak7e/S0123-e4-ejr5aejkr6ei")) == "B13/S012V"


def golly_map(next_state, cells: tuple[str, ...]) -> str:
    """MAP string from a function of the named cells, Golly's order (first cell = high bit)."""
    n = len(cells)
    bits = []
    for i in range(1 << n):
        alive = {c for k, c in enumerate(cells) if (i >> (n - 1 - k)) & 1}
        bits.append(next_state(alive))
    bits += [0] * (-len(bits) % 24)
    raw = int("".join(map(str, bits)), 2).to_bytes(len(bits) // 8, "big")
    chars = base64.b64encode(raw).decode()
    return "MAP" + chars[: -(-(1 << n) // 6)]


def life_like(birth: set[int], survival: set[int], hood: tuple[str, ...]):
    def f(alive: set[str]) -> int:
        n = len(alive & set(hood))
        return int(n in (survival if "C" in alive else birth))
    return f


MOORE = ("NW", "N", "NE", "W", "C", "E", "SW", "S", "SE")
VN = ("N", "W", "C", "E", "S")


def test_map_strings_follow_gollys_bit_order():
    life = golly_map(life_like({3}, {2, 3}, RING), MOORE)
    # the MAP string of Life as published by the Golly/LifeWiki community
    assert life == ("MAPARYXfhZofugWaH7oaIDogBZofuhogOiAaIDogIAAgAAWaH7oaIDogGiA6ICAAIAAaIDo"
                    "gIAAgACAAIAAAAAAAA")
    assert Rule.parse(life) == Rule.parse("B3/S23")
    assert Rule.parse(life + "==") == Rule.parse("B3/S23")  # Golly's optional padding
    assert Rule.parse("map" + life[3:]) == Rule.parse("B3/S23")  # the prefix is case-free
    vn = golly_map(life_like({1, 3}, {0, 1, 2}, ("N", "E", "S", "W")), VN)
    assert len(vn) == 3 + 6
    assert Rule.parse(vn) == Rule.parse("B13/S012V")


def test_random_tables_round_trip_through_their_strings():
    rng = random.Random(1)
    for family in FAMILIES:
        fam = get_family(family)
        for _ in range(20):
            decisions = [rng.randint(0, 1) for _ in range(fam.n_classes)]
            rule = Rule.from_table(fam.table(decisions))
            text = str(rule)
            assert Rule.parse(text) == rule
            assert str(Rule.parse(text)) == text
            assert rule.in_family(family)
            assert fam.decisions(rule.table) == decisions
    # the family a random member lands in is the first that holds it
    random_map = Rule.from_table(rng.getrandbits(512))
    assert random_map.family == "map" and str(random_map).startswith("MAP")
    assert not random_map.is_outer_totalistic


def test_family_sizes():
    assert [get_family(f).n_classes for f in FAMILIES] == [10, 18, 102, 140, 512]
    for f in FAMILIES:
        sizes = get_family(f).class_sizes()
        assert int(sizes.sum()) == 512 and bool((sizes > 0).all())


def test_table_construction_and_errors():
    life = Rule.parse("B3/S23")
    assert Rule.from_table(life.table) == life
    assert Rule.from_table(life.lookup()) == life
    assert Rule.from_table(life.lookup().bool()) == life
    assert Rule.from_table(life.lookup().tolist()) == life
    for bad, match in [
        (-1, "0..2"), (1 << 512, "0..2"), (True, "expected an int"), ([0, 1], "512 entries"),
        ([2] * 512, "0 or 1"), (torch.zeros(512), "bool or integer tensor"),
        (torch.zeros(2, 256, dtype=torch.uint8), r"\(2, 256\)"), ("B3/S23", "expected an int"),
    ]:
        with pytest.raises(RuleError, match=match):
            Rule.from_table(bad)  # type: ignore[arg-type]


def test_birth_and_survival_only_for_outer_totalistic_rules():
    tlife = Rule.parse("B3/S2-i34q")
    assert tlife.family == "isotropic" and tlife.neighbourhood == "moore"
    with pytest.raises(RuleError, match="isotropic, not outer-totalistic"):
        _ = tlife.birth
    with pytest.raises(RuleError, match="not outer-totalistic"):
        tlife.lookup_table()
    assert Rule.parse("B/S01234V") == Rule.parse("B/S012345678")  # reads the centre only
    assert str(Rule.parse("B/S01234V")) == "B/S012345678"


def rule_with_symmetries(elements: tuple[int, ...], seed: int = 0) -> Rule:
    """A random table invariant under exactly the subgroup generated by ``elements``."""
    from gzoo.ca.stencil import orbit_labels

    labels = orbit_labels("p4m", elements).tolist()
    rng = random.Random(seed)
    value = {lab: rng.randint(0, 1) for lab in set(labels)}
    return Rule.from_table(sum(value[lab] << p for p, lab in enumerate(labels)))


@pytest.mark.parametrize(
    ("elements", "name"),
    [((0,), "1"), ((0, 2), "C2"), ((0, 1, 2, 3), "C4"), ((0, 4), "D1 (|)"), ((0, 6), "D1 (—)"),
     ((0, 5), "D1 (\\)"), ((0, 7), "D1 (/)"), ((0, 2, 4, 6), "D2 (| —)"),
     ((0, 2, 5, 7), "D2 (/ \\)"), (tuple(range(8)), "D4")],
)
def test_symmetry_of_random_tables(elements, name):
    sym = rule_with_symmetries(elements).symmetry
    assert sym.elements == elements and sym.name == name
    assert ("p4m" in sym.groups) == (name == "D4")
    assert ("p4" in sym.groups) == (name in ("C4", "D4"))


def test_mirror_names_match_pictures():
    # a rule that births on one pattern only is symmetric exactly under the mirrors fixing it
    for cell, name in (("NE", "D1 (/)"), ("SW", "D1 (/)"), ("NW", "D1 (\\)"), ("N", "D1 (|)"),
                       ("S", "D1 (|)"), ("W", "D1 (—)"), ("E", "D1 (—)")):
        r, c = CELL[cell]
        assert Rule.from_table(1 << (1 << (3 * r + c))).symmetry.name == name, cell
    both = (1 << 2) | (1 << 6)  # NE and SW: both diagonals and the half turn
    assert Rule.from_table(1 << both).symmetry.name == "D2 (/ \\)"


def test_ring_symmetry():
    assert Rule.parse("B3/S23").symmetry.ring
    assert Rule.parse("B2-a/S12").symmetry.ring  # 2a is closed under ring rotation, 2c ~ 2e
    assert not Rule.parse("B3/S2-i34q").symmetry.ring
    assert not Rule.parse("B13/S012V").symmetry.ring
    assert Rule.parse("B13/S012V").symmetry.name == "D4"


def test_dataset_covers_the_rule_family():
    for text in ("B3/S2-i34q", str(Rule.from_table(random.Random(5).getrandbits(512)))):
        ds = make_dataset(text, 64, 24, 2, seed=3)
        assert ds.missing_family_classes() == []
        assert torch.equal(ds.y, step(ds.x, ds.rule))
    # a family the data cannot cover is reported by name
    seeds = make_dataset("B2/S", 4, 8, 1, density=(0.0, 0.0), seed=0)
    assert "S8" in seeds.missing_family_classes("outer_totalistic")


def test_simulate_runs_every_family():
    rng = random.Random(7)
    board = torch.rand(2, 11, 13, generator=torch.Generator().manual_seed(0)) < 0.4
    for family in FAMILIES:
        fam = get_family(family)
        rule = Rule.from_table(fam.table([rng.randint(0, 1) for _ in range(fam.n_classes)]))
        hist = simulate(board, rule, 4)
        for t in range(4):
            assert torch.equal(hist[t + 1], step(hist[t], rule))
