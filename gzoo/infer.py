r"""Reading a rule back out of a trained network or out of raw data, and its symmetry.

Every rule reads the 3×3 block, and the rule families (:mod:`gzoo.ca.families`) are partitions
of its 512 patterns into classes on which a rule of the family answers alike: von Neumann
outer-totalistic (10 classes), Moore outer-totalistic (18), isotropic / Hensel (102), rotations
only (140), MAP (512). Inference returns the rule in the smallest family that explains what it
sees, and says so — or says why there is none.

**From a network** (:func:`infer_rule`). The network is probed on every 3×3 pattern
(:func:`gzoo.verify.probe_patterns`; for a receptive field larger than 3×3, at the centre of many
random contexts). Its answers are a 512-entry table; the family is the first, in the order above,
whose classes the answers respect (each class answered uniformly), and the answers per class are
the rule. There is no rule when the answers depend on the context around the 3×3 block (they
differ between contexts) or change between two identical runs (a stochastic network). The margin
of a class is the network's probability for its decision, minimum and mean over the class's
patterns. The inferred rule is then tested at once (the notes' 即时测试): simulated beside the
network from fresh random soups, step by step.

**From data** (:func:`infer_rule_from_data`). Transitions ``x_t → x_{t+1}`` are tallied per
3×3 pattern, then per class of each family. Under a rule with label noise (each next state
flipped with probability p), the best rule of a family takes the majority answer per class, and
its likelihood is

    log L = e·log p̂ + (N − e)·log(1 − p̂),    p̂ = e / N,

with ``e`` the minority (unexplained) transitions out of ``N``. The family is chosen by BIC,
``−2 log L + k log N`` with ``k`` = observed classes + 1 (10, 18, 102, 140 or 512 free
decisions at most). A family is *contradicted* when some pattern disagrees with its class's
majority answer significantly more often than ``max_noise`` explains (one-sided binomial test at
level ``1e-3`` over the 512 patterns, Bonferroni): then either the rule is not of that family
(tlife's ``2i`` neighbourhoods inside Life's class S2) or the next state is not a function of
the 3×3 block at all. Contradicted families are never chosen. There is no rule when
every family is contradicted (time-reversed or shuffled histories), when the estimated noise
exceeds ``max_noise`` (coin flips), or when a class is unseen or not decided with posterior
confidence ``min_confidence`` (reported as unknown, never guessed).

**Symmetry** (:func:`infer_symmetry`). For each symmetry of the square (and the 45° ring rotation
of the stencil) the observed patterns are compared with their images: the evidence is the
fraction of compared pairs whose confident answers differ. The dynamics respect the largest
subgroup whose elements all show none; the model family follows from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from gzoo.ca import FAMILIES, Rule, as_uint8_boards, get_family, pattern_index
from gzoo.ca.families import Family
from gzoo.ca.rule import SYMMETRY_SUBGROUPS, RuleSymmetry
from gzoo.ca.stencil import N_PATTERNS, pattern_images
from gzoo.verify import (
    RolloutResult,
    pattern_counts,
    probe_patterns,
    rollout_agreement,
)

__all__ = [
    "ClassDecision",
    "ClassSupport",
    "DataInference",
    "NetworkInference",
    "SymmetryInference",
    "infer_rule",
    "infer_rule_from_data",
    "infer_symmetry",
    "pattern_counts",
]

#: ``infer_rule``'s neighbourhood names, accepted as family names
_ALIASES = {"moore": "outer_totalistic", "von_neumann": "von_neumann"}


def _resolve_family(name: str) -> str | None:
    """``"auto"`` → ``None``; a family name or a neighbourhood alias → the family name."""
    if name == "auto":
        return None
    if name in _ALIASES:
        return _ALIASES[name]
    if name in FAMILIES:
        return name
    raise ValueError(f"family must be 'auto', one of {list(FAMILIES)} or a neighbourhood "
                     f"{list(_ALIASES)}, got {name!r}")


def _hood_of(family: str) -> str:
    return "von_neumann" if family == "von_neumann" else "moore"


# ---------------------------------------------------------------------- from a network
@dataclass(frozen=True)
class ClassDecision:
    """The network's answer on one class of a family.

    ``decision`` is 0/1 when every pattern of the class agrees, ``None`` when they split;
    ``frac_alive`` is the fraction of the class's patterns answered "alive"; ``margin_min`` and
    ``margin_mean`` the network's probability for its per-pattern decision; ``context_agreement``
    the fraction of random contexts agreeing with each pattern's majority (1.0 when exhaustive).
    ``state`` and ``count`` are the class's centre and live-neighbour count.
    """

    name: str
    state: int
    count: int
    n_patterns: int
    decision: int | None
    frac_alive: float
    margin_min: float
    margin_mean: float
    context_agreement: float


@dataclass
class NetworkInference:
    """Outcome of :func:`infer_rule`.

    Attributes:
        rule: the inferred rule, or ``None`` (see ``reason``).
        family: the family the rule is read in (the first that fits, or the one asked for).
        consistent: whether every class of ``family`` is answered uniformly.
        classes: per class of that family, the network's answer.
        misfit: per family, the patterns its best rule gets wrong (0 = it fits).
        method: ``"exhaustive"`` (receptive field ≤ 3) or ``"contexts"``.
        answers: the network's majority answer on each of the 512 patterns (uint8).
        check: the inferred rule simulated beside the network (``None`` if not run).
        reason: why there is no rule (``None`` when there is one).
    """

    rule: Rule | None
    family: str
    consistent: bool
    classes: list[ClassDecision]
    misfit: dict[str, int]
    method: str
    n_contexts: int
    answers: Tensor
    check: RolloutResult | None = None
    reason: str | None = None

    @property
    def neighbourhood(self) -> str:
        """``"von_neumann"`` for a von Neumann rule, else ``"moore"``."""
        return _hood_of(self.family)

    @property
    def disagreeing(self) -> list[ClassDecision]:
        """Classes whose patterns get different answers."""
        return [c for c in self.classes if c.decision is None]

    def count_response(self) -> Tensor:
        """Fraction of patterns answered alive per (state, live-neighbour count) of the family's
        neighbourhood: ``float64 [2, max_count + 1]`` (a coarse view for every family)."""
        counts = pattern_counts_for(self.neighbourhood)
        states = torch.arange(N_PATTERNS) >> 4 & 1
        width = int(counts.max()) + 1
        key = states * width + counts
        alive = torch.zeros(2 * width, dtype=torch.float64).index_add_(
            0, key, self.answers.double())
        total = torch.bincount(key, minlength=2 * width).double()
        return (alive / total).view(2, width)

    def class_table(self) -> str:
        """The class table with margins, one row per class."""
        rows = [f"{'class':>9} {'patterns':>8} {'answer':>7} {'alive':>6} {'margin min':>10} "
                f"{'mean':>6} {'contexts':>8}"]
        for c in self.classes:
            ans = "split" if c.decision is None else ("alive" if c.decision else "dead")
            rows.append(f"{c.name:>9} {c.n_patterns:>8} {ans:>7} {c.frac_alive:>6.2f} "
                        f"{c.margin_min:>10.4f} {c.margin_mean:>6.4f} {c.context_agreement:>8.3f}")
        return "\n".join(rows)

    def summary(self) -> str:
        unexplained = ", ".join(f"{f}: {n}" for f, n in self.misfit.items())
        if self.rule is not None:
            head = (f"rule {self.rule} ({get_family(self.family).label}, {self.method}; "
                    f"patterns unexplained per family: {unexplained})")
        else:
            head = f"no rule: {self.reason}"
        if self.check is not None:
            head += (f"\ncheck: inferred rule beside the network for {self.check.steps} steps "
                     f"on {self.check.size}×{self.check.size} soups: mean agreement "
                     f"{self.check.mean:.6f}, identical: {self.check.identical}")
        return head

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": None if self.rule is None else str(self.rule),
            "family": self.family,
            "consistent": self.consistent,
            "neighbourhood": self.neighbourhood,
            "misfit": self.misfit,
            "method": self.method,
            "reason": self.reason,
            "classes": [dict(c.__dict__) for c in self.classes],
            "check": None if self.check is None else self.check.to_dict(),
        }


def pattern_counts_for(neighbourhood: str) -> Tensor:
    """Live neighbours of the centre of each of the 512 patterns (int64 ``[512]``)."""
    from gzoo.ca import all_patterns

    return pattern_counts(all_patterns(), neighbourhood)


def _network_classes(fam: Family, p_alive: Tensor) -> tuple[list[ClassDecision], int]:
    """Per-class decisions of probed patterns (``p_alive [512, contexts]``) and the number of
    patterns the family's best rule cannot explain."""
    votes = p_alive > 0.5  # [N, contexts]
    majority = votes.double().mean(1) > 0.5  # per pattern
    agree = torch.where(majority[:, None], votes, ~votes).double().mean(1)
    margin = torch.where(votes, p_alive, 1 - p_alive).double()
    states, counts = fam.class_state_count()
    classes, misfit = [], 0
    for c in range(fam.n_classes):
        sel = fam.classes == c
        k = int(sel.sum())
        alive = int(majority[sel].sum())
        decision = 1 if alive == k else 0 if alive == 0 else None
        misfit += min(alive, k - alive)
        classes.append(ClassDecision(
            name=fam.class_names[c], state=int(states[c]), count=int(counts[c]), n_patterns=k,
            decision=decision, frac_alive=alive / k, margin_min=float(margin[sel].min()),
            margin_mean=float(margin[sel].mean()), context_agreement=float(agree[sel].mean()),
        ))
    return classes, misfit


def infer_rule(
    model: nn.Module,
    family: str = "auto",
    *,
    n_contexts: int = 64,
    seed: int = 0,
    check: bool = True,
    check_size: int = 64,
    check_steps: int = 64,
    check_densities: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7),
) -> NetworkInference:
    """Infer the rule a network computes, and test it at once (module docstring).

    Args:
        model: maps one-hot ``[B, 2, H, W]`` boards to logits ``[B, 2, H, W]``.
        family: ``"auto"`` (the first family that fits), a family name, or a neighbourhood:
            ``"moore"`` (= ``"outer_totalistic"``) or ``"von_neumann"``.
        n_contexts, seed: random contexts per pattern when the receptive field exceeds 3×3.
        check: simulate the inferred rule beside the network (``check_*`` set the boards).
    """
    wanted = _resolve_family(family)
    probe = probe_patterns(model, n_contexts=n_contexts, seed=seed)
    p_alive = probe.p_alive.cpu()
    votes = p_alive > 0.5
    table = (votes.double().mean(1) > 0.5).to(torch.uint8)
    reason = None
    if probe.n_contexts > 1 and bool((votes != votes[:, :1]).any()):
        bad = int((votes != votes[:, :1]).any(1).sum())
        reason = (f"the answer on {bad} of the 512 neighbourhoods depends on cells outside the "
                  f"3×3 block (it differs between the {probe.n_contexts} random contexts)")
    else:
        again = probe_patterns(model, n_contexts=n_contexts, seed=seed).p_alive.cpu() > 0.5
        if not torch.equal(again, votes):
            bad = int((again != votes).any(1).sum())
            reason = (f"the answers change between two identical runs on {bad} of the 512 "
                      "neighbourhoods (a stochastic network computes no rule)")
    decided = {f: _network_classes(get_family(f), p_alive) for f in FAMILIES}  # (classes, misfit)
    misfit = {f: decided[f][1] for f in FAMILIES}
    if wanted is None:
        chosen = next((f for f in ("outer_totalistic", *FAMILIES) if misfit[f] == 0), "map")
    else:
        chosen = wanted
    classes = decided[chosen][0]
    consistent = misfit[chosen] == 0
    if reason is None and not consistent:
        split = ", ".join(c.name for c in classes if c.decision is None)
        reason = (f"the network is not {get_family(chosen).label}: {misfit[chosen]} "
                  f"neighbourhoods disagree with its best rule (split classes: {split}); "
                  f"it is {Rule.from_table(table).family}")
    rule = Rule.from_table(table) if reason is None else None
    result = NetworkInference(
        rule=rule, family=chosen, consistent=consistent, classes=classes, misfit=misfit,
        method=probe.method, n_contexts=probe.n_contexts, answers=table, reason=reason,
    )
    if check and rule is not None:
        result.check = rollout_agreement(
            model, rule, size=check_size, steps=check_steps, densities=check_densities,
            seed=seed + 1,
        )
    return result


# ---------------------------------------------------------------------- from data
@dataclass(frozen=True)
class ClassSupport:
    """Transitions seen for one class: ``n_dead``/``n_alive`` next states out of ``support``.

    ``decision`` is the majority answer (``None`` if unseen, tied or below the confidence asked
    for), ``confidence`` the posterior probability that it is right under the estimated noise
    rate, and ``conflicting`` whether the class's minority fraction is significantly above the
    noise the caller accepts (then the next state is not a function of the neighbourhood).
    """

    name: str
    state: int
    count: int
    n_dead: int
    n_alive: int
    decision: int | None
    confidence: float
    conflicting: bool = False

    @property
    def support(self) -> int:
        return self.n_dead + self.n_alive


@dataclass
class DataInference:
    """Outcome of :func:`infer_rule_from_data`.

    Attributes:
        rule: the rule, or ``None`` (see ``reason``).
        family: the family chosen by BIC among those the data do not contradict (the finest,
            ``"map"``, when every family is contradicted).
        classes: per class of that family, its support and decision.
        unknown: names of classes the data cannot decide (``"S7"``: alive with 7 neighbours).
        conflicting: names of classes whose transitions contradict any rule of the family.
        noise: estimated flip rate p̂ of the family (unexplained transitions / all).
        fits: per family, ``{"unexplained", "log_likelihood", "bic", "classes_seen",
            "conflicting"}``.
        n_transitions: cell transitions counted.
        reason: why there is no rule (``None`` when there is one).
    """

    rule: Rule | None
    family: str
    classes: list[ClassSupport]
    unknown: list[str]
    conflicting: list[str]
    noise: float
    fits: dict[str, dict[str, float]]
    n_transitions: int
    reason: str | None = None

    @property
    def neighbourhood(self) -> str:
        """``"von_neumann"`` for a von Neumann family, else ``"moore"``."""
        return _hood_of(self.family)

    def _decided(self, state: int) -> frozenset[int]:
        if self.family not in ("outer_totalistic", "von_neumann"):
            raise ValueError(f"birth/survival counts exist for outer-totalistic families only; "
                             f"this inference is {self.family}")
        return frozenset(c.count for c in self.classes if c.state == state and c.decision == 1)

    @property
    def birth(self) -> frozenset[int]:
        """Birth counts the data decide (unknown classes left out; outer-totalistic only)."""
        return self._decided(0)

    @property
    def survival(self) -> frozenset[int]:
        """Survival counts the data decide (outer-totalistic only)."""
        return self._decided(1)

    def completion(self) -> Rule:
        """The rule with every undecided class set to dead (for display; not an inference)."""
        fam = get_family(self.family)
        return Rule.from_table(fam.table([c.decision or 0 for c in self.classes]))

    def summary(self) -> str:
        label = get_family(self.family).label
        if self.rule is not None:
            head = f"rule {self.rule} ({label})"
        elif self.unknown and not self.conflicting and self.noise <= 0.5:
            head = (f"no rule: {self.reason}; with the unknown classes dead it would be "
                    f"{self.completion()} ({label})")
        else:
            head = f"no rule: {self.reason}"
        bics = ", ".join(f"{f} BIC {v['bic']:.1f}" for f, v in self.fits.items())
        return (f"{head}; noise p̂ = {self.noise:.4f}; {bics}; "
                f"{self.n_transitions} transitions")

    def class_table(self) -> str:
        """The class table with support and confidence, one row per class."""
        rows = [f"{'class':>9} {'support':>9} {'dead':>8} {'alive':>8} {'answer':>7} "
                f"{'confidence':>10}"]
        for c in self.classes:
            ans = ("conflict" if c.conflicting else "?" if c.decision is None
                   else "alive" if c.decision else "dead")
            rows.append(f"{c.name:>9} {c.support:>9} {c.n_dead:>8} {c.n_alive:>8} {ans:>7} "
                        f"{c.confidence:>10.4f}")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": None if self.rule is None else str(self.rule),
            "family": self.family, "neighbourhood": self.neighbourhood,
            "unknown": self.unknown, "conflicting": self.conflicting, "reason": self.reason,
            "noise": self.noise, "fits": self.fits, "n_transitions": self.n_transitions,
            "classes": [c.__dict__ | {"support": c.support} for c in self.classes],
        }


def _as_history(history: object) -> Tensor:
    """``[T+1, B, H, W]`` uint8 from a tensor or array ``[T+1, H, W]``/``[T+1, B, H, W]``."""
    if isinstance(history, np.ndarray):
        history = torch.from_numpy(np.ascontiguousarray(history))
    if not isinstance(history, Tensor):
        raise TypeError(
            f"history must be a torch.Tensor or numpy array [T+1, H, W] or [T+1, B, H, W], "
            f"got {type(history).__name__}"
        )
    if history.dim() not in (3, 4) or history.shape[0] < 2:
        raise ValueError(
            "history must have shape [T+1, H, W] or [T+1, B, H, W] with T ≥ 1, "
            f"got shape {list(history.shape)}"
        )
    h = history if history.dim() == 4 else history.unsqueeze(1)
    return as_uint8_boards(h.flatten(0, 1), "history").view(h.shape)


def _pattern_tallies(h: Tensor) -> Tensor:
    """``[512, 2]`` int64: how often each pattern at time t was followed by dead / alive."""
    x, y = h[:-1].flatten(0, 1), h[1:].flatten(0, 1)
    key = pattern_index(x) * 2 + y.to(torch.int64)
    return torch.bincount(key.flatten(), minlength=2 * N_PATTERNS).view(N_PATTERNS, 2).cpu()


def _log_lik(errors: int, total: int) -> float:
    if errors == 0 or errors == total:
        return 0.0
    p = errors / total
    return errors * math.log(p) + (total - errors) * math.log1p(-p)


def _confidence(k_major: int, k_minor: int, p: float) -> float:
    """P(majority answer is the rule's | counts), flips i.i.d. with probability p < 1/2."""
    if k_major == k_minor:
        return 0.5
    if p <= 0.0:
        return 1.0
    p = min(p, 0.5 - 1e-9)
    # odds = ((1-p)/p)^(k_major - k_minor)
    log_odds = (k_major - k_minor) * (math.log1p(-p) - math.log(p))
    return 1.0 / (1.0 + math.exp(-log_odds)) if log_odds < 700 else 1.0


def _tail_above(minor: Tensor, n: Tensor, p: float) -> Tensor:
    """One-sided binomial p-values ``P(Bin(n, p) ≥ minor)`` per class (float64)."""
    from scipy.stats import binom

    return torch.from_numpy(binom.sf(minor.numpy() - 1, n.numpy(), p))


def infer_rule_from_data(
    history: object, *, max_noise: float = 0.25, min_confidence: float = 0.99,
    family: str = "auto",
) -> DataInference:
    """Infer the rule behind a simulation history, e.g. seagull's ``get_history()``.

    ``history`` is ``[T+1, H, W]`` or ``[T+1, B, H, W]`` (0/1, torus boundary). ``max_noise``
    is the largest flip rate accepted as noise, ``min_confidence`` the posterior probability a
    class's answer needs, ``family`` restricts the choice (``"auto"``: by BIC). See the module
    docstring for the likelihood model, the BIC choice and when there is no rule.
    """
    if not 0.0 <= float(max_noise) < 0.5:
        raise ValueError(f"max_noise must be in [0, 0.5), got {max_noise!r}")
    if not 0.5 <= float(min_confidence) <= 1.0:
        raise ValueError(f"min_confidence must be in [0.5, 1], got {min_confidence!r}")
    wanted = _resolve_family(family)
    h = _as_history(history)
    tallies = _pattern_tallies(h)
    total = int(tallies.sum())
    fits: dict[str, dict[str, float]] = {}
    per_family: dict[str, tuple[Tensor, Tensor]] = {}
    for name in FAMILIES:
        fam = get_family(name)
        t = torch.zeros(fam.n_classes, 2, dtype=torch.int64).index_add_(0, fam.classes, tallies)
        minor, n = t.min(1).values, t.sum(1)
        errors = int(minor.sum())
        seen = int((n > 0).sum())
        # a pattern contradicts the family when it disagrees with its class's majority answer
        # significantly more often than max_noise explains; its class is then conflicting
        majority = (t[:, 1] > t[:, 0]).long()[fam.classes]  # per pattern
        against = tallies.gather(1, (1 - majority)[:, None]).squeeze(1)
        bad = _tail_above(against, tallies.sum(1), max_noise) < 1e-3 / N_PATTERNS
        conflict = torch.zeros(fam.n_classes, dtype=torch.bool).index_put_(
            (fam.classes[bad],), torch.tensor(True))
        per_family[name] = (t, conflict)
        ll = _log_lik(errors, total)
        fits[name] = {
            "unexplained": errors, "log_likelihood": ll, "classes_seen": seen,
            "bic": -2 * ll + (seen + 1) * math.log(total),
            "conflicting": int(conflict.sum()),
        }
    candidates = [wanted] if wanted is not None else list(FAMILIES)
    clean = [f for f in candidates if fits[f]["conflicting"] == 0]
    chosen = min(clean or candidates[-1:], key=lambda f: (fits[f]["bic"], FAMILIES.index(f)))
    fam = get_family(chosen)
    t, conflict = per_family[chosen]
    noise = fits[chosen]["unexplained"] / total
    states, counts = fam.class_state_count()
    classes, unknown, conflicting = [], [], []
    for c in range(fam.n_classes):
        dead, alive = int(t[c, 0]), int(t[c, 1])
        confidence = 0.0 if dead == alive == 0 else _confidence(max(dead, alive),
                                                                 min(dead, alive), noise)
        decision = None if dead == alive or confidence < min_confidence else int(alive > dead)
        name = fam.class_names[c]
        if bool(conflict[c]):
            conflicting.append(name)
            decision = None
        elif decision is None:
            unknown.append(name)
        classes.append(ClassSupport(
            name=name, state=int(states[c]), count=int(counts[c]), n_dead=dead, n_alive=alive,
            decision=decision, confidence=confidence, conflicting=bool(conflict[c]),
        ))
    reason = None
    if conflicting:
        worst = sorted(((c.support and min(c.n_dead, c.n_alive) / c.support, c) for c in classes
                        if c.conflicting), key=lambda wc: -wc[0])[:5]
        shown = ", ".join(f"{c.name} ({100 * w:.0f} % of {c.support} disagree)"
                          for w, c in worst)
        which = "every family is" if wanted is None else f"the {fam.label} family is"
        reason = (f"{which} contradicted by the data (no noise rate ≤ {max_noise:g} explains "
                  f"them): under {fam.label}, {len(conflicting)} classes hold neighbourhoods "
                  f"that disagree with their class, e.g. {shown}")
    elif noise > max_noise:
        reason = (f"the best {fam.label} rule leaves {100 * noise:.1f} % of transitions "
                  f"unexplained, more than max_noise = {max_noise:g}: the data show no rule")
    elif unknown:
        reason = (f"{len(unknown)} classes are unseen or undecided at confidence "
                  f"{min_confidence:g}: {', '.join(unknown[:12])}"
                  + (" ..." if len(unknown) > 12 else ""))
    rule = None
    if reason is None:
        rule = Rule.from_table(fam.table([c.decision for c in classes]))  # type: ignore[misc]
    return DataInference(
        rule=rule, family=chosen, classes=classes, unknown=unknown, conflicting=conflicting,
        noise=noise, fits=fits, n_transitions=total, reason=reason,
    )


# ---------------------------------------------------------------------- symmetry
_ELEMENT_NAMES = ("e", "r (90°)", "r² (180°)", "r³ (270°)", "f (|)", "rf (\\)", "r²f (—)",
                  "r³f (/)")


@dataclass
class SymmetryInference:
    """Outcome of :func:`infer_symmetry`.

    Attributes:
        disagreement: per symmetry of the square (``gzoo.groups.D4`` order, names in
            :attr:`names`) and for ``"ring 45°"``: the fraction of compared pattern pairs
            (a pattern and its image, both answered confidently) whose answers differ.
        compared: the number of pattern pairs compared per element.
        symmetry: the largest subgroup of the square's symmetries with no disagreement, its
            name, and whether the ring rotation shows none either.
        recommended: the model family for the dynamics: ``"p8"``, ``"p4m"``, ``"p4"`` or
            ``"plain CNN"``.
        source: ``"data"`` or ``"model"``.
    """

    disagreement: dict[str, float]
    compared: dict[str, int]
    symmetry: RuleSymmetry
    recommended: str
    source: str
    names: tuple[str, ...] = field(default=_ELEMENT_NAMES)

    def table(self) -> str:
        rows = [f"{'element':>12} {'compared':>9} {'disagree':>9}"]
        for name, frac in self.disagreement.items():
            rows.append(f"{name:>12} {self.compared[name]:>9} {100 * frac:>8.2f}%")
        return "\n".join(rows)

    def summary(self) -> str:
        ring = "and the 45° ring rotation" if self.symmetry.ring else "but not the 45° ring"
        return (f"symmetry {self.symmetry.name} {ring} (from {self.source}); recommended "
                f"model: {self.recommended}")

    def to_dict(self) -> dict[str, object]:
        return {"disagreement": self.disagreement, "compared": self.compared,
                "group": self.symmetry.name, "elements": list(self.symmetry.elements),
                "ring": self.symmetry.ring, "recommended": self.recommended,
                "source": self.source}


def _recommend(sym: RuleSymmetry) -> str:
    if sym.ring and "p4m" in sym.groups:
        return "p8"
    if "p4m" in sym.groups:
        return "p4m"
    if "p4" in sym.groups:
        return "p4"
    return "plain CNN"


def infer_symmetry(source: object, *, min_confidence: float = 0.99,
                   tolerance: float = 0.0) -> SymmetryInference:
    """The largest symmetry group the dynamics respect, with the evidence per element.

    ``source`` is a history (as :func:`infer_rule_from_data` takes) or a network (probed on all
    512 patterns as :func:`infer_rule` does). An element is respected when at most
    ``tolerance`` of the compared pairs disagree.
    """
    if isinstance(source, nn.Module):
        answer = infer_rule(source, check=False).answers.long()
        confident = torch.ones(N_PATTERNS, dtype=torch.bool)
        origin = "model"
    else:
        tallies = _pattern_tallies(_as_history(source))
        dead, alive = tallies[:, 0], tallies[:, 1]
        total = int(tallies.sum())
        noise = int(tallies.min(1).values.sum()) / max(1, total)
        conf = torch.tensor([_confidence(max(int(d), int(a)), min(int(d), int(a)), noise)
                             for d, a in zip(dead, alive, strict=True)])
        answer = (alive > dead).long()
        confident = (conf >= min_confidence) & (dead != alive)
        origin = "data"
    images = {name: pattern_images("p4m")[g] for g, name in enumerate(_ELEMENT_NAMES)}
    images["ring 45°"] = pattern_images("p8")[1]
    disagreement: dict[str, float] = {}
    compared: dict[str, int] = {}
    for name, img in images.items():
        both = confident & confident[img]
        n = int(both.sum())
        compared[name] = n
        differ = answer[both] != answer[img][both]
        disagreement[name] = float(differ.double().mean()) if n else 0.0
    ok = {g for g, name in enumerate(_ELEMENT_NAMES) if disagreement[name] <= tolerance}
    best = max((els for els in SYMMETRY_SUBGROUPS if set(els) <= ok), key=len)
    sym = RuleSymmetry(best, SYMMETRY_SUBGROUPS[best], disagreement["ring 45°"] <= tolerance)
    return SymmetryInference(disagreement, compared, sym, _recommend(sym), origin)
