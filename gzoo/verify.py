r"""Proving a model exact, and measuring how well it simulates.

**Exhaustive check.** A model whose answer at a cell is a function of that cell's 3×3 window on
the torus computes, on any board of any size, ``model(x)[i, j] = f(P_{ij}(x))`` with ``P_{ij}``
the 3×3 patch around ``(i, j)``. A Life-like rule is such an ``f`` too. There are only
``2⁹ = 512`` patches, so comparing ``f_model`` and ``f_rule`` on all of them decides exactness on
every board of every size. Whether the model *is* such a function is established by
:mod:`gzoo.certify` from the layers it is built of (never from what it declares) and tested
empirically (locality, random boards of several sizes, two identical runs); only then is the
verdict a proof (``method="exhaustive"``).

Pattern numbering: pattern ``n ∈ 0..511`` has cell ``(r, c)`` (``r, c ∈ 0..2``, the centre is
``(1, 1)``) alive iff bit ``j = 3r + c`` of ``n`` is set. Each pattern is run as a 3×3 torus
board; with circular padding the centre cell then sees exactly the pattern, and the expected
value is :func:`gzoo.ca.step` on the same board.

**Evidence.** Any other model (one whose layers gzoo cannot read, a receptive field larger than
3, a boundary that is not a torus) gets ``method="evidence"``: each pattern is embedded at the
centre of ``n_contexts`` random boards of side ``r + 2`` (per board density ``~ U(0, 1)``; ``r``
the bound read from the layers, else 9), a pattern counts as wrong if the model is wrong in
*any* context, and the same empirical checks run. No error found is evidence, not a proof.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gzoo._checks import check_int
from gzoo._version import __version__
from gzoo.ca import Rule, all_patterns, neighbour_counts, step
from gzoo.ca.stencil import N_PATTERNS, orbit_labels
from gzoo.certify import Check, boards_check, determinism_check, locality_check, read_structure
from gzoo.models.base import model_device_dtype, predict_logits, predict_next

__all__ = [
    "ExactResult",
    "PatternProbe",
    "RolloutResult",
    "WrongPattern",
    "all_patterns",
    "dataset_accuracy",
    "pattern_counts",
    "probe_patterns",
    "rollout_agreement",
    "rollout_histories",
    "symmetry_floor",
    "verify_exact",
]

@dataclass(frozen=True)
class WrongPattern:
    """One 3×3 neighbourhood the model gets wrong.

    ``index`` is the pattern number (module docstring), ``cells`` its rows, ``state`` the centre,
    ``count`` the live neighbours under the rule's neighbourhood, ``expected`` the rule's answer
    (the model answered ``1 − expected``, in at least one context for ``method="contexts"``).
    """

    index: int
    cells: tuple[tuple[int, ...], ...]
    state: int
    count: int
    expected: int

    def __str__(self) -> str:
        rows = "/".join("".join("#" if v else "." for v in row) for row in self.cells)
        kind = "dead" if self.state == 0 else "alive"
        return f"#{self.index} {rows} ({kind}, {self.count} neighbours) expected {self.expected}"


@dataclass(frozen=True)
class ExactResult:
    """Outcome of :func:`verify_exact`.

    Attributes:
        n_wrong: patterns (of ``n_patterns`` = 512) where the model disagrees with the rule.
        wrong: those patterns, as :class:`WrongPattern`, by index.
        method: ``"exhaustive"`` (a proof: the structure was read from the layers and every
            empirical check passed) or ``"evidence"`` (anything else).
        agreement: fraction of checked cells that agree (patterns × contexts for evidence).
        receptive_field: the bound read from the layers (``None`` if they could not be read).
        n_contexts: random contexts per pattern (1 for ``exhaustive``).
        note: a human-readable sentence on what was checked.
        checks: the empirical checks (:class:`gzoo.certify.Check`: locality, boards,
            determinism); a failed one makes the model not exact.
        structure: what :func:`gzoo.certify.read_structure` established, or why not.
    """

    n_wrong: int
    wrong: list[WrongPattern]
    method: str
    agreement: float
    receptive_field: int | None
    n_contexts: int = 1
    n_patterns: int = N_PATTERNS
    note: str = ""
    checks: tuple[Check, ...] = ()
    structure: str = ""

    @property
    def failures(self) -> list[Check]:
        """The empirical checks that failed."""
        return [c for c in self.checks if not c.passed]

    @property
    def exact(self) -> bool:
        """No wrong pattern and no failed check (a proof of exactness when
        ``method == "exhaustive"``)."""
        return self.n_wrong == 0 and not self.failures

    def wrong_classes(self) -> dict[tuple[int, int], int]:
        """Wrong patterns grouped by ``(state, count)``: ``{(0, 6): 28}`` = "never born on 6"."""
        return dict(sorted(Counter((w.state, w.count) for w in self.wrong).items()))

    def summary(self) -> str:
        """One line, e.g. ``exact: 0/512 patterns wrong (exhaustive)``, or what is wrong."""
        head = f"{self.n_wrong}/{self.n_patterns} patterns wrong ({self.method})"
        if self.exact:
            return ("exact: " if self.method == "exhaustive" else "no error found: ") + head
        names = ("dead", "alive")
        parts = [f"not exact: {head}"]
        if self.wrong:
            parts.append("by (state·count): " + ", ".join(
                f"{names[s]}·{n}: {k}" for (s, n), k in self.wrong_classes().items()))
        parts += [c.detail for c in self.failures]
        return "; ".join(parts)

    def certificate(self) -> dict[str, object]:
        """What a checkpoint records: the verdict, the method, what it covered, the checks and
        the gzoo version that made it."""
        return {
            "exact": self.exact,
            "method": self.method,
            "n_wrong": self.n_wrong,
            "covered": self.note,
            "structure": self.structure,
            "checks": [c.to_dict() for c in self.checks],
            "gzoo_version": __version__,
        }

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary (the wrong patterns by index)."""
        return {
            "exact": self.exact,
            "n_wrong": self.n_wrong,
            "n_patterns": self.n_patterns,
            "method": self.method,
            "agreement": self.agreement,
            "receptive_field": self.receptive_field,
            "n_contexts": self.n_contexts,
            "wrong": [w.index for w in self.wrong],
            "checks": [c.to_dict() for c in self.checks],
            "structure": self.structure,
        }


def pattern_counts(patterns: Tensor, neighbourhood: str) -> Tensor:
    """Live neighbours of the centre of each ``[N, 3, 3]`` pattern (int64 ``[N]``).

    On a 3×3 torus the centre's neighbours are exactly the pattern's other cells, so this is
    :func:`gzoo.ca.neighbour_counts` read at the centre.
    """
    return neighbour_counts(patterns, neighbourhood)[:, 1, 1].long()


@dataclass(frozen=True)
class PatternProbe:
    """The model's answers on all 512 patterns (see :func:`probe_patterns`).

    Attributes:
        p_alive: ``[512, n_contexts]`` softmax probability of "alive" at the pattern's centre
            (the model's device; ``n_contexts`` = 1 for ``exhaustive``).
        method: ``"exhaustive"`` or ``"contexts"``.
        n_contexts: contexts per pattern.
        receptive_field: the receptive field used, or ``None`` if unknown.
        note: what was probed, in words.
    """

    p_alive: Tensor
    method: str
    n_contexts: int
    receptive_field: int | None
    note: str

    @property
    def alive(self) -> Tensor:
        """The model's answers ``[512, n_contexts]`` (argmax of the logits) as bool."""
        return self.p_alive > 0.5


def probe_patterns(
    model: nn.Module,
    *,
    receptive_field: int | None = None,
    n_contexts: int = 64,
    seed: int = 0,
    batch_size: int = 4096,
    contexts: bool = False,
) -> PatternProbe:
    """Run ``model`` on all 512 3×3 patterns: alone on a 3×3 torus when its receptive field is
    at most 3 (and ``contexts`` is false), else at the centre of ``n_contexts`` random boards of
    side ``r + 2`` (module docstring). ``receptive_field`` defaults to the one the model
    declares: this sets where to probe, it proves nothing (:func:`verify_exact` decides what is
    a proof). Through :func:`gzoo.models.predict_logits`: eval mode (train/eval flags restored
    after), no gradients, the model's device and dtype."""
    rf = receptive_field if receptive_field is not None else getattr(
        model, "receptive_field", None)
    if rf is not None:
        rf = check_int("receptive_field", rf)
    device, _ = model_device_dtype(model)
    patterns = all_patterns(device)

    def p_alive(boards: Tensor, r: int, c: int) -> Tensor:
        """softmax probability of "alive" at cell (r, c): p = σ(z_alive − z_dead)."""
        logits = predict_logits(model, boards, batch_size=batch_size)[:, :, r, c]
        return torch.softmax(logits.double(), dim=1)[:, 1]

    if rf is not None and rf <= 3 and not contexts:
        probs = p_alive(patterns, 1, 1)[:, None]
        return PatternProbe(probs, "exhaustive", 1, rf, (
            f"all {N_PATTERNS} 3×3 neighbourhoods, each alone on a 3×3 torus"))
    n_contexts = check_int("n_contexts", n_contexts)
    side = (rf if rf is not None else 9) + 2
    side += 1 - side % 2  # odd, so the pattern sits at the centre
    c = side // 2
    g = torch.Generator().manual_seed(seed)
    density = torch.rand(n_contexts, 1, 1, generator=g)
    ctx = (torch.rand(n_contexts, side, side, generator=g) < density).to(torch.uint8)
    boards = ctx.to(device).repeat(N_PATTERNS, 1, 1)  # [512·n_contexts, side, side]
    boards[:, c - 1:c + 2, c - 1:c + 2] = patterns.repeat_interleave(n_contexts, 0)
    probs = p_alive(boards, c, c).view(N_PATTERNS, n_contexts)
    why = (f"receptive field {rf}" if rf is not None
           else "the model does not declare its receptive field")
    return PatternProbe(probs, "contexts", n_contexts, rf, (
        f"{why}: each of the {N_PATTERNS} neighbourhoods at the centre of "
        f"{n_contexts} random {side}×{side} boards"))


def verify_exact(
    model: nn.Module,
    rule: Rule | str,
    *,
    receptive_field: int | None = None,
    n_contexts: int = 64,
    seed: int = 0,
    batch_size: int = 4096,
    checks: bool = True,
) -> ExactResult:
    """Compare ``model`` with ``rule`` on all 512 3×3 neighbourhoods and certify what that
    means (module docstring).

    Args:
        model: maps one-hot ``[B, 2, H, W]`` to logits ``[B, 2, H, W]``.
        rule: a :class:`gzoo.ca.Rule` or rule string.
        receptive_field: the window side assumed for the random contexts of an evidence check
            (default: the bound read from the layers, else the one the model declares, else
            9); it never makes a proof.
        n_contexts: random boards per pattern for an evidence check.
        seed: seed of the random contexts and boards.
        batch_size: boards per forward pass.
        checks: run the empirical checks; ``False`` only counts wrong patterns (a progress
            check inside a training loop) and the result is then evidence, never a proof.

    The result is a proof (``method="exhaustive"``) only when :func:`gzoo.certify.read_structure`
    established a 3×3 receptive field on the torus from the layers *and* the empirical checks
    (locality, one step on random boards of several sizes, determinism) passed; anything else is
    ``method="evidence"``. A failed check makes the model not exact, with the reason in
    :meth:`ExactResult.summary`. The model is run in eval mode on its own device and dtype; its
    train/eval flags are restored afterwards.
    """
    rule = Rule.parse(rule)
    structure = read_structure(model)
    if receptive_field is not None:
        receptive_field = check_int("receptive_field", receptive_field)
    proof = structure.local3
    declared = getattr(model, "receptive_field", None)  # where to probe, never a proof
    if not isinstance(declared, int) or isinstance(declared, bool) or declared < 1:
        declared = None
    rf = 3 if proof else (receptive_field or structure.receptive_field or declared or 9)
    first = probe_patterns(model, receptive_field=rf, n_contexts=n_contexts, seed=seed,
                           batch_size=batch_size, contexts=not proof)
    pats = all_patterns()
    expected = step(pats, rule)[:, 1, 1]
    wrong_any = first.alive.cpu() != expected.bool()[:, None]
    bad = wrong_any.any(1)
    answers = (first.alive.cpu().double().mean(1) > 0.5).to(torch.uint8)
    done: tuple[Check, ...] = (
        locality_check(model, seed=seed),
        boards_check(model, answers, seed=seed, exact=not bool(bad.any())),
        determinism_check(model, seed=seed),
    ) if checks else ()
    proof = proof and checks and all(c.passed for c in done)
    counts = pattern_counts(pats, rule.neighbourhood)
    wrong = [
        WrongPattern(
            index=int(i),
            cells=tuple(tuple(int(v) for v in row) for row in pats[i].tolist()),
            state=int(pats[i, 1, 1]),
            count=int(counts[i]),
            expected=int(expected[i]),
        )
        for i in bad.nonzero().flatten().tolist()
    ]
    checked = "; ".join(c.detail for c in done if c.passed)
    if proof:
        note = (f"{first.note}; {structure.summary()}; {checked}: this decides every board of "
                "every size")
    else:
        why = (structure.summary() if not structure.local3 else "an empirical check failed"
               if checks else "the empirical checks were not run")
        note = f"evidence, not a proof ({why}): {first.note}" + (f"; {checked}" if checked else "")
    return ExactResult(
        n_wrong=len(wrong), wrong=wrong, method="exhaustive" if proof else "evidence",
        agreement=1.0 - wrong_any.double().mean().item(),
        receptive_field=structure.receptive_field, n_contexts=first.n_contexts, note=note,
        checks=done, structure=structure.summary(),
    )


def dataset_accuracy(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 256) -> float:
    """Fraction of cells where ``argmax model(x) == y`` (0/1 boards ``[N, H, W]``), through
    :func:`gzoo.models.predict_next` (eval mode, the model's device and dtype)."""
    if x.shape != y.shape or x.dim() != 3:
        raise ValueError(f"x and y must be [N, H, W] of equal shape, got {list(x.shape)}, "
                         f"{list(y.shape)}")
    pred = predict_next(model, x, batch_size=batch_size)
    correct = int((pred == y.to(pred.device)).sum())
    return correct / max(1, y.numel())


@dataclass(frozen=True)
class RolloutResult:
    """Outcome of :func:`rollout_agreement`: per initial density, the model's own rollout
    against the rule's.

    Attributes:
        densities: initial soup densities.
        agreement: per density, the fraction of cells that agree, averaged over the steps.
        final: per density, the agreement after the last step.
        first_divergence: per density, the first step at which any cell differs (``None`` if
            the rollouts agree throughout).
    """

    densities: list[float]
    steps: int
    size: int
    agreement: list[float]
    final: list[float]
    first_divergence: list[int | None] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.agreement) / max(1, len(self.agreement))

    @property
    def identical(self) -> bool:
        """The model's rollouts equal the rule's at every step for every density."""
        return all(d is None for d in self.first_divergence)

    def to_dict(self) -> dict[str, object]:
        return {
            "densities": self.densities, "steps": self.steps, "size": self.size,
            "agreement": self.agreement, "final": self.final,
            "first_divergence": self.first_divergence, "mean": self.mean,
            "identical": self.identical,
        }


def rollout_agreement(
    model: nn.Module,
    rule: Rule | str,
    size: int = 64,
    steps: int = 64,
    densities: tuple[float, ...] = (0.1, 0.3, 0.5),
    seed: int = 0,
) -> RolloutResult:
    """Run the model on its own predictions (``x_{t+1} = model.step(x_t)``) from random soups of
    each density and compare with the rule's trajectory, step by step."""
    g = torch.Generator().manual_seed(seed)
    soups = torch.stack([(torch.rand(size, size, generator=g) < d).to(torch.uint8)
                         for d in densities])
    net_history, rule_history = rollout_histories(model, rule, soups, steps)  # [steps+1, D, H, W]
    same = (net_history[1:] == rule_history[1:]).flatten(2).double().mean(2)  # [steps, D]
    agree = same.mean(0).tolist() if steps else [1.0] * len(densities)
    final = same[-1].tolist() if steps else [1.0] * len(densities)
    first: list[int | None] = []
    for col in (same < 1.0).T:
        bad = col.nonzero()
        first.append(int(bad[0]) + 1 if bad.numel() else None)
    return RolloutResult(
        densities=[float(d) for d in densities], steps=steps, size=size,
        agreement=agree, final=final, first_divergence=first,
    )


def rollout_histories(model: nn.Module, rule: Rule | str, board: Tensor,
                      steps: int) -> tuple[Tensor, Tensor]:
    """``(net_history, rule_history)``: the model's self-fed history and the rule's, both
    ``[steps + 1, ...]`` uint8 on the CPU, from the same ``[H, W]`` or ``[B, H, W]`` 0/1
    board(s): ``x_{t+1} = argmax model(x_t)`` (:func:`gzoo.models.predict_next`) against
    :func:`gzoo.ca.simulate`."""
    from gzoo.ca import as_uint8_boards, simulate

    rule = Rule.parse(rule)
    rule_history = simulate(as_uint8_boards(board, "board").cpu(), rule, steps)
    device, _ = model_device_dtype(model)
    x = rule_history[0].to(device)
    frames = [x.cpu()]
    for _ in range(steps):
        x = predict_next(model, x)
        frames.append(x.cpu())
    return torch.stack(frames), rule_history


def symmetry_floor(rule: Rule | str, group: str) -> int:
    """The fewest wrong 3×3 neighbourhoods any model invariant under ``group`` can have.

    A model built from ``group``'s layers with a 3×3 receptive field answers equally on every
    pattern of an orbit ``{L_g P}`` (for p8: the 45° ring rotations of the stencil). The best it
    can do on an orbit is the rule's majority answer there, so the floor is
    ``Σ_orbits min(#alive, #dead)``. It is 0 for every outer-totalistic Moore rule and every
    group here; von Neumann rules separate orthogonal from diagonal neighbours, which p8's ring
    rotation exchanges, so p8's floor is positive for them.
    """
    rule = Rule.parse(rule)
    expected = step(all_patterns(), rule)[:, 1, 1].long()
    orbit = orbit_labels(group)  # the smallest pattern index of each pattern's orbit
    alive = torch.zeros(N_PATTERNS, dtype=torch.long).index_add_(0, orbit, expected)
    size = torch.zeros(N_PATTERNS, dtype=torch.long).index_add_(0, orbit, torch.ones_like(orbit))
    return int(torch.minimum(alive, size - alive).sum())
