"""Rule parsing, canonical form, errors, registry (gzoo.ca.rule)."""

from __future__ import annotations

import pytest
import torch

from gzoo.ca import NAMES, RULES, Rule, RuleError


@pytest.mark.parametrize(
    ("text", "canonical", "birth", "survival", "hood"),
    [
        ("B36/S23", "B36/S23", {3, 6}, {2, 3}, "moore"),
        ("B63/S32", "B36/S23", {3, 6}, {2, 3}, "moore"),
        ("b3s23", "B3/S23", {3}, {2, 3}, "moore"),
        ("B3_S23", "B3/S23", {3}, {2, 3}, "moore"),
        ("b3/s23", "B3/S23", {3}, {2, 3}, "moore"),
        ("B2/S", "B2/S", {2}, set(), "moore"),
        ("B2", "B2/S", {2}, set(), "moore"),
        ("B/S", "B/S", set(), set(), "moore"),
        ("B0/S8", "B0/S8", {0}, {8}, "moore"),
        ("B13/S012V", "B13/S012V", {1, 3}, {0, 1, 2}, "von_neumann"),
        ("b2s310v", "B2/S013V", {2}, {0, 1, 3}, "von_neumann"),
        ("B2V", "B2/SV", {2}, set(), "von_neumann"),
        ("B3678/S34678", "B3678/S34678", {3, 6, 7, 8}, {3, 4, 6, 7, 8}, "moore"),
    ],
)
def test_parse_and_canonical(text, canonical, birth, survival, hood):
    rule = Rule.parse(text)
    assert str(rule) == canonical
    assert rule.birth == frozenset(birth)
    assert rule.survival == frozenset(survival)
    assert rule.neighbourhood == hood
    assert rule.max_count == (8 if hood == "moore" else 4)
    assert Rule.parse(str(rule)) == rule  # round trip
    assert Rule.parse(rule) is rule


def test_equality_and_hash_by_meaning():
    a, b, c = Rule.parse("B36/S23"), Rule.parse("b63s32"), Rule({3, 6}, [3, 2])
    assert a == b == c
    assert len({a, b, c}) == 1
    assert {a: 1}[c] == 1
    assert Rule.parse("B3/S23") != Rule.parse("B3/S23V")
    assert Rule.parse("B3/S23") != Rule.parse("B36/S23")
    assert isinstance(a.birth, frozenset)
    with pytest.raises(AttributeError):
        a.birth = frozenset()  # type: ignore[misc]


def test_slug_name_repr():
    assert Rule.parse("B36/S23").slug == "b36s23"
    assert Rule.parse("B2/S").slug == "b2s"
    assert Rule.parse("B13/S012V").slug == "b13s012v"
    assert Rule.parse("b3s23").name == "Life"
    assert Rule.parse("B13/S012V").name is None
    assert eval(repr(Rule.parse("B2/S013V"))) == Rule.parse("B2/S013V")


def test_lookup_table_and_bits():
    life = Rule.parse("B3/S23")
    lut = life.lookup_table()
    assert lut.shape == (2, 9) and lut.dtype == torch.uint8
    assert lut[0].nonzero().flatten().tolist() == [3]
    assert lut[1].nonzero().flatten().tolist() == [2, 3]
    vn = Rule.parse("B13/S012V").lookup_table()
    assert vn.shape == (2, 5)
    assert vn.tolist() == [[0, 1, 0, 1, 0], [1, 1, 1, 0, 0]]
    for rule in RULES.values():
        flat = rule.lookup_table().flatten().tolist()
        assert [(rule.table_bits >> k) & 1 for k in range(len(flat))] == flat


def test_registry_order_and_names():
    assert list(RULES) == [
        "B3/S23",
        "B36/S23",
        "B3678/S34678",
        "B35678/S5678",
        "B2/S",
        "B234/S",
        "B345/S5",
        "B13/S012V",
        "B2/S013V",
    ]
    for key, rule in RULES.items():
        assert str(rule) == key
    names = {key: rule.name for key, rule in RULES.items()}
    assert names == {
        "B3/S23": "Life",
        "B36/S23": "HighLife",
        "B3678/S34678": "Day & Night",
        "B35678/S5678": "Diamoeba",
        "B2/S": "Seeds",
        "B234/S": "Serviettes",
        "B345/S5": "LongLife",
        "B13/S012V": None,
        "B2/S013V": None,
    }
    assert set(NAMES) <= set(RULES)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("B9/S23", "digit 9 in the B part is out of range 0–8"),
        ("B3/S239", "digit 9 in the S part is out of range 0–8"),
        ("B5/S0V", "digit 5 in the B part is out of range 0–4"),
        ("B2/S015V", "digit 5 in the S part is out of range 0–4"),
        ("B33/S23", "repeated digit 3 in the B part"),
        ("B3/S232", "repeated digit 2 in the S part"),
        ("S23", "B (birth) part"),
        ("/S23", "B (birth) part"),
        ("23/3", "missing the B part"),
        ("B1a/S12", "letter 'a' after 1 in the B part does not exist for 1 neighbours"),
        ("B0c/S", "letter 'c' after 0 in the B part does not exist"),
        ("B3/S8e", "letter 'e' after 8 in the S part does not exist"),
        ("B2aa/S", "repeated letter 'a'"),
        ("B2-/S1", "'-' after 2 in the B part needs the letters"),
        ("B2a/S1V", "Hensel letters need the Moore neighbourhood"),
        ("B-2/S1", "'-' in the B part must follow a digit"),
        ("MAPARYX", "86 base64 characters"),
        ("MAP" + "A" * 85 + "B", "bits set beyond the 512 entries"),
        ("MAP" + "A" * 85 + "*", "not base64"),
        ("B3/S23/C3", "Generations"),
        ("B2/S/3", "Generations"),
        ("B3/S23:T64,64", "bounded-grid"),
        ("B3/S23:T30,20", "bounded-grid"),
        ("B3/S23H", "hexagonal"),
        ("", "empty"),
        (" B3/S23", "whitespace"),
        ("B3/S23\n", "whitespace"),
        ("B36/S23xyz", "'xyz'"),
        ("Life", "B (birth) part"),
    ],
)
def test_parse_errors_quote_input(text, fragment):
    with pytest.raises(RuleError) as info:
        Rule.parse(text)
    msg = str(info.value)
    assert repr(text) in msg
    assert fragment in msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [None, 323, b"B3/S23", ["B3/S23"]])
def test_parse_rejects_non_strings(value):
    with pytest.raises(RuleError, match="expected a rule string") as info:
        Rule.parse(value)  # type: ignore[arg-type]
    assert repr(value) in str(info.value)


def test_constructor_validates():
    with pytest.raises(RuleError, match=r"0\.\.4"):
        Rule({5}, set(), "von_neumann")
    with pytest.raises(RuleError, match="neighbourhood"):
        Rule({3}, {2}, "hex")  # type: ignore[arg-type]
    with pytest.raises(RuleError, match="set of neighbour counts"):
        Rule("3", {2})  # type: ignore[arg-type]


def test_long_input_is_quoted_shortly():
    text = "B3/S23" + "x" * 12000
    with pytest.raises(RuleError) as info:
        Rule.parse(text)
    msg = str(info.value)
    assert len(msg) < 400 and "'B3/S23xxx" in msg and "12008 characters" in msg
