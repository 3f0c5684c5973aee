"""The torus simulator (gzoo.ca.simulate): patterns, B0, references, dtypes, errors, CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gzoo.ca import RULES, Rule, neighbour_counts, simulate, step

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MOORE = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]
VON_NEUMANN = [(-1, 0), (1, 0), (0, -1), (0, 1)]


def loop_counts(board: np.ndarray, offsets) -> np.ndarray:
    """Neighbour counts by explicit loops over cells and offsets (indices mod H, W)."""
    h, w = board.shape
    out = np.zeros((h, w), dtype=np.int64)
    for i in range(h):
        for j in range(w):
            out[i, j] = sum(int(board[(i + di) % h, (j + dj) % w]) for di, dj in offsets)
    return out


def soup(shape, p=0.4, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < p


def test_blinker_period_two():
    board = torch.zeros(5, 5, dtype=torch.bool)
    board[2, 1:4] = True
    hist = simulate(board, "B3/S23", 4)
    assert hist.shape == (5, 5, 5)
    vertical = torch.zeros(5, 5, dtype=torch.bool)
    vertical[1:4, 2] = True
    assert torch.equal(hist[1], vertical)
    assert torch.equal(hist[2], board)
    assert torch.equal(hist[4], board)


def test_glider_moves_one_cell_diagonally_every_four_steps():
    board = torch.zeros(8, 10, dtype=torch.uint8)
    board[0, 1] = board[1, 2] = board[2, 0] = board[2, 1] = board[2, 2] = 1
    hist = simulate(board, "B3/S23", 40)
    for k in range(1, 11):
        assert torch.equal(hist[4 * k], board.roll((k, k), (0, 1)))  # wraps around the torus
    assert all(int(h.sum()) == 5 for h in hist)


def test_highlife_births_on_six():
    board = torch.zeros(5, 5, dtype=torch.bool)
    board[1, 1:4] = True
    board[3, 1:4] = True  # the centre (2, 2) is dead with 6 live neighbours
    assert not step(board, "B3/S23")[2, 2]
    assert step(board, "B36/S23")[2, 2]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("B0/S", [0, 1, 0, 1, 0]),  # strobes
        ("B0/S8", [0, 1, 1, 1, 1]),
        ("B0/SV", [0, 1, 0, 1, 0]),
        ("B01/S4V", [0, 1, 1, 1, 1]),
        ("B3/S23", [0, 0, 0, 0, 0]),
    ],
)
def test_b0_strobes_on_empty_torus(rule, expected):
    hist = simulate(torch.zeros(2, 6, 7, dtype=torch.uint8), rule, 4)
    for t, value in enumerate(expected):
        assert bool((hist[t] == value).all()), (rule, t)


@pytest.mark.parametrize("hood", ["moore", "von_neumann"])
@pytest.mark.parametrize("shape", [(3, 3), (1, 5), (2, 2), (7, 11)])
def test_neighbour_counts_match_loops(hood, shape):
    board = soup((3, *shape), seed=sum(shape))
    counts = neighbour_counts(board, hood)
    assert counts.shape == board.shape and counts.dtype == torch.uint8
    offsets = MOORE if hood == "moore" else VON_NEUMANN
    for b in range(3):
        ref = loop_counts(board[b].numpy(), offsets)
        np.testing.assert_array_equal(counts[b].numpy(), ref)
    assert torch.equal(
        neighbour_counts(board, Rule.parse("B3/S23V" if hood != "moore" else "B3")), counts
    )


def reference_history(board: np.ndarray, birth, survival, offsets, steps: int) -> np.ndarray:
    hist = [board.astype(bool)]
    for _ in range(steps):
        x = hist[-1]
        n = loop_counts(x, offsets)
        nxt = np.zeros_like(x)
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                nxt[i, j] = (n[i, j] in survival) if x[i, j] else (n[i, j] in birth)
        hist.append(nxt)
    return np.stack(hist)


@pytest.mark.parametrize(
    ("rule", "birth", "survival"),
    [("B13/S012V", {1, 3}, {0, 1, 2}), ("B2/S013V", {2}, {0, 1, 3})],
)
@pytest.mark.parametrize("shape", [(12, 20), (3, 3)])
def test_von_neumann_rules_match_plain_reference(rule, birth, survival, shape):
    board = soup(shape, p=0.3, seed=7)
    hist = simulate(board, rule, 50)
    ref = reference_history(board.numpy(), birth, survival, VON_NEUMANN, 50)
    np.testing.assert_array_equal(hist.numpy(), ref)


def all_3x3_boards() -> torch.Tensor:
    """All 512 boards of a 3×3 torus, where every cell neighbours every other (Moore)."""
    codes = torch.arange(512)
    return ((codes[:, None] >> torch.arange(9)) & 1).view(512, 3, 3).to(torch.uint8)


@pytest.mark.parametrize("rule", list(RULES))
def test_every_3x3_board_matches_plain_reference(rule):
    r = Rule.parse(rule)
    boards = all_3x3_boards()
    out = step(boards, r).numpy().astype(bool)
    offsets = MOORE if r.neighbourhood == "moore" else VON_NEUMANN
    ref = np.stack(
        [reference_history(b, r.birth, r.survival, offsets, 1)[1] for b in boards.numpy()]
    )
    np.testing.assert_array_equal(out, ref)


def test_life_matches_plain_reference():
    board = soup((9, 13), p=0.35, seed=3)
    ref = reference_history(board.numpy(), {3}, {2, 3}, MOORE, 30)
    np.testing.assert_array_equal(simulate(board, "B3/S23", 30).numpy(), ref)


@pytest.mark.parametrize("rule", list(RULES))
def test_lookup_table_semantics(rule):
    """Every (state, count) cell update agrees with the rule's table, on a random soup."""
    r = Rule.parse(rule)
    board = soup((4, 16, 16), p=0.5, seed=11)
    counts = neighbour_counts(board, r).long()
    expected = r.lookup_table()[board.long(), counts].bool()
    assert torch.equal(step(board, r), expected)


def test_batch_equals_single_boards():
    boards = soup((5, 12, 20), seed=1)
    hist = simulate(boards, "B36/S23", 20)
    assert hist.shape == (21, 5, 12, 20)
    for b in range(5):
        assert torch.equal(hist[:, b], simulate(boards[b], "B36/S23", 20))
    assert torch.equal(step(boards, "B36/S23"), hist[1])


@pytest.mark.parametrize(
    "dtype", [torch.bool, torch.uint8, torch.int64, torch.float32, torch.float64]
)
def test_dtype_is_kept(dtype):
    board = soup((2, 8, 9), seed=4)
    ref = simulate(board, "B3678/S34678", 5)
    x = board.to(dtype)
    out = step(x, "B3678/S34678")
    assert out.dtype == dtype and out.shape == x.shape
    hist = simulate(x, "B3678/S34678", 5)
    assert hist.dtype == dtype and hist.shape == (6, 2, 8, 9)
    assert torch.equal(hist.bool(), ref)
    assert torch.equal(x, board.to(dtype))  # the input is not modified


def test_simulate_zero_steps_and_rule_objects():
    board = soup((6, 6), seed=2)
    hist = simulate(board, Rule.parse("B2/S"), 0)
    assert hist.shape == (1, 6, 6) and torch.equal(hist[0], board)


def test_bad_values_are_errors():
    board = torch.zeros(4, 4, dtype=torch.uint8)
    board[1, 2] = 2
    with pytest.raises(ValueError, match=r"binary.*value 2.*uint8.*\(4, 4\)"):
        step(board, "B3/S23")
    f = torch.zeros(4, 4)
    f[0, 0] = 0.5
    with pytest.raises(ValueError, match=r"value 0.5"):
        simulate(f, "B3/S23", 3)
    with pytest.raises(ValueError, match="value -1"):
        step(torch.full((3, 3), -1), "B3/S23")
    with pytest.raises(ValueError, match="nan"):
        step(torch.full((3, 3), float("nan")), "B3/S23")


@pytest.mark.parametrize("shape", [(5,), (1, 2, 4, 4), ()])
def test_bad_dimensions_are_errors(shape):
    with pytest.raises(ValueError, match=r"\[H, W\] or \[B, H, W\]") as info:
        step(torch.zeros(shape, dtype=torch.bool), "B3/S23")
    assert str(tuple(shape)) in str(info.value)


def test_bad_types_are_errors():
    with pytest.raises(TypeError, match=r"torch\.from_numpy"):
        step(np.zeros((4, 4), dtype=bool), "B3/S23")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="complex"):
        step(torch.zeros(4, 4, dtype=torch.complex64), "B3/S23")
    with pytest.raises(ValueError, match=r"H, W >= 1.*\(0, 4\)"):
        step(torch.zeros(0, 4, dtype=torch.bool), "B3/S23")
    with pytest.raises(ValueError, match="steps must be >= 0"):
        simulate(torch.zeros(4, 4, dtype=torch.bool), "B3/S23", -1)
    with pytest.raises(TypeError, match="steps must be an int"):
        simulate(torch.zeros(4, 4, dtype=torch.bool), "B3/S23", 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid rule 'B3/S23:T4,4'"):
        step(torch.zeros(4, 4, dtype=torch.bool), "B3/S23:T4,4")
    with pytest.raises(ValueError, match="neighbourhood"):
        neighbour_counts(torch.zeros(4, 4, dtype=torch.bool), "hex")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("rule", list(RULES))
def test_cuda_matches_cpu(rule):
    boards = soup((8, 24, 40), seed=5)
    cpu = simulate(boards, rule, 30)
    gpu = simulate(boards.cuda(), rule, 30)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.bool
    assert torch.equal(gpu.cpu(), cpu)
    out = step(boards.to(torch.uint8).cuda(), rule)
    assert out.dtype == torch.uint8 and torch.equal(out.cpu().bool(), cpu[1])
    assert torch.equal(
        neighbour_counts(boards.cuda(), Rule.parse(rule)).cpu(),
        neighbour_counts(boards, Rule.parse(rule)),
    )
