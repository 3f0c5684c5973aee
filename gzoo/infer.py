r"""Reading a Life-like rule back out of a trained network, or out of raw data.

**From a network** (:func:`infer_rule`). The network is probed on every 3×3 neighbourhood (the
512 patterns of :func:`gzoo.verify.all_patterns`; each von Neumann pattern appears 16 times, once
per setting of the four corners). Each pattern belongs to a class ``(state, count)`` for each
neighbourhood — Moore counts all 8 neighbours, von Neumann only the 4 orthogonal ones. The network
is *outer-totalistic* under a neighbourhood when every pattern of a class gets the same answer;
then the answers per class are the rule:

    B = {n : network(dead, n) = alive},    S = {n : network(alive, n) = alive}.

A network consistent with neither neighbourhood is reported as such (which classes split, and how
many patterns each neighbourhood fails to explain) instead of being forced into a rule. The margin
of a class is the network's probability for its decision, minimum and mean over the class's
patterns. For a receptive field larger than 3×3 each pattern is probed at the centre of many random
contexts, and the fraction of contexts that agree with the pattern's majority answer is reported.

The inferred rule is then tested at once (the notes' 即时测试): simulated beside the network from
fresh random soups, step by step.

**From data** (:func:`infer_rule_from_data`). Transitions ``x_t → x_{t+1}`` are tallied per class
for both neighbourhoods. Under a rule with label noise (each next state flipped with probability
p), the best rule for a neighbourhood takes the majority answer per class, and its likelihood is

    log L = e·log p̂ + (N − e)·log(1 − p̂),    p̂ = e / N,

with ``e`` the minority (unexplained) transitions out of ``N``. The neighbourhood is chosen by BIC,
``−2 log L + k log N`` with ``k`` = observed classes + 1, which replaces the notes' hand-set
thresholds. Classes the data never shows are reported as unknown, never guessed; each known class
gets its support and the posterior probability that its majority answer is right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from gzoo.ca import Neighbourhood, Rule, as_uint8_boards, neighbour_counts
from gzoo.verify import (
    RolloutResult,
    all_patterns,
    pattern_counts,
    probe_patterns,
    rollout_agreement,
)

__all__ = [
    "ClassDecision",
    "ClassSupport",
    "DataInference",
    "NetworkInference",
    "infer_rule",
    "infer_rule_from_data",
    "pattern_counts",
]

HOODS: tuple[Neighbourhood, ...] = ("moore", "von_neumann")
_MAX = {"moore": 8, "von_neumann": 4}


def _class_name(state: int, count: int) -> str:
    return f"{'B' if state == 0 else 'S'}{count}"


# ---------------------------------------------------------------------- from a network
@dataclass(frozen=True)
class ClassDecision:
    """The network's answer on one class ``(state, count)`` of neighbourhoods.

    ``decision`` is 0/1 when every pattern of the class agrees, ``None`` when they split;
    ``frac_alive`` is the fraction of the class's patterns answered "alive"; ``margin_min`` and
    ``margin_mean`` the network's probability for its per-pattern decision; ``context_agreement``
    the fraction of random contexts agreeing with each pattern's majority (1.0 when exhaustive).
    """

    state: int
    count: int
    n_patterns: int
    decision: int | None
    frac_alive: float
    margin_min: float
    margin_mean: float
    context_agreement: float

    @property
    def name(self) -> str:
        return _class_name(self.state, self.count)


@dataclass
class NetworkInference:
    """Outcome of :func:`infer_rule`.

    Attributes:
        rule: the inferred rule, or ``None`` when the network is not outer-totalistic.
        consistent: whether every class of ``neighbourhood`` is answered uniformly.
        neighbourhood: the neighbourhood that fits (the better one when neither does).
        classes: per ``(state, count)`` class of that neighbourhood, the network's answer.
        misfit: per neighbourhood, the patterns its best rule gets wrong (0 = it fits).
        method: ``"exhaustive"`` (receptive field ≤ 3) or ``"contexts"``.
        check: the inferred rule simulated beside the network (``None`` if not run).
    """

    rule: Rule | None
    consistent: bool
    neighbourhood: str
    classes: list[ClassDecision]
    misfit: dict[str, int]
    method: str
    n_contexts: int
    check: RolloutResult | None = None

    @property
    def disagreeing(self) -> list[ClassDecision]:
        """Classes whose patterns get different answers."""
        return [c for c in self.classes if c.decision is None]

    def table(self) -> str:
        """The class table with margins, one row per class."""
        rows = [f"{'class':>6} {'patterns':>8} {'answer':>7} {'alive':>6} {'margin min':>10} "
                f"{'mean':>6} {'contexts':>8}"]
        for c in self.classes:
            ans = "split" if c.decision is None else ("alive" if c.decision else "dead")
            rows.append(f"{c.name:>6} {c.n_patterns:>8} {ans:>7} {c.frac_alive:>6.2f} "
                        f"{c.margin_min:>10.4f} {c.margin_mean:>6.4f} {c.context_agreement:>8.3f}")
        return "\n".join(rows)

    def summary(self) -> str:
        unexplained = ", ".join(f"{h}: {n} patterns unexplained" for h, n in self.misfit.items())
        if self.rule is not None:
            head = f"rule {self.rule} ({self.neighbourhood}, {self.method}; {unexplained})"
        else:
            split = ", ".join(c.name for c in self.disagreeing)
            head = (f"not outer-totalistic: no neighbourhood fits ({unexplained}); under "
                    f"{self.neighbourhood} the classes {split} split")
        if self.check is not None:
            head += (f"\ncheck: inferred rule beside the network for {self.check.steps} steps "
                     f"on {self.check.size}×{self.check.size} soups: mean agreement "
                     f"{self.check.mean:.6f}, identical: {self.check.identical}")
        return head

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": None if self.rule is None else str(self.rule),
            "consistent": self.consistent,
            "neighbourhood": self.neighbourhood,
            "misfit": self.misfit,
            "method": self.method,
            "classes": [c.__dict__ | {"name": c.name} for c in self.classes],
            "check": None if self.check is None else self.check.to_dict(),
        }


def _network_classes(
    patterns: Tensor, p_alive: Tensor, neighbourhood: str
) -> tuple[list[ClassDecision], int]:
    """Per-class decisions of probed patterns, and the patterns the best rule cannot explain."""
    counts = pattern_counts(patterns, neighbourhood)
    states = patterns[:, 1, 1].long()
    votes = p_alive > 0.5  # [N, contexts]
    majority = votes.double().mean(1) > 0.5  # per pattern
    agree = torch.where(majority[:, None], votes, ~votes).double().mean(1)
    margin = torch.where(votes, p_alive, 1 - p_alive).double()
    classes, misfit = [], 0
    for s in (0, 1):
        for n in range(_MAX[neighbourhood] + 1):
            sel = (states == s) & (counts == n)
            k = int(sel.sum())
            alive = int(majority[sel].sum())
            decision = 1 if alive == k else 0 if alive == 0 else None
            misfit += min(alive, k - alive)
            classes.append(ClassDecision(
                state=s, count=n, n_patterns=k, decision=decision,
                frac_alive=alive / k, margin_min=float(margin[sel].min()),
                margin_mean=float(margin[sel].mean()),
                context_agreement=float(agree[sel].mean()),
            ))
    return classes, misfit


def infer_rule(
    model: nn.Module,
    neighbourhood: str = "auto",
    *,
    n_contexts: int = 64,
    seed: int = 0,
    check: bool = True,
    check_size: int = 64,
    check_steps: int = 64,
    check_densities: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7),
) -> NetworkInference:
    """Infer the B/S rule a network computes, and test it at once (module docstring).

    Args:
        model: maps one-hot ``[B, 2, H, W]`` boards to logits ``[B, 2, H, W]``.
        neighbourhood: ``"moore"``, ``"von_neumann"`` or ``"auto"`` (the one that fits; Moore
            when both do, which happens only when the answer ignores the neighbours).
        n_contexts, seed: random contexts per pattern when the receptive field exceeds 3×3.
        check: simulate the inferred rule beside the network (``check_*`` set the boards).
    """
    if neighbourhood not in (*HOODS, "auto"):
        raise ValueError(
            f"neighbourhood must be 'moore', 'von_neumann' or 'auto', got {neighbourhood!r}"
        )
    probe = probe_patterns(model, n_contexts=n_contexts, seed=seed)
    patterns = all_patterns()
    p_alive = probe.p_alive.cpu()
    decided = {h: _network_classes(patterns, p_alive, h) for h in HOODS}  # (classes, misfit)
    misfit: dict[str, int] = {h: decided[h][1] for h in HOODS}
    if neighbourhood == "auto":
        perfect = [h for h in HOODS if misfit[h] == 0]
        hood = perfect[0] if perfect else min(HOODS, key=lambda h: misfit[h])
    else:
        hood = HOODS[HOODS.index(neighbourhood)]  # the same name, as a Neighbourhood
    classes = decided[hood][0]
    consistent = misfit[hood] == 0
    rule = None
    if consistent:
        rule = Rule(
            frozenset(c.count for c in classes if c.state == 0 and c.decision == 1),
            frozenset(c.count for c in classes if c.state == 1 and c.decision == 1),
            hood,
        )
    result = NetworkInference(
        rule=rule, consistent=consistent, neighbourhood=hood, classes=classes,
        misfit=misfit, method=probe.method, n_contexts=probe.n_contexts,
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

    ``decision`` is the majority answer (``None`` if unseen or tied) and ``confidence`` the
    posterior probability that it is right under the estimated noise rate.
    """

    state: int
    count: int
    n_dead: int
    n_alive: int
    decision: int | None
    confidence: float

    @property
    def support(self) -> int:
        return self.n_dead + self.n_alive

    @property
    def name(self) -> str:
        return _class_name(self.state, self.count)


@dataclass
class DataInference:
    """Outcome of :func:`infer_rule_from_data`.

    Attributes:
        rule: the rule, or ``None`` when some class is unknown (never seen, or tied).
        neighbourhood: the neighbourhood chosen by BIC.
        classes: per ``(state, count)`` class, its support and decision.
        unknown: names of classes the data cannot decide (``"S7"``: alive with 7 neighbours).
        noise: estimated flip rate p̂ (unexplained transitions / all transitions).
        fits: per neighbourhood, ``{"unexplained", "log_likelihood", "bic", "classes_seen"}``.
        n_transitions: cell transitions counted.
    """

    rule: Rule | None
    neighbourhood: str
    classes: list[ClassSupport]
    unknown: list[str]
    noise: float
    fits: dict[str, dict[str, float]]
    n_transitions: int

    @property
    def birth(self) -> frozenset[int]:
        """Birth counts the data decides (unknown classes left out)."""
        return frozenset(c.count for c in self.classes if c.state == 0 and c.decision == 1)

    @property
    def survival(self) -> frozenset[int]:
        return frozenset(c.count for c in self.classes if c.state == 1 and c.decision == 1)

    def summary(self) -> str:
        v = "V" if self.neighbourhood == "von_neumann" else ""
        known = (f"B{''.join(map(str, sorted(self.birth)))}/"
                 f"S{''.join(map(str, sorted(self.survival)))}{v}")
        head = f"rule {self.rule}" if self.rule is not None else (
            f"partial rule {known}; unknown classes: {', '.join(self.unknown)}")
        bics = ", ".join(f"{h} BIC {f['bic']:.1f}" for h, f in self.fits.items())
        return (f"{head} ({self.neighbourhood}; noise p̂ = {self.noise:.4f}; {bics}; "
                f"{self.n_transitions} transitions)")

    def table(self) -> str:
        rows = [f"{'class':>6} {'support':>9} {'dead':>8} {'alive':>8} {'answer':>7} "
                f"{'confidence':>10}"]
        for c in self.classes:
            ans = "?" if c.decision is None else ("alive" if c.decision else "dead")
            rows.append(f"{c.name:>6} {c.support:>9} {c.n_dead:>8} {c.n_alive:>8} {ans:>7} "
                        f"{c.confidence:>10.4f}")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": None if self.rule is None else str(self.rule),
            "neighbourhood": self.neighbourhood, "unknown": self.unknown,
            "noise": self.noise, "fits": self.fits, "n_transitions": self.n_transitions,
            "classes": [c.__dict__ | {"name": c.name, "support": c.support}
                        for c in self.classes],
        }


def _as_history(history: object) -> Tensor:
    """``[T+1, H, W]`` or ``[T+1, B, H, W]`` 0/1 frames (tensor or numpy) as uint8
    ``[T+1, B, H, W]``; the values are checked by :func:`gzoo.ca.as_uint8_boards`."""
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
    frames = history if history.dim() == 4 else history.unsqueeze(1)
    return as_uint8_boards(frames.flatten(0, 1), "history").view(frames.shape)


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


def infer_rule_from_data(history: object) -> DataInference:
    """Infer the rule behind a simulation history, e.g. seagull's ``get_history()``.

    ``history`` is ``[T+1, H, W]`` or ``[T+1, B, H, W]`` (0/1, torus boundary). See the module
    docstring for the likelihood model and the BIC choice of neighbourhood.
    """
    h = _as_history(history)
    x = h[:-1].flatten(0, 1)  # boards at t
    y = h[1:].flatten(0, 1)  # boards at t + 1
    state = x.to(torch.long).flatten()
    after = y.to(torch.long).flatten()
    total = state.numel()
    tallies: dict[str, Tensor] = {}
    fits: dict[str, dict[str, float]] = {}
    for hood in HOODS:
        m = _MAX[hood]
        counts = neighbour_counts(x, hood).to(torch.long).flatten()
        key = (state * (m + 1) + counts) * 2 + after
        t = torch.bincount(key, minlength=2 * (m + 1) * 2).view(2, m + 1, 2)
        tallies[hood] = t
        errors = int(t.min(-1).values.sum())
        seen = int((t.sum(-1) > 0).sum())
        ll = _log_lik(errors, total)
        fits[hood] = {
            "unexplained": errors, "log_likelihood": ll, "classes_seen": seen,
            "bic": -2 * ll + (seen + 1) * math.log(total),
        }
    hood = min(HOODS, key=lambda k: (fits[k]["bic"], _MAX[k]))
    t = tallies[hood]
    noise = fits[hood]["unexplained"] / total
    classes, unknown = [], []
    for s in (0, 1):
        for n in range(_MAX[hood] + 1):
            dead, alive = int(t[s, n, 0]), int(t[s, n, 1])
            decision = None if dead == alive else int(alive > dead)
            if decision is None:
                unknown.append(_class_name(s, n))
            classes.append(ClassSupport(
                state=s, count=n, n_dead=dead, n_alive=alive, decision=decision,
                confidence=0.0 if dead == alive == 0 else _confidence(
                    max(dead, alive), min(dead, alive), noise),
            ))
    rule = None
    if not unknown:
        rule = Rule(
            frozenset(c.count for c in classes if c.state == 0 and c.decision == 1),
            frozenset(c.count for c in classes if c.state == 1 and c.decision == 1),
            hood,
        )
    return DataInference(
        rule=rule, neighbourhood=hood, classes=classes, unknown=unknown, noise=noise,
        fits=fits, n_transitions=total,
    )
