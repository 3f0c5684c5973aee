r"""Training many small networks at once on every 3×3 neighbourhood: the *patterns* recipe.

**Data.** A model whose answer at a cell is a function of that cell's 3×3 window on the torus
(established from its layers by :func:`gzoo.certify.read_structure`) is trained on the covering
torus of :mod:`gzoo.ca.covering`: one 24×32 board on which all 512 neighbourhoods occur, with
targets ``y = step(board, rule)``. Each cell is weighted so that every class of the rule's family
(:mod:`gzoo.ca.families`: 18 (state, count) classes for B/S rules, 10 for V rules, 102 Hensel
classes for isotropic ones, ...) weighs the same and the patterns inside a class weigh alike:

    w(cell) = 1 / (C · |class(p)| · m(p))       p = the cell's pattern, m(p) its count on the board

(``C`` classes; Σ w = 1). Rare classes (a live cell with 8 live neighbours is one pattern of
512) then count as much as common ones, which random soups never achieve.

**Loss** of net ``k``, with ``z`` its logits and ``d = (z_alive − z_dead)·(2y − 1)`` the signed
margin of a cell (``d > 0``: right):

    L_k = Σ_cells w · [ softplus(−d) + μ · relu(m − d) ] + λ Σ_{weights} |θ_k|

— the cross-entropy, a hinge that keeps pushing the patterns still inside the margin ``m`` (the
last wrong ones), and the notes' L1 term.

**Population.** ``K`` nets of the same architecture are stacked
(:func:`torch.func.stack_module_state`) and run as one batched model
(``vmap(functional_call)``): one forward and one backward per step train all of them. Each has
its own Adam moments and step count (:class:`SlotAdam`), so a net can be re-drawn alone.

**Restarts on plateaus.** A net whose count of wrong patterns has not fallen for ``patience``
steps, or which has trained ``steps`` steps, is re-drawn from fresh weights, while re-draws
remain. Draw ``d`` (``0, 1, ...`` in the order nets are drawn) uses seed ``seed + 1000·d``: the
initial weights of the old one-net attempts.

**Exactness.** A net whose margins are all positive answers every pattern right; it is rebuilt as
a plain model and :func:`gzoo.verify.verify_exact` must prove it exact (``exhaustive``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from gzoo.ca import Rule, get_family, step
from gzoo.ca.covering import covering_torus, pattern_multiplicity
from gzoo.ca.stencil import N_PATTERNS, pattern_index

__all__ = [
    "Outcome", "PatternData", "Population", "SlotAdam", "StepRecord", "pattern_loss",
    "train_population",
]


@dataclass(frozen=True)
class PatternData:
    """The covering torus as training data for one rule (module docstring).

    Attributes:
        x: one-hot board ``[1, 2, H, W]``.
        y: next states ``[H, W]`` (int64).
        weight: ``w(cell)`` ``[H, W]``, summing to 1.
        index: each cell's pattern ``[H, W]`` (int64).
        family: the family whose classes are balanced.
    """

    x: Tensor
    y: Tensor
    weight: Tensor
    index: Tensor
    family: str

    @classmethod
    def build(cls, rule: Rule | str, *, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32, family: str | None = None) -> PatternData:
        """The data of ``rule``, balanced over the classes of ``family`` (default: the
        rule's own; ``"map"``: every pattern alike, i.e. no class balance)."""
        from gzoo.models import boards_to_onehot

        rule = Rule.parse(rule)
        board = covering_torus()
        fam = get_family(rule.family if family is None else family)
        index = pattern_index(board).long()
        per_pattern = 1.0 / (fam.n_classes * fam.class_sizes()[fam.classes].double()
                             * pattern_multiplicity(board).double())  # w = 1/(C·|class|·m)
        return cls(
            x=boards_to_onehot(board[None], dtype).to(device),
            y=step(board, rule).long().to(device),
            weight=per_pattern[index].to(dtype=dtype, device=device),
            index=index.to(device),
            family=fam.name,
        )

    def wrong_patterns(self, margins: Tensor) -> Tensor:
        """Which patterns each net has wrong (bool ``[K, 512]``) from the margins ``d``
        ``[K, H, W]``: a pattern is wrong when it is wrong in any of its cells."""
        k = margins.shape[0]
        wrong = torch.zeros(k, N_PATTERNS, dtype=torch.int64, device=margins.device)
        wrong.index_put_((torch.arange(k, device=margins.device)[:, None],
                          self.index.flatten()[None].expand(k, -1)),
                         (margins <= 0).flatten(1).long(), accumulate=True)
        return wrong > 0


def pattern_loss(logits: Tensor, y: Tensor, weight: Tensor, *, margin: float, hinge: float
                 ) -> tuple[Tensor, Tensor]:
    """Per-net loss without the L1 term, and the margins: logits ``[K, 2, H, W]``, targets and
    weights ``[K, H, W]`` → ``(L [K], d [K, H, W])`` with
    ``L_k = Σ w·[softplus(−d) + μ·relu(m − d)]`` (module docstring)."""
    d = (logits[:, 1] - logits[:, 0]) * (2 * y - 1).to(logits.dtype)  # > 0 when right
    per_cell = F.softplus(-d)  # two-class cross-entropy
    if hinge:
        per_cell = per_cell + hinge * F.relu(margin - d)
    return (per_cell * weight).flatten(1).sum(1), d


class Population:
    """``n`` nets of one architecture as one batched model (module docstring).

    ``build()`` makes one net (weights from the current torch seed); :meth:`draw` puts fresh
    weights from ``build()`` under a seed into one slot; :meth:`net` rebuilds a slot as a plain
    model.
    """

    def __init__(self, build: Callable[[], nn.Module], seeds: list[int],
                 device: torch.device | str = "cpu") -> None:
        self.build = build
        self.device = torch.device(device)
        nets = [self._fresh(s) for s in seeds]
        params, buffers = stack_module_state(nets)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.weight_names = [k for k in self.params if "weight" in k]  # the L1 term's
        base = build().to("meta")
        self._keys = set(base.state_dict())  # persistent entries only

        def one(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(base, (p, b), (x,))

        self._forward = vmap(one, in_dims=(0, 0, None))

    def _fresh(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return self.build().to(self.device).train()

    def __call__(self, x: Tensor, slots: Tensor | None = None) -> Tensor:
        """Logits of every net, ``[K, B, 2, H, W]``, or of the nets in ``slots`` only (a long
        tensor of slot indices; nets without buffers, whose state is all parameters)."""
        if slots is None:
            return self._forward(self.params, self.buffers, x)
        if self.buffers:
            raise ValueError("a population of nets with buffers runs every slot")
        params = {k: v.index_select(0, slots) for k, v in self.params.items()}
        return self._forward(params, self.buffers, x)

    def l1(self) -> Tensor:
        """``Σ |w|`` over each net's weights (names containing ``"weight"``): ``[K]``."""
        return torch.stack([self.params[n].abs().flatten(1).sum(1)
                            for n in self.weight_names]).sum(0)

    def draw(self, slot: int, seed: int) -> None:
        """Fresh weights (``build()`` under ``seed``) into ``slot``."""
        state = self._fresh(seed).state_dict()
        with torch.no_grad():
            for name, p in self.params.items():
                p[slot] = state[name]

    def state(self, slot: int) -> dict[str, Tensor]:
        """The state dict of ``slot`` (parameters and buffers), detached copies."""
        both = self.params | self.buffers
        return {k: v[slot].detach().clone() for k, v in both.items() if k in self._keys}

    def net(self, slot: int) -> nn.Module:
        """``slot`` as a plain model (eval mode)."""
        model = self.build().to(self.device)
        model.load_state_dict(self.state(slot))
        return model.eval()


class SlotAdam:
    """Adam (Kingma & Ba) on stacked parameters ``[K, ...]`` with one step count per slot:

        m ← β₁m + (1−β₁)g,   v ← β₂v + (1−β₂)g²,   θ ← θ − lr · m̂ / (√v̂ + ε)

    with ``m̂ = m/(1−β₁^t_k)``, ``v̂ = v/(1−β₂^t_k)`` for slot ``k``'s own ``t_k``; :meth:`reset`
    zeroes one slot's moments and count (a re-drawn net starts afresh)."""

    def __init__(self, params: dict[str, Tensor], lr: float, betas: tuple[float, float] = (
            0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        k = next(iter(params.values())).shape[0]
        self.t = torch.zeros(k, dtype=torch.float64)
        self.m = {n: torch.zeros_like(p) for n, p in params.items()}
        self.v = {n: torch.zeros_like(p) for n, p in params.items()}

    @torch.no_grad()
    def step(self, grads: dict[str, Tensor]) -> None:
        b1, b2 = self.betas
        self.t += 1
        c1 = (1 - b1 ** self.t).float()
        c2 = (1 - b2 ** self.t).float()
        for name, p in self.params.items():
            g = grads[name]
            shape = (-1,) + (1,) * (p.dim() - 1)
            m, v = self.m[name], self.v[name]
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / c2.to(p.device).view(shape)).sqrt_().add_(self.eps)
            p.addcdiv_(m / c1.to(p.device).view(shape), denom, value=-self.lr)

    def reset(self, slot: int) -> None:
        self.t[slot] = 0
        for name in self.params:
            self.m[name][slot] = 0
            self.v[name][slot] = 0


@dataclass(frozen=True)
class StepRecord:
    """One training step: a line of ``metrics.jsonl`` (both recipes of :mod:`gzoo.train`).

    ``restart`` is the attempt or drawn net (0 for the first), ``step`` counts within it from
    1, ``global_step`` over the whole run, ``time`` the seconds since training started. At the
    exactness checks ``acc`` (held-out accuracy; patterns: the fraction of the 512 patterns
    right), ``n_wrong`` (wrong 3×3 neighbourhoods, ``None`` when the check was skipped) and
    ``exact`` are set; elsewhere they are ``None`` and left out of the JSON line. A population
    run records each step through its *leading* net: the one with the fewest wrong patterns at
    the last check (then the lowest loss).
    """

    restart: int
    seed: int
    step: int
    global_step: int
    loss: float
    ce: float
    l1: float
    time: float
    acc: float | None = None
    n_wrong: int | None = None
    exact: bool | None = None

    @property
    def checked(self) -> bool:
        """Whether this step ran an exactness check."""
        return self.acc is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.checked:
            for key in ("acc", "n_wrong", "exact"):
                del d[key]
        return d


@dataclass(frozen=True)
class Outcome:
    """The end of one job: its exact net, or the best one seen at a check.

    ``steps`` counts the population steps while the job was in flight, ``draws`` the nets
    drawn for it, ``seconds`` and ``cpu_seconds`` the wall and process CPU time it was in
    flight (shared with the other jobs in flight), ``hard`` per pattern the checks at which
    the job's leading net had it wrong (``[512]``: what made the rule hard).
    """

    job: int
    exact: bool
    draw: int
    seed: int
    steps_run: int
    n_wrong: int
    state: dict[str, Tensor] = field(repr=False)
    steps: int
    draws: int
    seconds: float
    cpu_seconds: float
    hard: Tensor = field(repr=False)


def _record(draw: list[int], seeds: list[int], losses: Tensor, l1s: Tensor, l1: float,
            began: float, k: int, step: int, global_step: int, wrong: int | None,
            exact: bool) -> StepRecord:
    """Net ``k``'s step as a :class:`StepRecord`; ``acc``/``n_wrong``/``exact`` only when
    ``wrong`` is known (at checks)."""
    return StepRecord(
        restart=draw[k], seed=seeds[k], step=step, global_step=global_step,
        loss=float(losses[k] + l1 * l1s[k]), ce=float(losses[k]), l1=float(l1s[k]),
        time=round(time.perf_counter() - began, 4),
        acc=None if wrong is None else 1.0 - wrong / N_PATTERNS,
        n_wrong=wrong, exact=None if wrong is None else exact)


@dataclass
class _Job:
    """A rule in flight: its slots, the draws made for it, the best net seen."""

    index: int
    slots: list[int]
    started: int
    drawn: int = 0
    best: tuple[int, int, int, int, dict[str, Tensor]] | None = None  # n_wrong, draw, seed, run
    clock: tuple[float, float] = field(default_factory=lambda: (time.perf_counter(),
                                                                time.process_time()))
    hard: Tensor = field(default_factory=lambda: torch.zeros(N_PATTERNS, dtype=torch.int64))

    def outcome(self, exact: bool, draw: int, seed: int, run: int, n_wrong: int,
                state: dict[str, Tensor], t: int) -> Outcome:
        wall, cpu = self.clock
        return Outcome(self.index, exact, draw, seed, run, n_wrong, state, t - self.started,
                       self.drawn, time.perf_counter() - wall, time.process_time() - cpu,
                       self.hard)


def train_population(
    build: Callable[[], nn.Module],
    jobs: Sequence[PatternData],
    *,
    population: int,
    steps: int,
    restarts: int,
    patience: int,
    seed: int,
    lr: float,
    l1: float,
    margin: float,
    hinge: float,
    check_every: int,
    verify: Callable[[int, nn.Module], bool],
    in_flight: int = 1,
    device: torch.device | str = "cpu",
    on_tick: Callable[[int, StepRecord], None] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
    shard: tuple[int, int] = (0, 1),
    all_reduce: Callable[[list[Tensor]], None] | None = None,
    stop_on_non_finite: bool = False,
) -> list[Outcome]:
    """Train nets for each job (a rule's :class:`PatternData`) until one is proved exact or
    its draws run out (module docstring); ``in_flight`` jobs at once share one batched model
    of ``population · in_flight`` nets, and a finished job's nets pass to the next job.

    Args:
        build: makes one net (fresh weights from the torch seed).
        jobs: one :meth:`PatternData.build` per rule.
        population, steps, restarts, patience, seed: nets per job; the most steps one draw
            trains; re-draws allowed per job; steps without fewer wrong patterns before a net
            is re-drawn; draw ``d`` of every job starts from seed ``seed + 1000·d``.
        lr, l1, margin, hinge: Adam's learning rate, ``λ``, ``m`` and ``μ``.
        check_every: steps between the wrong-pattern counts that drive the plateaus.
        verify: ``(job, net) → bool``, whether a net right on every cell is proved exact.
        in_flight: jobs trained at once.
        on_tick: called after every step with each job and its :class:`StepRecord`
            (``time``: seconds since this call began).
        on_done: called with each job's :class:`Outcome` as soon as it ends.
        shard, all_reduce: ``(rank, world)`` and a gradient all-reduce (sum) under DDP: each rank
            takes the loss of the cells ``i ≡ rank (mod world)``, so the summed gradient is the
            whole board's on every rank.
        stop_on_non_finite: a net whose loss is NaN or ±inf raises :class:`FloatingPointError`
            at once (``gzoo train``); otherwise that net is re-drawn like one on a plateau.

    Returns the :class:`Outcome` of every job, in the order of ``jobs``.
    """
    if not jobs:
        return []
    flight = min(in_flight, len(jobs))
    n = population * flight
    pop = Population(build, [seed + 1000 * (k % population) for k in range(n)], device)
    opt = SlotAdam(pop.params, lr)
    rank, world = shard
    board = jobs[0]
    cells = torch.arange(board.weight.numel(), device=board.weight.device)
    mine = (cells.view_as(board.weight) % world == rank).to(board.weight.dtype)
    # slot state
    job_of: list[_Job | None] = [None] * n
    draw, seeds, run, best, since, retry = ([0] * n for _ in range(6))
    done = [False] * n
    n_wrong = [N_PATTERNS + 1] * n
    outcomes: dict[int, Outcome] = {}
    queue = list(range(len(jobs)))[::-1]
    y = torch.empty((n, *board.y.shape), dtype=board.y.dtype, device=board.y.device)
    w = torch.empty((n, *board.weight.shape), dtype=board.weight.dtype,
                    device=board.weight.device)

    def new_draw(k: int, job: _Job, fresh: bool = True) -> None:
        """Slot ``k`` gets job's next draw (seed + 1000·d), fresh weights and Adam state."""
        d = job.drawn
        job.drawn += 1
        draw[k], seeds[k] = d, seed + 1000 * d
        if fresh:
            pop.draw(k, seeds[k])
        opt.reset(k)
        run[k] = since[k] = retry[k] = 0
        best[k] = n_wrong[k] = N_PATTERNS + 1
        done[k] = False

    def start(slots: list[int], t: int, fresh: bool = True) -> None:
        if not queue:
            for k in slots:
                job_of[k], done[k] = None, True
            return
        job = _Job(queue.pop(), slots, t)
        for k in slots:
            job_of[k] = job
            y[k], w[k] = jobs[job.index].y, jobs[job.index].weight * mine
            new_draw(k, job, fresh)

    def finish(job: _Job, outcome: Outcome) -> None:
        outcomes[job.index] = outcome
        if on_done is not None:
            on_done(outcome)
        for k in job.slots:
            job_of[k] = None

    for f in range(flight):  # the first draws are the population's initial weights
        start(list(range(f * population, (f + 1) * population)), 0, fresh=False)
    t, began = 0, time.perf_counter()
    while any(j is not None for j in job_of):
        t += 1
        live = [k for k, j in enumerate(job_of) if j is not None]
        if len(live) < n and not pop.buffers:  # the queue is empty: idle slots cost nothing
            idx = torch.tensor(live, device=y.device)
            loss_a, d_a = pattern_loss(pop(board.x, idx)[:, 0], y[idx], w[idx], margin=margin,
                                       hinge=hinge)
            loss_k = loss_a.new_zeros(n).index_copy(0, idx, loss_a)
            d = d_a.new_full((n, *d_a.shape[1:]), -1.0).index_copy(0, idx, d_a)  # idle: wrong
        else:
            loss_k, d = pattern_loss(pop(board.x)[:, 0], y, w, margin=margin, hinge=hinge)
        l1_k = pop.l1()
        total = (loss_k + (l1 if rank == 0 else 0.0) * l1_k).sum()  # + λ Σ|θ_k|
        losses, l1s = loss_k.detach(), l1_k.detach()
        d = d.detach()
        record = functools.partial(_record, draw, seeds, losses, l1s, l1, began)

        finished: list[_Job] = []
        for k in (d.flatten(1).amin(1) > 0).nonzero().flatten().tolist():  # right everywhere
            job = job_of[k]
            if job is None or job in finished or t < retry[k]:
                continue
            if verify(job.index, pop.net(k)):
                if on_tick is not None:  # proved before this step's update: run[k] steps
                    on_tick(job.index, record(k, run[k], t - job.started, 0, True))
                finish(job, job.outcome(True, draw[k], seeds[k], run[k], 0, pop.state(k), t))
                finished.append(job)
            else:
                retry[k] = t + check_every
        checked = t % check_every == 0 or any(  # and the last step of every draw
            run[k] + 1 >= steps for k, j in enumerate(job_of) if j is not None)
        if checked:
            wrong = board.wrong_patterns(d)  # [K, 512]
            n_wrong = wrong.sum(1).tolist()
            for k, job in enumerate(job_of):
                if job is not None and (job.best is None or n_wrong[k] < job.best[0]):
                    job.best = (n_wrong[k], draw[k], seeds[k], run[k] + 1, pop.state(k))
        ticks = []
        for job in {id(j): j for j in job_of if j is not None}.values():
            lead = min(job.slots, key=lambda k: (n_wrong[k], float(losses[k])))
            if checked:
                job.hard += wrong[lead].cpu()
            if on_tick is not None:
                ticks.append((job.index, record(lead, run[lead] + 1, t - job.started,
                                                 n_wrong[lead] if checked else None, False)))
        grads = torch.autograd.grad(total, list(pop.params.values()))
        if all_reduce is not None:
            all_reduce(list(grads))
        finite = torch.isfinite(losses + l1 * l1s).tolist()  # L_k = loss_k + λ Σ|θ_k|
        if stop_on_non_finite and not all(finite):
            k = finite.index(False)
            raise FloatingPointError(
                f"training diverged: the loss is {float(losses[k] + l1 * l1s[k])} at step "
                f"{run[k] + 1} of net {draw[k] + 1} (seed {seeds[k]}; pattern loss "
                f"{float(losses[k])}, L1 term {float(l1s[k])})")
        opt.step(dict(zip(pop.params, grads, strict=True)))
        for k, job in enumerate(job_of):
            run[k] += 1
            if job is None:
                continue
            if checked:
                if n_wrong[k] < best[k]:
                    best[k], since[k] = n_wrong[k], 0
                else:
                    since[k] += check_every
            ended = run[k] >= steps or not finite[k]  # out of steps, or diverged
            if done[k] or not (ended or since[k] >= patience):
                continue
            if job.drawn < population + restarts:  # a re-draw is left
                new_draw(k, job)
            elif ended:
                done[k] = True
        for job in {id(j): j for j in job_of if j is not None}.values():
            if all(done[k] for k in job.slots):  # out of draws and steps: the best one seen
                assert job.best is not None  # the last step of a draw is always checked
                nw, dr, sd, r, state = job.best
                finish(job, job.outcome(False, dr, sd, r, nw, state, t))
                finished.append(job)
        for job_index, rec in ticks:
            if on_tick is not None:
                on_tick(job_index, rec)
        for job in finished:
            start(job.slots, t)
    return [outcomes[i] for i in range(len(jobs))]
