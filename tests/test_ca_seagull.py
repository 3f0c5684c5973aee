"""The pyseagull backend and its monkey patch (gzoo.ca.seagull) against gzoo's simulator."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from gzoo.ca import (
    RULES,
    Rule,
    RuleError,
    apply_seagull_patch,
    remove_seagull_patch,
    seagull_history,
    seagull_is_patched,
    simulate,
    step,
)

seagull = pytest.importorskip("seagull")


def soup(shape, p, seed) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < p


@pytest.fixture
def unpatched():
    """pyseagull as installed, for the duration of one test; the patch is put back afterwards."""
    remove_seagull_patch()
    try:
        yield
    finally:
        apply_seagull_patch()


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("shape", [(16, 16), (12, 20), (3, 3)])
def test_gzoo_equals_patched_seagull(rule, shape):
    # several densities so that sparse, dense and near-critical soups are all exercised
    boards = torch.stack([soup(shape, p, seed=i) for i, p in enumerate((0.2, 0.4, 0.6))])
    ours = simulate(boards, rule, 50).numpy()
    theirs = seagull_history(boards, rule, 50)
    assert theirs.shape == ours.shape == (51, 3, *shape)
    np.testing.assert_array_equal(theirs, ours)


@pytest.mark.parametrize("rule", list(RULES))
def test_every_3x3_board_one_step(rule):
    apply_seagull_patch()
    codes = torch.arange(512)
    boards = ((codes[:, None] >> torch.arange(9)) & 1).view(512, 3, 3).bool()
    ours = step(boards, rule).numpy()
    theirs = np.stack([seagull.rules.life_rule(b, str(Rule.parse(rule))) for b in boards.numpy()])
    np.testing.assert_array_equal(theirs, ours)


def test_von_neumann_is_not_moore_after_patch():
    board = soup((20, 20), 0.4, seed=3)
    vn = seagull_history(board, "B13/S012V", 10)
    moore = seagull_history(board, "B13/S012", 10)
    assert not np.array_equal(vn, moore)
    np.testing.assert_array_equal(vn, simulate(board, "B13/S012V", 10).numpy())


def test_unpatched_seagull_has_both_bugs(unpatched):
    """What the patch is for: pyseagull 1.0.0b4 as installed ignores V and crashes on numpy 2."""
    assert not seagull_is_patched()
    x = soup((16, 16), 0.4, seed=4).numpy()
    as_v = seagull.rules.life_rule(x, "B13/S012V")
    as_moore = step(torch.from_numpy(x), "B13/S012").numpy()
    np.testing.assert_array_equal(as_v, as_moore)  # V silently dropped: Moore dynamics
    assert not np.array_equal(as_v, step(torch.from_numpy(x), "B13/S012V").numpy())
    junk = seagull.rules.life_rule(x, "B3/S23:T30,20")  # accepted silently, as B3/S023
    np.testing.assert_array_equal(junk, step(torch.from_numpy(x), "B3/S023").numpy())
    if not hasattr(np, "product"):
        board = seagull.Board(size=(8, 8))
        with pytest.raises(AttributeError, match="product"):
            seagull.Simulator(board).run(seagull.rules.conway_classic, iters=2)


def test_patch_is_idempotent_and_reversible():
    had_product = hasattr(np, "product")
    remove_seagull_patch()
    apply_seagull_patch()
    patched = seagull.rules.life_rule
    apply_seagull_patch()
    assert seagull.rules.life_rule is patched and seagull.life_rule is patched
    assert seagull_is_patched()
    remove_seagull_patch()
    assert not seagull_is_patched() and seagull.rules.life_rule is not patched
    remove_seagull_patch()  # a second removal is harmless
    apply_seagull_patch()
    assert seagull.rules.life_rule is patched
    assert hasattr(np, "product") == had_product  # global numpy untouched


def test_patched_seagull_is_strict_and_runs_on_numpy2():
    apply_seagull_patch()
    x = np.zeros((6, 6), dtype=bool)
    for junk in ("B3/S23:T30,20", "B2-a/S12", "B3/S23/C3", "B9/S23"):
        with pytest.raises(RuleError, match="invalid rule"):
            seagull.rules.life_rule(x, junk)
    board = seagull.Board(size=(10, 10))
    board.state[4, 3:6] = True  # blinker
    before = board.state.copy()
    sim = seagull.Simulator(board)
    stats = sim.run(seagull.rules.conway_classic, iters=4)
    assert set(stats) >= {"peak_cell_coverage", "avg_cell_coverage"}
    assert stats["peak_cell_coverage"] == pytest.approx(0.03)
    hist = sim.get_history()
    assert hist.shape == (5, 10, 10)
    np.testing.assert_array_equal(hist[2], before)


def test_seagull_history_accepts_boards_and_arrays():
    board = seagull.Board(size=(12, 20))
    board.state[:] = soup((12, 20), 0.4, seed=9).numpy()
    before = board.state.copy()
    hist = seagull_history(board, "B36/S23", 12)
    assert hist.shape == (13, 12, 20) and hist.dtype == bool
    np.testing.assert_array_equal(board.state, before)  # the board is not changed
    np.testing.assert_array_equal(hist, simulate(torch.from_numpy(before), "B36/S23", 12).numpy())
    np.testing.assert_array_equal(seagull_history(before.astype(np.uint8), "B36/S23", 12), hist)
    with pytest.raises(ValueError, match="binary"):
        seagull_history(np.full((4, 4), 2), "B3/S23", 1)
    with pytest.raises(ValueError, match=r"shape"):
        seagull_history(np.zeros(4), "B3/S23", 1)
    with pytest.raises(TypeError, match=r"seagull\.Board"):
        seagull_history([[0, 1]], "B3/S23", 1)
    with pytest.raises(RuleError):
        seagull_history(before, "B3/S23:T4,4", 1)


def test_import_gzoo_ca_does_not_import_seagull():
    code = (
        "import sys, gzoo.ca; "
        "assert 'seagull' not in sys.modules and 'loguru' not in sys.modules, "
        "sorted(m for m in sys.modules if 'seagull' in m or 'loguru' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
