"""Golly RLE patterns (gzoo.ca.rle): round trips, shipped patterns, malformed input."""

from __future__ import annotations

import random

import pytest
import torch

from gzoo.ca import (
    PATTERNS,
    RLEError,
    Rule,
    load_pattern,
    place_on_torus,
    read_rle,
    simulate,
    write_rle,
)


@pytest.mark.parametrize("seed", range(8))
def test_random_boards_round_trip(seed):
    rng = random.Random(seed)
    h, w = rng.randint(1, 40), rng.randint(1, 90)
    g = torch.Generator().manual_seed(seed)
    board = (torch.rand(h, w, generator=g) < rng.random()).to(torch.uint8)
    if seed % 3 == 0:
        board[rng.randrange(h):] = 0  # empty rows at the end and in the middle
    rule = [None, Rule.parse("B36/S23"), Rule.parse("B3/S2-i34q"),
            Rule.from_table(rng.getrandbits(512))][seed % 4]
    text = write_rle(board, rule, comments=("made by a test",))
    body = [line for line in text.splitlines() if not line.startswith(("#", "x ="))]
    assert body and all(len(line) <= 70 for line in body)
    back, back_rule = read_rle(text)
    assert torch.equal(back, board) and back_rule == rule


def test_rows_and_runs_are_golly_style():
    board = torch.zeros(6, 5, dtype=torch.uint8)
    board[1, 1:4] = 1
    board[4, 0] = 1
    assert write_rle(board) == "x = 5, y = 6\n$b3o3$o!\n"
    assert write_rle(torch.zeros(3, 3, dtype=torch.uint8)) == "x = 3, y = 3\n!\n"


def test_reader_tolerates_golly_variants(tmp_path):
    text = ("#N name\n#C a comment\n\nx=4,y=3,rule=b36s23\n"
            "2o\n2b$\n3.A$\n!trailing text is ignored")
    board, rule = read_rle(text)
    assert rule == Rule.parse("B36/S23")
    assert board.tolist() == [[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    path = tmp_path / "p.rle"
    path.write_text(text)
    assert torch.equal(read_rle(path)[0], board)
    assert torch.equal(read_rle(str(path))[0], board)


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ("#C only\n", "no header", 0),
        ("x = 3\nbo!\n", "bad header", 1),
        ("x = 3, y = 2\n4o!\n", "does not fit", 2),
        ("x = 3, y = 1\no$o!\n", "more than its declared 1 rows", 2),
        ("x = 3, y = 2\nbxo!\n", "unexpected 'x'", 2),
        ("x = 3, y = 2\n0o!\n", "at least 1", 2),
        ("x = 3, y = 2\nbo\n", "does not end with '!'", 2),
        ("x = 3, y = 2, rule = B9/S\nbo!\n", "digit 9", 1),
        ("x = 3, y = 2, rule = B3/S23/C3\nbo!\n", "Generations", 1),
        ("x = 100000, y = 100000\n!\n", "at most", 1),
        ("x = 0, y = 2\n!\n", "at least 1×1", 1),
    ],
)
def test_malformed_rle_is_a_clear_error(text, fragment, line):
    with pytest.raises(RLEError, match=fragment) as info:
        read_rle(text)
    assert info.value.line == line
    if line:
        assert f"line {line}, column" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file_and_bad_types(tmp_path):
    with pytest.raises(FileNotFoundError, match="no RLE file"):
        read_rle(tmp_path / "missing.rle")
    with pytest.raises(TypeError, match="RLE text or a path"):
        read_rle(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"one board \[H, W\]"):
        write_rle(torch.zeros(2, 3, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="one line"):
        write_rle(torch.zeros(2, 2, dtype=torch.uint8), comments=("a\nb",))


def test_shipped_patterns():
    assert set(PATTERNS) >= {"glider", "gosper_gun", "replicator"}
    with pytest.raises(ValueError, match="unknown pattern 'nope'; shipped: glider"):
        load_pattern("nope")


def test_glider_moves_one_cell_diagonally_every_four_steps():
    glider, rule = load_pattern("glider")
    board = place_on_torus(glider, 16)
    hist = simulate(board, rule, 8)
    assert torch.equal(hist[4], board.roll((1, 1), (0, 1)))
    assert torch.equal(hist[8], board.roll((2, 2), (0, 1)))


def test_gosper_gun_emits_a_glider_every_30_generations():
    gun, rule = load_pattern("gosper_gun")
    assert rule == Rule.parse("B3/S23") and int(gun.sum()) == 36
    board = place_on_torus(gun, (80, 120))
    hist = simulate(board, rule, 150)
    pop = hist.flatten(1).sum(1)
    # after the first glider has left the gun, each period adds exactly one glider (5 cells)
    for t in (30, 60, 90, 120):
        assert int(pop[t + 30]) - int(pop[t]) == 5
    top, left = (80 - 9) // 2, (120 - 36) // 2
    gun_region = hist[:, top:top + 9, left:left + 36]
    assert torch.equal(gun_region[60], gun_region[90])  # the gun itself has period 30


def test_highlife_replicator_makes_two_copies_in_12_generations():
    rep, rule = load_pattern("replicator")
    assert rule == Rule.parse("B36/S23")
    board = place_on_torus(rep, 32)
    after = simulate(board, rule, 12)[12]
    assert torch.equal(after, board.roll((2, 2), (0, 1)) | board.roll((-2, -2), (0, 1)))
    life = simulate(board, "B3/S23", 12)[12]
    assert not torch.equal(life, after)  # it is HighLife's B6 that makes it replicate


def test_place_on_torus_checks_sizes():
    glider, _ = load_pattern("glider")
    assert place_on_torus(glider).shape == (22, 22)
    with pytest.raises(ValueError, match="cannot hold"):
        place_on_torus(glider, 2)
    with pytest.raises(ValueError, match="positive int"):
        place_on_torus(glider, 0)
