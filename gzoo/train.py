r"""Training a model to reproduce a rule exactly.

Objective (the notes' section 1.1.3.3), on a batch of one-hot boards ``x`` with next states ``y``:

    L(θ) = CE(f_θ(x), y) + λ Σ_{w ∈ θ, "weight" in name(w)} |w|₁        λ = ``l1`` (1e-5)

minimised with Adam. Every ``check_every`` steps the model is tested on a held-out data set and
with :func:`gzoo.verify.verify_exact`; training stops as soon as it is *exact* (no wrong 3×3
neighbourhood and 100 % held-out accuracy). If an attempt is not exact after ``steps`` steps, up
to ``restarts`` new attempts start from fresh weights with seed ``seed + 1000·attempt`` (small
GCNNs sometimes settle in a Life-like minimum that never learns, e.g., birth on 6; a new seed
gets out of it). The best attempt is kept.

Determinism: for a given config the data, the initial weights and the batch order depend only on
the seeds, so a single-process CPU run is reproducible bit for bit with the same number of torch
threads (intra-op parallelism changes the order of floating-point sums).

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised (``gloo``
on CPU, ``nccl`` on CUDA), the model is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`, every rank draws the same global batch and
keeps its shard ``batch[rank::world_size]`` (so the global batch is the same for every world
size), rank 0 makes the exactness decision and broadcasts it so that all ranks stop together,
and only rank 0 writes files.

Files (rank 0, when ``out`` is given): ``metrics.jsonl`` (one JSON record per step) grows in
``<out>.partial/`` while training; at the end the checkpoint folder ``out`` is written (see
:mod:`gzoo.checkpoint`) with ``metrics.jsonl`` and ``training_curve.png`` beside the weights, and
the ``.partial`` folder is removed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import nn

from gzoo.ca import Rule, make_dataset
from gzoo.checkpoint import CheckpointError, save_checkpoint
from gzoo.models import CAModel, boards_to_onehot, build_model, resolve_model
from gzoo.verify import (
    ExactResult,
    RolloutResult,
    dataset_accuracy,
    rollout_agreement,
    verify_exact,
)

__all__ = ["TrainConfig", "TrainResult", "l1_penalty", "train", "weights_digest"]


@dataclass
class TrainConfig:
    """The training recipe; JSON-serialisable (:meth:`to_dict`), stored in checkpoints.

    Model: ``model`` is a ``--model`` name (``p4``, ``p4m``, ``p8``, ``tiny``, ``small``,
    ``multiscale``) or a class name, ``model_kwargs`` its arguments (``width``, ``depth``, ...).

    Optimisation: ``steps`` per attempt, ``batch_size`` boards per step (the global batch under
    DDP), Adam with learning rate ``lr``, L1 weight ``l1``, ``seed`` (initial weights and batch
    order; attempt ``a`` uses ``seed + 1000·a``), ``restarts`` extra attempts, exactness checked
    every ``check_every`` steps.

    Data (:func:`gzoo.ca.make_dataset`): ``n_boards`` soups of ``board_size``² cells,
    ``pairs_per_board`` pairs each, soup ``density`` range, ``burn_in``, flip ``noise``, seed
    ``data_seed`` (``None``: the same as ``seed``). The held-out set is ``holdout_boards`` soups
    of the same recipe with seed ``data_seed + 1``.

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
    """

    rule: str = "B36/S23"
    model: str = "p8"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-2
    l1: float = 1e-5
    seed: int = 0
    restarts: int = 2
    check_every: int = 100
    data_seed: int | None = None
    n_boards: int = 256
    board_size: int = 32
    pairs_per_board: int = 2
    density: tuple[float, float] = (0.05, 0.95)
    burn_in: int = 16
    noise: float = 0.0
    holdout_boards: int = 64
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.rule = str(Rule.parse(self.rule))
        resolve_model(self.model)  # unknown names fail here, before any work
        self.model_kwargs = dict(self.model_kwargs)
        self.density = (float(self.density[0]), float(self.density[1]))
        for name in ("steps", "batch_size", "check_every", "n_boards", "board_size",
                     "pairs_per_board", "holdout_boards"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("seed", "restarts", "burn_in"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int ≥ 0, got {v!r}")
        if self.data_seed is not None and (
                isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int)
                or self.data_seed < 0):
            raise ValueError(f"data_seed must be None or an int ≥ 0, got {self.data_seed!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.l1 >= 0:
            raise ValueError(f"l1 must be ≥ 0, got {self.l1!r}")

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

    def command(self, out: str = "DIR", *, seed: int | None = None) -> str:
        """The ``gzoo train`` command line for this recipe (with ``seed`` and no restarts when a
        seed is given: that reruns exactly the attempt that used it)."""
        cls, fixed = resolve_model(self.model)
        kw = dict(self.model_kwargs)
        kind = self.model
        if cls.__name__ == "GCNN":
            kind = kw.pop("group", fixed.get("group", "p8"))
        args = ["gzoo", "train", "--rule", self.rule, "--model", kind]
        for k in ("width", "depth", "backend"):
            if k in kw:
                args += [f"--{k}", str(kw.pop(k))]
        default = TrainConfig()
        data_seed = self.effective_data_seed
        run_seed = self.seed if seed is None else seed
        args += ["--steps", str(self.steps), "--seed", str(run_seed)]
        if data_seed != run_seed:
            args += ["--data-seed", str(data_seed)]
        args += ["--restarts", str(self.restarts if seed is None else 0)]
        for name in ("batch_size", "lr", "l1", "check_every"):
            if getattr(self, name) != getattr(default, name):
                args += [f"--{name.replace('_', '-')}", str(getattr(self, name))]
        args += ["--device", self.device, "--out", out]
        cmd = shlex.join(args)
        if kw:  # arguments the command line cannot set (pool, kernel_size, ...)
            cmd += f"  # and model arguments {kw} (not settable from the command line)"
        return cmd


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; files are written by rank 0 only).

    ``steps_run`` counts the steps of the returned attempt, ``total_steps`` those of all
    attempts; ``seconds`` is the wall time of all attempts (data generation and the final
    evaluation excluded); ``seed_used`` is the seed of the returned attempt and
    ``restarts_used`` the number of attempts before it.
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
    history: list[dict[str, Any]]
    verify: ExactResult | None = None
    rollout: RolloutResult | None = None
    checkpoint: Path | None = None
    rank: int = 0
    world_size: int = 1

    def recipe(self, cfg: TrainConfig, out: str | os.PathLike[str]) -> dict[str, Any]:
        """The ``train`` record of a checkpoint's ``config.json``: the recipe, the seeds that
        produced these weights, and the command that reruns exactly that attempt."""
        return cfg.to_dict() | {
            "seed_used": self.seed_used,
            "data_seed_used": cfg.effective_data_seed,
            "command": cfg.command(str(out), seed=self.seed_used),
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
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
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
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

    def barrier(self) -> None:
        if self.distributed:
            self.dist.barrier()

    def close(self) -> None:
        if self.owned and self.dist.is_initialized():
            self.dist.destroy_process_group()


# ---------------------------------------------------------------------------- progress
class _Progress:
    """A one-line ``\\r`` progress bar on a terminal (no dependency); silent when disabled."""

    def __init__(self, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.enabled = enabled
        self.stream = stream
        self.last = 0.0
        self.width = 0

    def update(self, attempt: int, attempts: int, step: int, steps: int, loss: float,
               acc: float | None, n_wrong: int | None, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        n = 24
        filled = int(n * step / steps)
        bar = "#" * filled + "." * (n - filled)
        extra = f" acc {100 * acc:.2f}%" if acc is not None else ""
        extra += f" wrong {n_wrong}/512" if n_wrong is not None else ""
        line = f"attempt {attempt + 1}/{attempts} [{bar}] {step}/{steps} loss {loss:.4g}{extra}"
        self.width = max(self.width, len(line))
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.width:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------- training
def _check(model: CAModel, rule: Rule, held_x: torch.Tensor, held_y: torch.Tensor
           ) -> tuple[bool, int, float]:
    """(exact, n_wrong, held-out accuracy); ``n_wrong = -1`` if the pattern check was skipped
    (a large receptive field and held-out accuracy below 100 %: it could not be exact)."""
    acc = dataset_accuracy(model, held_x, held_y)
    if model.receptive_field <= 3 or acc == 1.0:
        n_wrong = verify_exact(model, rule).n_wrong
    else:
        n_wrong = -1
    return (n_wrong == 0 and acc == 1.0), n_wrong, acc


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
        out: checkpoint folder to write (rank 0), or ``None`` to write nothing.
        overwrite: replace an existing ``out``; otherwise an existing ``out`` is a
            :class:`gzoo.checkpoint.CheckpointError` raised before any training.
        progress: show a progress bar on stderr (default: when stderr is a terminal).

    Returns a :class:`TrainResult`, with the best attempt's model in eval mode.
    """
    rule = Rule.parse(cfg.rule)
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.exists() and not overwrite:
        raise CheckpointError(out_path, "already exists; pass overwrite=True (CLI: --overwrite)")
    ctx = _Dist(cfg.device)
    try:
        return _train(cfg, rule, ctx, out_path, overwrite, progress)
    finally:
        ctx.close()


def _train(cfg: TrainConfig, rule: Rule, ctx: _Dist, out: Path | None, overwrite: bool,
           progress: bool | None) -> TrainResult:
    device, rank, world = ctx.device, ctx.rank, ctx.world
    main = rank == 0
    if cfg.batch_size < world:
        raise ValueError(f"batch_size {cfg.batch_size} is smaller than the world size {world}")
    data_seed = cfg.effective_data_seed
    recipe = {"density": cfg.density, "burn_in": cfg.burn_in, "noise": cfg.noise}
    data = make_dataset(rule, cfg.n_boards, cfg.board_size, cfg.pairs_per_board,
                        seed=data_seed, **recipe)
    held = make_dataset(rule, cfg.holdout_boards, cfg.board_size, cfg.pairs_per_board,
                        seed=data_seed + 1, **recipe)
    train_x, train_y = data.x.to(device), data.y.to(device)
    held_x, held_y = held.x.to(device), held.y.to(device)
    n = train_x.shape[0]

    staging = out.parent / f"{out.name}.partial" if (out is not None and main) else None
    log: TextIO | None = None
    if staging is not None:
        staging.mkdir(parents=True, exist_ok=True)
        log = open(staging / "metrics.jsonl", "w", encoding="utf-8")
    bar = _Progress(main and (sys.stderr.isatty() if progress is None else progress))

    history: list[dict[str, Any]] = []
    attempts = cfg.restarts + 1
    best: tuple[tuple[int, float], dict[str, torch.Tensor], dict[str, Any]] | None = None
    global_step = 0
    start = time.perf_counter()
    try:
        for attempt in range(attempts):
            seed = cfg.seed + 1000 * attempt
            torch.manual_seed(seed)
            model = build_model(cfg.model, **cfg.model_kwargs).to(device)
            net: nn.Module = model
            if ctx.distributed:
                from torch.nn.parallel import DistributedDataParallel

                net = DistributedDataParallel(
                    model, device_ids=[device.index] if device.type == "cuda" else None)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            gen = torch.Generator().manual_seed(seed)
            model.train()
            exact, n_wrong, acc, steps_run = False, -1, 0.0, 0
            for t in range(1, cfg.steps + 1):
                idx = torch.randint(n, (cfg.batch_size,), generator=gen)[rank::world].to(device)
                x = boards_to_onehot(train_x[idx], next(model.parameters()).dtype)
                ce = F.cross_entropy(net(x), train_y[idx].long())
                l1 = l1_penalty(model)
                loss = ce + cfg.l1 * l1
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                global_step += 1
                steps_run = t
                rec: dict[str, Any] = {
                    "restart": attempt, "seed": seed, "step": t, "global_step": global_step,
                    "loss": loss.item(), "ce": ce.item(), "l1": l1.item(),
                    "time": round(time.perf_counter() - start, 4),
                }
                checked = t % cfg.check_every == 0 or t == cfg.steps
                if checked:
                    status = [0.0, -1.0, 0.0]
                    if main:
                        e, w, a = _check(model, rule, held_x, held_y)
                        status = [float(e), float(w), a]
                        model.train()
                    e, w, a = ctx.broadcast(status)
                    exact, n_wrong, acc = bool(e), int(w), float(a)
                    rec.update(acc=acc, n_wrong=None if n_wrong < 0 else n_wrong, exact=exact)
                history.append(rec)
                if log is not None:
                    log.write(json.dumps(rec) + "\n")
                    if checked:
                        log.flush()
                bar.update(attempt, attempts, t, cfg.steps, rec["loss"],
                           acc if checked else None, n_wrong if n_wrong >= 0 else None,
                           force=checked)
                if exact:
                    break
            # best attempt: fewest wrong patterns (unknown counts as 513), then accuracy
            key = (n_wrong if n_wrong >= 0 else 513, -acc)
            if best is None or key < best[0]:
                info = {"seed": seed, "attempt": attempt, "steps_run": steps_run,
                        "exact": exact, "n_wrong": n_wrong, "acc": acc}
                best = (key, copy.deepcopy(model.state_dict()), info)
            if exact:
                break
        seconds = time.perf_counter() - start
    finally:
        bar.close()
        if log is not None:
            log.close()

    assert best is not None
    _, state, info = best
    torch.manual_seed(info["seed"])
    model = build_model(cfg.model, **cfg.model_kwargs).to(device)
    model.load_state_dict(state)
    model.eval()
    model.rule = rule

    result = TrainResult(
        model=model, exact=info["exact"], accuracy=info["acc"], n_wrong=info["n_wrong"],
        steps_run=info["steps_run"], total_steps=global_step, seconds=seconds,
        seed_used=info["seed"], restarts_used=info["attempt"], history=history,
        rank=rank, world_size=world,
    )
    if main:
        result.verify = verify_exact(model, rule)
        result.accuracy = dataset_accuracy(model, held_x, held_y)
        result.n_wrong = result.verify.n_wrong
        result.exact = result.verify.exact and result.accuracy == 1.0
        result.rollout = rollout_agreement(model, rule, size=64, steps=64,
                                           seed=data_seed)
        if out is not None and staging is not None:
            from gzoo.plots import save_training_curve

            title = f"{rule} · {model.model_kind} · seed {cfg.seed}"
            save_training_curve(history, staging / "training_curve.png", title=title)
            model.config = None
            result.checkpoint = save_checkpoint(
                model, out, rule=rule, train_config=result.recipe(cfg, out),
                metrics=result.metrics(),
                overwrite=overwrite,
                extra_files={"metrics.jsonl": staging / "metrics.jsonl",
                             "training_curve.png": staging / "training_curve.png"},
            )
            shutil.rmtree(staging, ignore_errors=True)
    ctx.barrier()
    return result
