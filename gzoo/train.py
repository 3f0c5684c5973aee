r"""Training a model to reproduce a rule exactly.

Two recipes, chosen by the data (``TrainConfig.data``; ``"auto"`` picks by the model's
receptive field as :func:`gzoo.certify.read_structure` reads it from the layers):

**patterns** — for a model whose answer at a cell is a function of its 3×3 window on the torus
(the GCNNs): all 512 neighbourhoods on one covering torus, the cross-entropy class-balanced over
the rule's family plus a hinge on the margin, ``population`` nets trained at once as one batched
model, each re-drawn from a new seed when it stops improving (``patience``) or runs out of
``steps``, up to ``restarts`` re-draws; training stops as soon as a net is *proved* exact
(:mod:`gzoo.population` has the equations).

**soups** — for a model that sees more than 3×3 (the notes' plain CNNs): random soups and
evolved states (:func:`gzoo.ca.make_dataset`), minibatches of ``batch_size`` boards,

    L(θ) = CE(f_θ(x), y) + λ Σ_{w ∈ θ, "weight" in name(w)} |w|₁        λ = ``l1`` (1e-5)

minimised with Adam. Every ``check_every`` steps the model is tested on a held-out data set and
with :func:`gzoo.verify.verify_exact`; training stops as soon as it is *exact* (no wrong 3×3
neighbourhood and 100 % held-out accuracy). If an attempt is not exact after ``steps`` steps, up
to ``restarts`` new attempts start from fresh weights with seed ``seed + 1000·attempt`` (small
nets sometimes settle in a Life-like minimum that never learns, e.g., birth on 6; a new seed
gets out of it). The best attempt is kept.

Determinism: for a given config the data, the initial weights and the batch order depend only on
the seeds, so a single-process CPU run is reproducible bit for bit on the same CPU model with the
same number of torch threads (``threads``; intra-op parallelism and the CPU's vector units change
the order and rounding of floating-point sums). Elsewhere what carries over is exactness.

Divergence: a loss that is NaN or ±inf (a learning rate or L1 weight far too large) stops the run
at once with a ``FloatingPointError`` naming the step; nothing is saved.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised (``gloo``
on CPU, ``nccl`` on CUDA). Soups: the model is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`, every rank draws the same global batch and
keeps its shard ``batch[rank::world_size]`` (so the global batch is the same for every world
size). Patterns: every rank takes the loss of its shard of the board's cells and the gradients
are summed over ranks. Rank 0 makes the exactness decision and broadcasts it so that all ranks
stop together, and only rank 0 writes files.

Files (rank 0, when ``out`` is given): every check on ``out`` runs before any work
(:func:`gzoo.checkpoint.check_output`: an existing folder is replaced only with ``overwrite``,
and only if it is a gzoo checkpoint), and rank 0 holds the lock on ``out`` for the whole run
(:func:`gzoo.checkpoint.output_lock`), so a second training into the same folder is refused at
once. ``metrics.jsonl`` (one JSON record per step) grows in a hidden staging folder
``.<out>.partial-*`` beside ``out``; at the end the checkpoint folder ``out`` is written (see
:mod:`gzoo.checkpoint`) with ``metrics.jsonl`` and ``training_curve.png`` beside the weights.
The staging folder is removed however the run ends.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo._checks import check_device, check_float, check_int
from gzoo._progress import Progress
from gzoo._system import cpu_model
from gzoo.ca import Rule, make_dataset
from gzoo.certify import read_structure
from gzoo.checkpoint import CheckpointError, check_output, output_lock, save_checkpoint
from gzoo.models import (
    BACKENDS,
    PRESETS,
    CAModel,
    boards_to_onehot,
    build_model,
    check_model_arguments,
    preset_name,
    preset_of,
    resolve_model,
)
from gzoo.population import PatternData, StepRecord, train_population
from gzoo.verify import (
    ExactResult,
    RolloutResult,
    dataset_accuracy,
    rollout_agreement,
    verify_exact,
)

__all__ = [
    "DATA",
    "MAX_POPULATION",
    "MODEL_OPTIONS",
    "Attempt",
    "StepRecord",
    "TrainConfig",
    "TrainResult",
    "cli_flag",
    "l1_penalty",
    "train",
    "weights_digest",
]


def _option(help: str, *, always: bool = False) -> dict[str, Any]:
    """Metadata of a :class:`TrainConfig` field that is a ``gzoo train`` option: its help text,
    and whether a recorded command states it even at its default (``always``)."""
    return {"cli_help": help, "cli_always": always}


def cli_flag(name: str) -> str:
    """The command-line flag of a field or model argument: ``check_every`` → ``--check-every``."""
    return "--" + name.replace("_", "-")


#: The largest seed (``torch.Generator.manual_seed`` takes 64 bits).
MAX_SEED = 2**64 - 1

#: Model arguments that ``gzoo train`` sets: name → (type, help, choices). Their defaults are
#: the model's own (see :mod:`gzoo.models`).
MODEL_OPTIONS: dict[str, tuple[type, str, tuple[str, ...] | None]] = {
    "width": (int, "fields (GCNN) or channels (tiny, small) per hidden layer", None),
    "depth": (int, "1×1 (group) convolutions after the first layer", None),
    "backend": (str, "the GCNN's layers", BACKENDS),
}


#: The training data (``TrainConfig.data``): ``auto`` picks ``patterns`` for a model whose layers
#: give a 3×3 receptive field on the torus, else ``soups``.
DATA = ("auto", "patterns", "soups")
#: The most nets one patterns run trains at once (its batched model holds them all).
MAX_POPULATION = 1024


@dataclass
class TrainConfig:
    """The training recipe; JSON-serialisable (:meth:`to_dict`), stored in checkpoints. The one
    home of the training defaults: ``gzoo train``'s options, help texts and fallbacks are the
    fields that carry an option's metadata (:meth:`cli_fields`).

    Model: ``model`` is a preset name (``p4``, ``p4m``, ``p8``, ``tiny``, ``small``,
    ``multiscale``) or a class name, ``model_kwargs`` its arguments (``width``, ``depth``, ...).

    Recipe (module docstring): ``data`` is ``auto``, ``patterns`` or ``soups``. Patterns:
    ``population`` nets at once, each re-drawn after ``patience`` steps without fewer wrong
    patterns or after ``steps`` steps, ``restarts`` re-draws in all; hinge weight ``hinge`` on
    the margin ``margin``. Soups: attempts of ``steps`` steps, ``restarts`` extra attempts,
    ``batch_size`` boards per step (the global batch under DDP). Both: Adam with learning rate
    ``lr``, L1 weight ``l1``, ``seed`` (net or attempt ``a`` starts from seed ``seed + 1000·a``),
    progress checked every ``check_every`` steps.

    Soups data (:func:`gzoo.ca.make_dataset`): ``n_boards`` soups of ``board_size``² cells,
    ``pairs_per_board`` pairs each, soup ``density`` range, ``burn_in``, flip ``noise``, seed
    ``data_seed`` (``None``: the same as ``seed``). The held-out set is ``holdout_boards`` soups
    of the same recipe with seed ``data_seed + 1``.

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (it must exist when training
    starts); ``threads``: torch's CPU threads while training (``None``: leave torch's setting).
    """

    rule: str = field(default="B36/S23", metadata=_option(
        "the rule in B/S notation, e.g. B3/S23 or B13/S012V", always=True))
    model: str = field(default="p8", metadata=_option(
        f"{', '.join(PRESETS)} (presets: GCNN of that group or the notes' plain CNNs), "
        "or a model class name", always=True))
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = field(default="auto", metadata=_option(
        "training data: patterns (all 512 neighbourhoods, classes balanced; for a model whose "
        "layers give a 3×3 receptive field on the torus), soups (random boards), or auto "
        "(patterns where the model allows it)", always=True))
    steps: int = field(default=2000, metadata=_option(
        "steps per net (patterns) or per attempt (soups)", always=True))
    population: int = field(default=4, metadata=_option(
        "nets trained at once as one batched model (patterns)"))
    patience: int = field(default=400, metadata=_option(
        "steps without fewer wrong patterns before a net is replaced by a fresh one (patterns)"))
    margin: float = field(default=1.0, metadata=_option(
        "logit margin the hinge term asks of every pattern (patterns)"))
    hinge: float = field(default=1.0, metadata=_option(
        "weight of the hinge term (patterns; 0: none)"))
    batch_size: int = field(default=16, metadata=_option(
        "boards per step (soups; global under DDP)"))
    lr: float = field(default=1e-2, metadata=_option("Adam learning rate"))
    l1: float = field(default=1e-5, metadata=_option("weight of the L1 term"))
    seed: int = field(default=0, metadata=_option(
        "seed of the weights and batches; net or attempt a starts from seed + 1000·a",
        always=True))
    restarts: int = field(default=16, metadata=_option(
        "fresh nets (patterns) or extra attempts (soups) with new seeds when not exact",
        always=True))
    check_every: int = field(default=50, metadata=_option("steps between exactness checks"))
    data_seed: int | None = field(default=None, metadata=_option(
        "seed of the training data (default: the seed)"))
    n_boards: int = 256
    board_size: int = 32
    pairs_per_board: int = 2
    density: tuple[float, float] = (0.05, 0.95)
    burn_in: int = 16
    noise: float = 0.0
    holdout_boards: int = 64
    device: str = field(default="cpu", metadata=_option(
        "cpu, cuda, cuda:N or auto", always=True))
    threads: int | None = field(default=None, metadata=_option(
        "torch CPU threads (default: torch's choice); the same weights bit for bit need the "
        "same count on the same CPU model"))

    def __post_init__(self) -> None:
        self.rule = str(Rule.parse(self.rule))
        self.model_kwargs = dict(self.model_kwargs)
        cls, _ = check_model_arguments(self.model, self.model_kwargs)  # fails before any work
        if not issubclass(cls, CAModel):
            raise ValueError(f"model {self.model!r} is not a cellular-automaton model")
        if not isinstance(self.density, tuple | list) or len(self.density) != 2:
            raise ValueError(f"density must be a pair (lo, hi), got {self.density!r}")
        self.density = (check_float("density[0]", self.density[0], 0.0, 1.0),
                        check_float("density[1]", self.density[1], 0.0, 1.0))
        if self.data not in DATA:
            raise ValueError(f"data must be one of {DATA}, got {self.data!r}")
        for name in ("steps", "batch_size", "check_every", "n_boards", "board_size",
                     "pairs_per_board", "holdout_boards", "patience"):
            check_int(name, getattr(self, name))
        check_int("population", self.population, maximum=MAX_POPULATION)
        check_int("burn_in", self.burn_in, minimum=0)
        check_int("restarts", self.restarts, minimum=0, maximum=10**6)
        # attempt a draws with seed + 1000·a, the held-out data with data seed + 1: all ≤ 2⁶⁴ − 1
        check_int("seed", self.seed, minimum=0, maximum=MAX_SEED - max(1000 * self.restarts, 1))
        if self.data_seed is not None:
            check_int("data_seed", self.data_seed, minimum=0, maximum=MAX_SEED - 1)
        if self.threads is not None:
            check_int("threads", self.threads)
        check_float("lr", self.lr, 0.0, open_min=True)
        check_float("l1", self.l1, 0.0)
        check_float("noise", self.noise, 0.0, 1.0)
        check_float("margin", self.margin, 0.0)
        check_float("hinge", self.hinge, 0.0)
        lo, hi = self.density
        if lo > hi:
            raise ValueError(f"density must be (lo, hi) with lo ≤ hi, got {self.density!r}")
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string, got {type(self.device).__name__} "
                            f"{self.device!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got "
                                 f"{self.device!r}") from None

    @classmethod
    def cli_fields(cls) -> list[Field[Any]]:
        """The fields ``gzoo train`` sets (those with an option's metadata), in order."""
        return [f for f in fields(cls) if "cli_help" in f.metadata]

    @property
    def effective_data_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["density"] = list(self.density)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; keys that are not fields (e.g. ``seed_used``) are ignored."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "density" in kw:
            kw["density"] = tuple(kw["density"])
        return cls(**kw)

    def command(self, out: str = "DIR", *, seed: int | None = None,
                threads: int | None = None) -> str:
        """The ``gzoo train`` command line for this recipe (with ``seed`` and no restarts when a
        seed is given: that reruns exactly the attempt that used it; with ``--threads threads``
        when given). Options at their default are left out unless their field says
        ``always``."""
        cls, fixed = resolve_model(self.model)
        preset = preset_of(cls, fixed | self.model_kwargs)
        model, rest = preset if preset is not None else (self.model, dict(self.model_kwargs))
        run_seed = self.seed if seed is None else seed
        data_seed = self.effective_data_seed
        values = self.to_dict() | {
            "model": model, "seed": run_seed,
            "restarts": self.restarts if seed is None else 0,
            "data_seed": None if data_seed == run_seed else data_seed,
            "threads": self.threads if threads is None else threads,
        }
        args = ["gzoo", "train"]
        for f in self.cli_fields():
            value = values[f.name]
            if f.metadata["cli_always"] or value != f.default:
                args += [cli_flag(f.name), str(value)]
            if f.name == "model":
                args += [a for k in MODEL_OPTIONS if k in rest
                         for a in (cli_flag(k), str(rest.pop(k)))]
        cmd = shlex.join([*args, "--out", out])
        if rest:  # arguments the command line cannot set (pool, kernel_size, ...)
            cmd += f"  # and model arguments {rest} (not settable from the command line)"
        return cmd


@dataclass(frozen=True)
class Attempt:
    """The outcome of one training attempt (from fresh weights with ``seed``).

    ``n_wrong`` is ``None`` when the last check skipped the pattern check; ``state`` holds the
    weights at the end of the attempt.
    """

    index: int
    seed: int
    steps_run: int
    exact: bool
    n_wrong: int | None
    accuracy: float
    state: dict[str, Tensor] = field(repr=False)

    @property
    def rank(self) -> tuple[int, float]:
        """Sort key of the best attempt: fewest wrong patterns (unknown counts as 513), then
        the highest accuracy."""
        return (513 if self.n_wrong is None else self.n_wrong, -self.accuracy)


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; files are written by rank 0 only).

    ``data`` is the recipe that ran (``"patterns"`` or ``"soups"``). ``steps_run`` counts the
    steps of the returned net or attempt, ``total_steps`` those of the whole run (patterns: each
    step trains every net of the population); ``seconds`` is the wall time of the run (data
    generation and the final evaluation excluded); ``seed_used`` is the seed of the returned
    net or attempt, ``restarts_used`` the number drawn before it and ``attempts_run`` the
    number of attempts made (patterns: of nets drawn); ``threads`` is torch's CPU thread count
    while training.
    """

    model: CAModel
    exact: bool
    accuracy: float
    n_wrong: int
    steps_run: int
    total_steps: int
    seconds: float
    seed_used: int
    restarts_used: int
    history: list[StepRecord]
    attempts_run: int = 1
    threads: int = 1
    verify: ExactResult | None = None
    rollout: RolloutResult | None = None
    checkpoint: Path | None = None
    rank: int = 0
    world_size: int = 1
    data: str = "soups"

    def recipe(self, cfg: TrainConfig, out: str | os.PathLike[str]) -> dict[str, Any]:
        """The ``train`` record of a checkpoint's ``config.json``: the recipe, the seeds that
        produced these weights, and the command that reruns them (soups: exactly that attempt;
        patterns: the whole run, whose nets are trained together)."""
        seed = self.seed_used if self.data == "soups" else None
        rerun = cfg.command(str(out), seed=seed, threads=self.threads)
        return cfg.to_dict() | {
            "data_used": self.data,
            "seed_used": self.seed_used,
            "data_seed_used": cfg.effective_data_seed,
            "command": rerun,
            "torch_version": torch.__version__,
            "torch_threads": self.threads,
            "cpu": cpu_model(),
            "world_size": self.world_size,
        }

    def metrics(self) -> dict[str, Any]:
        """The metrics recorded in a checkpoint's ``config.json``."""
        m: dict[str, Any] = {
            "exact": self.exact,
            "n_wrong": self.n_wrong,
            "accuracy": self.accuracy,
            "steps_run": self.steps_run,
            "total_steps": self.total_steps,
            "seconds": round(self.seconds, 3),
            "restarts_used": self.restarts_used,
            "attempts_run": self.attempts_run,
            "world_size": self.world_size,
        }
        if self.verify is not None:
            m.update(method=self.verify.method, n_contexts=self.verify.n_contexts,
                     wrong=[w.index for w in self.verify.wrong])
        if self.rollout is not None:
            m.update(rollout_agreement=self.rollout.mean, rollout_steps=self.rollout.steps,
                     rollout_size=self.rollout.size, rollout_identical=self.rollout.identical)
        return m


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """``Σ |w|`` over the parameters whose name contains ``"weight"`` (the notes' L1 term)."""
    terms = [p.abs().sum() for n, p in model.named_parameters() if "weight" in n]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


def weights_digest(model: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for k, v in sorted(getattr(model, "module", model).state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{list(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ---------------------------------------------------------------------------- distributed
class _Dist:
    """World size, rank and device; initialises (and later tears down) the process group."""

    def __init__(self, device: str) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.owned = False
        dev = check_device(device)  # "auto" → cuda or cpu; one that is not here is refused
        if self.world > 1:
            if not dist.is_available():
                raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
            if dev.type == "cuda" and dev.index is None:
                dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
                self.owned = True
            self.rank = dist.get_rank()
            self.world = dist.get_world_size()
        else:
            self.rank = 0
        self.device = dev

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        self.dist.broadcast(t, src=0)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        if self.distributed:
            self.dist.barrier()

    def close(self) -> None:
        if self.owned and self.dist.is_initialized():
            self.dist.destroy_process_group()


# ---------------------------------------------------------------------------- training
def _check(model: CAModel, rule: Rule, held_x: Tensor, held_y: Tensor
           ) -> tuple[bool, int | None, float]:
    """(exact, n_wrong, held-out accuracy); ``n_wrong = None`` if the pattern check was skipped
    (a large receptive field and held-out accuracy below 100 %: it could not be exact)."""
    acc = dataset_accuracy(model, held_x, held_y)
    n_wrong = (verify_exact(model, rule, checks=False).n_wrong  # a count; the proof at the end
               if read_structure(model).local3 or acc == 1.0 else None)
    return (n_wrong == 0 and acc == 1.0), n_wrong, acc


def _build(cfg: TrainConfig) -> CAModel:
    model = build_model(cfg.model, **cfg.model_kwargs)
    assert isinstance(model, CAModel)  # TrainConfig accepts cellular-automaton models only
    return model


def resolve_data(cfg: TrainConfig) -> str:
    """The recipe ``cfg`` runs: ``cfg.data``, with ``"auto"`` resolved by the model's structure
    (:func:`gzoo.certify.read_structure`); ``"patterns"`` for a model that is not certified
    local on the torus is a ``ValueError`` (its answers on the covering torus would not be its
    answers on other boards)."""
    structure = read_structure(_build(cfg))
    if cfg.data == "auto":
        return "patterns" if structure.local3 else "soups"
    if cfg.data == "patterns" and not structure.local3:
        raise ValueError(
            f"data='patterns' needs a model whose layers give a 3×3 receptive field on the "
            f"torus; {' '.join(filter(None, [cfg.model, str(cfg.model_kwargs or '')]))} has: "
            f"{structure.summary()}")
    return cfg.data


def train(
    cfg: TrainConfig,
    out: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``cfg``'s model on ``cfg``'s rule until it is exact (module docstring).

    Args:
        cfg: the recipe.
        out: checkpoint folder to write (rank 0), or ``None`` to write nothing. Every check on
            it runs before any work (:func:`gzoo.checkpoint.check_output`), and it stays locked
            while training runs.
        overwrite: replace an existing checkpoint ``out``; otherwise an existing ``out`` is a
            :class:`gzoo.checkpoint.CheckpointError` raised before any training.
        progress: ``False`` for silence; otherwise progress on stderr, a bar on a terminal and
            a line every few seconds without one (see :mod:`gzoo._progress`).

    Returns a :class:`TrainResult`, with the best attempt's model in eval mode. A non-finite
    loss raises ``FloatingPointError`` (nothing is saved).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    rule = Rule.parse(cfg.rule)
    out_path = None if out is None else check_output(out, overwrite=overwrite)
    data = resolve_data(cfg)  # bad model arguments fail here, before any data is made
    threads = torch.get_num_threads()
    ctx = _Dist(cfg.device)
    try:
        if data == "soups" and cfg.batch_size < ctx.world:
            raise ValueError(
                f"batch_size {cfg.batch_size} is smaller than the world size {ctx.world}")
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        with ExitStack() as stack:
            staging = None if out_path is None else _claim(stack, ctx, out_path, overwrite)
            run = _Run(cfg, rule, ctx, staging, progress, data)
            best = run.attempts()
            result = run.result(best)
            if staging is not None and out_path is not None:
                result.checkpoint = _write_checkpoint(result, cfg, out_path, staging, overwrite)
        ctx.barrier()
        return result
    finally:
        torch.set_num_threads(threads)
        ctx.close()


def _claim(stack: ExitStack, ctx: _Dist, out: Path, overwrite: bool) -> Path | None:
    """Rank 0 locks ``out`` and makes the staging folder beside it (both released by ``stack``);
    every rank learns whether it could, so that a refusal stops them all at once."""
    error: BaseException | None = None
    staging = None
    if ctx.rank == 0:
        try:
            stack.enter_context(output_lock(out))
            check_output(out, overwrite=overwrite)  # again, now that no gzoo writer can race us
            try:
                staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
            except OSError as e:
                raise CheckpointError(out, (
                    f"cannot create a staging folder beside it: {e.strerror or e}")) from None
            stack.callback(shutil.rmtree, staging, ignore_errors=True)
        except Exception as e:
            error = e
    (ok,) = ctx.broadcast([0.0 if error is not None else 1.0])
    if error is not None:
        raise error
    if not ok:
        raise RuntimeError(f"rank 0 could not claim the checkpoint folder {out}; see its error")
    return staging


class _Run:
    """One training run: the data, the attempts, the step records and their log."""

    def __init__(self, cfg: TrainConfig, rule: Rule, ctx: _Dist, staging: Path | None,
                 progress: bool | None, data: str) -> None:
        self.cfg, self.rule, self.ctx, self.staging, self.data = cfg, rule, ctx, staging, data
        data_seed = cfg.effective_data_seed
        recipe: dict[str, Any] = {"density": cfg.density, "burn_in": cfg.burn_in,
                                  "noise": cfg.noise}
        self.main = ctx.rank == 0
        #: progress on rank 0 only: None/True report (bar or periodic lines), False is silent
        self.show = progress if self.main else False
        device = ctx.device
        if data == "soups":
            soups = make_dataset(rule, cfg.n_boards, cfg.board_size, cfg.pairs_per_board,
                                 seed=data_seed, progress=self.show, **recipe)
            self.train_x, self.train_y = soups.x.to(device), soups.y.to(device)
        held = make_dataset(rule, cfg.holdout_boards, cfg.board_size, cfg.pairs_per_board,
                            seed=data_seed + 1, progress=self.show, **recipe)
        self.held_x, self.held_y = held.x.to(device), held.y.to(device)
        self.history: list[StepRecord] = []
        self.attempts_run = 0
        self.global_step = 0
        self.seconds = 0.0

    def attempts(self) -> Attempt:
        """Soups: run attempts until one is exact or ``restarts + 1`` have run. Patterns: one
        population run (:meth:`_population`). The best attempt or net."""
        cfg = self.cfg
        best: Attempt | None = None
        start = time.perf_counter()
        with ExitStack() as stack:
            log: TextIO | None = None
            if self.staging is not None:
                log = stack.enter_context(
                    open(self.staging / "metrics.jsonl", "w", encoding="utf-8"))
            if self.data == "patterns":
                best = self._population(start, log)
            for index in range(0 if best is not None else cfg.restarts + 1):
                with Progress(f"attempt {index + 1}/{cfg.restarts + 1}", cfg.steps,
                              enabled=self.show) as bar:
                    attempt = self._attempt(index, start, log, bar)
                self.attempts_run = index + 1
                if best is None or attempt.rank < best.rank:
                    best = attempt
                if attempt.exact:
                    break
        self.seconds = time.perf_counter() - start
        assert best is not None  # restarts ≥ 0: at least one attempt ran
        return best

    def _population(self, start: float, log: TextIO | None) -> Attempt:
        """The patterns recipe (:func:`gzoo.population.train_population`): nets proved exact
        on rank 0, that decision broadcast; each step logged through its leading net."""
        cfg, ctx = self.cfg, self.ctx
        dtype = next(_build(cfg).parameters()).dtype
        data = PatternData.build(self.rule, device=ctx.device, dtype=dtype)
        draws = cfg.population + cfg.restarts

        def proved(job: int, net: nn.Module) -> bool:
            ok = 0.0
            if self.main:
                res = verify_exact(net, self.rule)
                ok = float(res.exact and res.method == "exhaustive")
            return bool(ctx.broadcast([ok])[0])

        def record(job: int, rec: StepRecord) -> None:
            rec = replace(rec, time=round(time.perf_counter() - start, 4))  # since the run began
            self.history.append(rec)
            if log is not None:
                log.write(json.dumps(rec.to_dict()) + "\n")
                if rec.checked:
                    log.flush()
            if rec.checked:  # the last check's results stay on the progress line
                seen[0] = f" acc {100 * rec.acc:.2f}%" if rec.acc is not None else ""
                seen[0] += f" wrong {rec.n_wrong}/512" if rec.n_wrong is not None else ""
            bar.update(rec.step, f"net {rec.restart + 1}/{draws} loss {rec.loss:.4g}{seen[0]}",
                       force=rec.checked)

        def all_reduce(grads: list[Tensor]) -> None:
            for g in grads:
                ctx.dist.all_reduce(g)  # Σ over ranks of each rank's shard of the board

        seen = [""]
        with Progress("patterns", cfg.steps, enabled=self.show) as bar:
            try:
                [out] = train_population(
                    lambda: _build(cfg), [data], population=cfg.population, steps=cfg.steps,
                    restarts=cfg.restarts, patience=cfg.patience, seed=cfg.seed, lr=cfg.lr,
                    l1=cfg.l1, margin=cfg.margin, hinge=cfg.hinge,
                    check_every=cfg.check_every, verify=proved, device=ctx.device,
                    on_tick=record, shard=(ctx.rank, ctx.world),
                    all_reduce=all_reduce if ctx.distributed else None,
                    stop_on_non_finite=True)
            except FloatingPointError as e:  # ranks hold the same weights: all diverge at once
                raise FloatingPointError(f"{e}; lower --lr (now {cfg.lr:g}) or --l1 (now "
                                         f"{cfg.l1:g}). Nothing was saved") from None
        self.attempts_run = out.draws
        self.global_step = out.steps
        return Attempt(index=out.draw, seed=out.seed, steps_run=out.steps_run, exact=out.exact,
                       n_wrong=out.n_wrong, accuracy=1.0 - out.n_wrong / 512, state=out.state)

    def _batches(self, gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's shard ``batch[rank::world]`` of the same global batch on every rank."""
        n, ctx = self.train_x.shape[0], self.ctx
        while True:
            idx = torch.randint(n, (self.cfg.batch_size,), generator=gen)
            idx = idx[ctx.rank::ctx.world].to(ctx.device)
            yield self.train_x[idx], self.train_y[idx]

    def _attempt(self, index: int, start: float, log: TextIO | None, bar: Progress
                 ) -> Attempt:
        """One attempt from fresh weights (seed ``seed + 1000·index``), stopping when exact."""
        cfg, ctx = self.cfg, self.ctx
        seed = cfg.seed + 1000 * index
        torch.manual_seed(seed)
        model = _build(cfg).to(ctx.device)
        net: nn.Module = model  # the forward of training goes through DDP when distributed
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        dtype = next(model.parameters()).dtype
        model.train()
        exact, n_wrong, acc, steps_run, seen = False, None, 0.0, 0, ""
        batches = self._batches(torch.Generator().manual_seed(seed))
        for t in range(1, cfg.steps + 1):
            x, y = next(batches)
            ce = F.cross_entropy(net(boards_to_onehot(x, dtype)), y.long())
            l1 = l1_penalty(model)
            loss = ce + cfg.l1 * l1  # L = CE + λ Σ|w|
            value = loss.item()
            if ctx.any(not math.isfinite(value)):  # every rank stops at the same step
                raise FloatingPointError(
                    f"training diverged: the loss is {value} at step {t} of attempt "
                    f"{index + 1} (seed {seed}; cross-entropy {ce.item()}, L1 term "
                    f"{l1.item()}); lower --lr (now {cfg.lr:g}) or --l1 (now {cfg.l1:g}). "
                    "Nothing was saved")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.global_step += 1
            steps_run = t
            checked = t % cfg.check_every == 0 or t == cfg.steps
            found: dict[str, Any] = {}
            if checked:
                exact, n_wrong, acc = self._check_everywhere(model)
                found = {"acc": acc, "n_wrong": n_wrong, "exact": exact}
            rec = StepRecord(
                restart=index, seed=seed, step=t, global_step=self.global_step,
                loss=value, ce=ce.item(), l1=l1.item(),
                time=round(time.perf_counter() - start, 4), **found,
            )
            self.history.append(rec)
            if log is not None:
                log.write(json.dumps(rec.to_dict()) + "\n")
                if checked:
                    log.flush()
            if checked:  # the last check's results stay on the progress line
                seen = f" acc {100 * acc:.2f}%" + (
                    f" wrong {n_wrong}/512" if n_wrong is not None else "")
            bar.update(t, f"loss {value:.4g}{seen}", force=checked)
            if exact:
                break
        return Attempt(index=index, seed=seed, steps_run=steps_run, exact=exact,
                       n_wrong=n_wrong, accuracy=acc,
                       state={k: v.detach().clone() for k, v in model.state_dict().items()})

    def _check_everywhere(self, model: CAModel) -> tuple[bool, int | None, float]:
        """Rank 0 checks exactness; every rank gets its answer (so all stop together)."""
        status = [0.0, -1.0, 0.0]
        if self.main:
            exact, n_wrong, acc = _check(model, self.rule, self.held_x, self.held_y)
            status = [float(exact), -1.0 if n_wrong is None else float(n_wrong), acc]
            model.train()
        e, w, a = self.ctx.broadcast(status)
        return bool(e), None if w < 0 else int(w), float(a)

    def result(self, best: Attempt) -> TrainResult:
        """The best attempt's model in eval mode, evaluated again in full on rank 0."""
        cfg, rule = self.cfg, self.rule
        torch.manual_seed(best.seed)
        model = _build(cfg).to(self.ctx.device)
        model.load_state_dict(best.state)
        model.eval()
        verify = rollout = None
        exact, accuracy = best.exact, best.accuracy
        n_wrong = -1 if best.n_wrong is None else best.n_wrong
        if self.main:
            verify = verify_exact(model, rule)
            accuracy = dataset_accuracy(model, self.held_x, self.held_y)
            n_wrong = verify.n_wrong
            exact = verify.exact and accuracy == 1.0
            rollout = rollout_agreement(model, rule, size=64, steps=64,
                                        seed=cfg.effective_data_seed)
        return TrainResult(
            model=model, exact=exact, accuracy=accuracy, n_wrong=n_wrong,
            steps_run=best.steps_run, total_steps=self.global_step, seconds=self.seconds,
            seed_used=best.seed, restarts_used=best.index, history=self.history,
            attempts_run=self.attempts_run, threads=torch.get_num_threads(), verify=verify,
            rollout=rollout, rank=self.ctx.rank, world_size=self.ctx.world, data=self.data,
        )


def _write_checkpoint(result: TrainResult, cfg: TrainConfig, out: Path, staging: Path,
                      overwrite: bool) -> Path:
    """Write the checkpoint ``out`` (weights, config, card) with the run's ``metrics.jsonl``
    and training curve from ``staging`` (which :func:`train` removes)."""
    from gzoo.plots import save_training_curve

    title = f"{cfg.rule} · {preset_name(result.model) or cfg.model} · seed {cfg.seed}"
    curve = save_training_curve([r.to_dict() for r in result.history],
                                staging / "training_curve.png", title=title)
    folder = save_checkpoint(
        result.model, out, rule=cfg.rule, train_config=result.recipe(cfg, out),
        metrics=result.metrics(), overwrite=overwrite,
        certificate=result.verify.certificate() if result.verify is not None else None,
        extra_files={"metrics.jsonl": staging / "metrics.jsonl", "training_curve.png": curve},
    )
    return folder
