"""pyseagull backend: run gzoo rules through pyseagull to cross-check and reuse seagull boards.

pyseagull 1.0.0b4 is imported lazily (``import gzoo.ca`` does not import seagull or loguru) and
is fixed by a documented monkey patch, applied idempotently by :func:`apply_seagull_patch` (and
automatically by :func:`seagull_history`). pyseagull itself is not forked or edited on disk.

What the patch changes, and why:

1. ``Simulator.run`` crashes on numpy 2: it computes run statistics with
   ``seagull.utils.statistics.cell_coverage``/``shannon_entropy``, which call ``np.product``
   (removed in numpy 2.0). Both functions are replaced by identical formulas using ``np.prod``
   (the entropy's ``log2(0) = -inf`` for an empty or full board is kept, without the numpy
   divide-by-zero warning). Global numpy is left untouched.
2. ``seagull.rules.life_rule`` runs ``V`` rules with Moore counts: its ``_parse_rulestring`` uses
   ``re.match`` (a prefix match), so ``B13/S012V`` is read as ``B13/S012`` and ``V`` is dropped,
   and ``_count_neighbors`` only knows the 3×3 Moore kernel. The same prefix match accepts junk
   silently: ``B3/S23:T30,20`` runs as ``B3/S023`` (the digits of ``:T30,20`` join S).
   The patch replaces, in ``seagull.rules`` (and the ``seagull.life_rule`` re-export):

   - ``_parse_rulestring(r)`` → gzoo's strict :meth:`Rule.parse` (raises :class:`RuleError`,
     a ``ValueError`` like the original), returning ``(birth, survival)`` lists as before;
   - ``_count_neighbors(X, von_neumann=False)`` → the original wrap-around ``convolve2d``, with the
     plus-shaped kernel ``[[0,1,0],[1,0,1],[0,1,0]]`` for von Neumann counts;
   - ``life_rule(X, rulestring)`` → the original formula
     ``(X == 0) & isin(n, B) | (X == 1) & isin(n, S)`` with ``n`` from the rule's neighbourhood.

   ``conway_classic`` calls ``life_rule`` through the module, so it follows the patch.
3. seagull logs through loguru at INFO level on every run; ``logger.disable("seagull")`` silences
   records from seagull's modules only.

After the patch pyseagull gives von Neumann dynamics for ``V`` rules, and its dynamics are an
independent implementation (scipy ``convolve2d`` + ``np.isin``) to check gzoo's simulator against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .rule import Rule, RuleError
from .simulate import as_uint8_boards

__all__ = [
    "apply_seagull_patch",
    "remove_seagull_patch",
    "seagull_history",
    "seagull_is_patched",
]

_ORIGINALS: dict[tuple[str, str], Any] = {}
_MOORE = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]])
_VON_NEUMANN = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])


def _outer_totalistic(r: str | Rule) -> Rule:
    """:meth:`Rule.parse`, refusing rules pyseagull cannot run (it counts neighbours)."""
    rule = Rule.parse(r)
    if not rule.is_outer_totalistic:
        raise RuleError(f"invalid rule {r!r} for pyseagull: it runs outer-totalistic B/S rules "
                        f"only, and this rule is {rule.family} (use gzoo.ca.simulate)")
    return rule


def _parse_rulestring(r: str) -> tuple[list[int], list[int]]:
    """Patched ``seagull.rules._parse_rulestring``: strict parsing via :meth:`Rule.parse`."""
    rule = _outer_totalistic(r)
    return sorted(rule.birth), sorted(rule.survival)


def _count_neighbors(X: np.ndarray, von_neumann: bool = False) -> np.ndarray:
    """Patched ``seagull.rules._count_neighbors``: Moore or von Neumann counts on the torus."""
    from scipy.signal import convolve2d

    kernel = _VON_NEUMANN if von_neumann else _MOORE
    return convolve2d(X, kernel, mode="same", boundary="wrap")


def life_rule(X: np.ndarray, rulestring: str) -> np.ndarray:
    """Patched ``seagull.rules.life_rule``: B/S rules with Moore or (``V``) von Neumann counts."""
    rule = _outer_totalistic(rulestring)
    birth, survival = sorted(rule.birth), sorted(rule.survival)
    neighbors = _count_neighbors(X, von_neumann=rule.neighbourhood == "von_neumann")
    birth_rule = (X == 0) & np.isin(neighbors, birth)
    survival_rule = (X == 1) & np.isin(neighbors, survival)
    return birth_rule | survival_rule


def _cell_coverage(state: np.ndarray) -> float:
    """Patched ``seagull.utils.statistics.cell_coverage`` (``np.prod`` for ``np.product``)."""
    return np.sum(state) / np.prod(state.shape)


def _shannon_entropy(state: np.ndarray) -> float:
    """Patched ``seagull.utils.statistics.shannon_entropy``: the original formula, numpy 2 safe."""
    zero_probs = np.count_nonzero(state) / np.prod(state.shape)
    one_probs = 1 - zero_probs
    with np.errstate(divide="ignore"):
        return -np.sum(np.log2([zero_probs, one_probs]))


def _targets() -> list[tuple[Any, str, Callable[..., Any]]]:
    import seagull
    import seagull.rules
    import seagull.utils.statistics

    return [
        (seagull.rules, "_parse_rulestring", _parse_rulestring),
        (seagull.rules, "_count_neighbors", _count_neighbors),
        (seagull.rules, "life_rule", life_rule),
        (seagull, "life_rule", life_rule),
        (seagull.utils.statistics, "cell_coverage", _cell_coverage),
        (seagull.utils.statistics, "shannon_entropy", _shannon_entropy),
    ]


def seagull_is_patched() -> bool:
    """Whether :func:`apply_seagull_patch` is in effect."""
    import seagull.rules

    return seagull.rules.life_rule is life_rule


def apply_seagull_patch() -> None:
    """Patch pyseagull in memory (idempotent); see the module docstring for what and why."""
    from loguru import logger

    logger.disable("seagull")
    for module, attr, new in _targets():
        key = (module.__name__, attr)
        current = getattr(module, attr)
        if current is new:
            continue
        _ORIGINALS.setdefault(key, current)
        setattr(module, attr, new)


def remove_seagull_patch() -> None:
    """Undo :func:`apply_seagull_patch` (restores pyseagull's original functions)."""
    for module, attr, _new in _targets():
        key = (module.__name__, attr)
        if key in _ORIGINALS:
            setattr(module, attr, _ORIGINALS.pop(key))


def _to_numpy(board: Any) -> np.ndarray:
    """A binary numpy array or torch tensor ``[H, W]``/``[B, H, W]`` as a bool numpy array,
    checked by gzoo's one board validator (:func:`gzoo.ca.as_uint8_boards`)."""
    if isinstance(board, np.ndarray):
        board = torch.from_numpy(np.ascontiguousarray(board))
    if not isinstance(board, torch.Tensor):
        raise TypeError(
            "board must be a seagull.Board, a numpy array or a torch tensor of shape "
            f"[H, W] or [B, H, W], got {type(board).__name__}"
        )
    return as_uint8_boards(board.detach(), "board").cpu().numpy().astype(bool)


def seagull_history(board: Any, rule: Rule | str, steps: int) -> np.ndarray:
    """Run ``rule`` for ``steps`` steps with (patched) pyseagull and return its bool history.

    ``board`` is a ``seagull.Board`` (its ``state`` is the initial board and is left unchanged),
    or a binary numpy array / torch tensor ``[H, W]`` or ``[B, H, W]``. Returns
    ``Simulator.get_history()``: ``[steps + 1, H, W]`` (``[steps + 1, B, H, W]`` for a batch, one
    seagull simulation per board).
    """
    rule = _outer_totalistic(rule)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    apply_seagull_patch()
    import seagull

    if isinstance(board, seagull.Board):
        sim = seagull.Simulator(board)
        sim.run(seagull.rules.life_rule, iters=steps, rulestring=str(rule))
        return np.asarray(sim.get_history(), dtype=bool)
    arr = _to_numpy(board)
    if arr.ndim == 3:
        return np.stack([seagull_history(b, rule, steps) for b in arr], axis=1)
    sg_board = seagull.Board(size=arr.shape)
    sg_board.state = arr.copy()
    return seagull_history(sg_board, rule, steps)
