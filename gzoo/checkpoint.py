"""Checkpoint folders: save, load, verify, and the installed zoo.

A checkpoint is a folder holding

* ``model.safetensors`` — the state dict, nothing else (safetensors metadata ``format: pt``);
* ``config.json`` — ``{"format": "gzoo-checkpoint", "format_version": 1, "gzoo_version",
  "task", "rule", "model": {"class", "kwargs"}, "group", "n_params", "train", "metrics",
  "certificate", "files", "weights_sha256"}``, enough to rebuild the model and to check the
  weights file. ``task`` (one of :data:`TASKS`) says what the model computes and which models
  may do it (:data:`TASK_MODELS`); it is optional and defaults to ``"cellular-automaton"``,
  which requires a ``rule``. An image checkpoint (``"rotmnist"``) has no rule (``null``) and a
  ``"data"`` record instead: the protocol and the checksums of the data it was tested on
  (:func:`gzoo.mnist.check_record`). ``certificate`` is optional (a cellular-automaton
  checkpoint): what :meth:`gzoo.verify.ExactResult.certificate` established (the method, what
  it covered, the checks and the gzoo version). ``files`` lists the folder's files, optional;
* ``README.md`` — a model card generated from the config (:func:`model_card`, one per task);

and possibly extra files a training run adds (``metrics.jsonl``, ``training_curve.png``).

Loading returns the model in eval mode; what the folder says about it travels beside the
module's weights as one read-only record, ``model.checkpoint`` (a :class:`CheckpointInfo`:
``path``, ``task``, ``rule``, and the parsed ``config``, its ``data`` record included).

Saving writes everything into a temporary sibling folder and renames it into place, so a crash
leaves no half-written checkpoint; it holds a lock on the folder while it writes, never replaces
an existing folder unless asked (``overwrite=True``), and even then replaces only a folder that
is a gzoo checkpoint (:func:`check_output`). Every failure to save or load raises
:class:`CheckpointError` naming the path and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gzoo._version import __version__
from gzoo.ca import Rule
from gzoo.mnist import check_record
from gzoo.models import MODELS, CAModel, RotMNISTNet, ZooModel

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "README_FILE",
    "TASKS",
    "TASK_CA",
    "TASK_MODELS",
    "TASK_ROTMNIST",
    "TRAINING_FILES",
    "WEIGHTS_FILE",
    "CheckpointError",
    "CheckpointInfo",
    "certificate_sentence",
    "check_output",
    "load_checkpoint",
    "load_pretrained",
    "model_card",
    "non_finite",
    "output_lock",
    "read_config",
    "recipe_sentence",
    "resolve_checkpoint",
    "save_checkpoint",
    "sha256_file",
    "zoo_entries",
]

FORMAT = "gzoo-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
README_FILE = "README.md"
#: The task of a cellular-automaton checkpoint: one step of ``rule`` on the torus.
TASK_CA = "cellular-automaton"
#: The task of an image checkpoint: rotated-MNIST digits ``[B, 1, 28, 28]`` → logits ``[B, 10]``
#: (:mod:`gzoo.mnist`, :class:`gzoo.models.RotMNISTNet`); no rule, a ``"data"`` record instead.
TASK_ROTMNIST = "rotmnist"
#: Every task this gzoo reads (``config.json``'s ``"task"``).
TASKS = (TASK_CA, TASK_ROTMNIST)
#: The models that may do each task: a checkpoint's class must derive from its task's.
TASK_MODELS: dict[str, type[ZooModel]] = {TASK_CA: CAModel, TASK_ROTMNIST: RotMNISTNet}
#: Files a training run adds to a checkpoint folder (:func:`gzoo.train.train`).
TRAINING_FILES = ("metrics.jsonl", "training_curve.png")
#: The largest ``config.json`` gzoo reads (bytes); the zoo's are a few kB.
MAX_CONFIG_BYTES = 4 << 20


class CheckpointError(Exception):
    """A checkpoint that cannot be saved or loaded. ``str(e)`` is ``"<path>: <reason>"``.

    A plain :class:`Exception` (not a ``ValueError``/``OSError``): it covers missing files,
    bad contents and refused overwrites alike, and callers catch it by name.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint folder says about the model loaded from it; read-only.

    :func:`load_pretrained` returns the model with this record as ``model.checkpoint``.

    Attributes:
        path: the checkpoint folder.
        task: what the model computes, one of :data:`TASKS`: :data:`TASK_CA` (one step of
            ``rule``) or :data:`TASK_ROTMNIST` (rotated-digit logits).
        rule: the rule of a cellular-automaton checkpoint; ``None`` for a task without one.
        config_json: ``config.json`` as read (JSON text); :attr:`config` parses it.
    """

    path: Path
    task: str
    rule: Rule | None
    config_json: str = field(repr=False)

    @property
    def name(self) -> str:
        """The folder's name (the zoo name of a zoo entry)."""
        return self.path.name

    @property
    def config(self) -> dict[str, Any]:
        """The parsed ``config.json``: a fresh copy on every call (the record never changes)."""
        config: dict[str, Any] = json.loads(self.config_json)
        return config

    @property
    def metrics(self) -> dict[str, Any]:
        """The recorded results (exactness, accuracy, timings, ...); ``{}`` if none."""
        return self.config.get("metrics") or {}

    @property
    def train(self) -> dict[str, Any] | None:
        """The training recipe, with the seed used and the command that reruns it."""
        return self.config.get("train")

    @property
    def data(self) -> dict[str, Any] | None:
        """An image checkpoint's data record (protocol, source and rotated-data checksums:
        :func:`gzoo.mnist.check_record`); ``None`` for a task without one."""
        return self.config.get("data")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel/DataParallel wrapper."""
    return getattr(model, "module", model)


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so the config holds only JSON types (tuples → lists)."""
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------------------- model card
def _fmt_pct(x: object) -> str:
    return f"{100 * float(x):.2f} %" if isinstance(x, int | float) else "—"


def _snippet_source(title: str, folder: str | os.PathLike[str] | None) -> tuple[str, str]:
    """What the card's snippet loads, and a comment: the zoo name of an installed zoo entry
    (it runs anywhere), else the folder's absolute path (it runs from any working directory
    while the folder stays where it was saved)."""
    from gzoo import zoo

    if folder is None:
        return title, "zoo name, or the path of this folder"
    path = Path(folder).resolve()
    if path.parent == zoo.ZOO_DIR:
        return path.name, "zoo name (installed with gzoo)"
    return str(path), "this folder (where it was saved; give its new path if moved)"


def _card_top(heading: str, rows: list[tuple[str, str]], config: Mapping[str, Any], title: str,
              folder: str | os.PathLike[str] | None, use: list[str]) -> tuple[list[str], str]:
    """A card's heading, its table (the gzoo version last) and its "Use" snippet — load the
    checkpoint (:func:`_snippet_source`), then the ``use`` lines — as Markdown lines; and what
    the snippet loads."""
    source, comment = _snippet_source(title, folder)
    rows = [*rows, ("gzoo", str(config.get("gzoo_version", "?")))]
    lines = [f"# {heading}", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    lines += ["## Use", "", "```python", "import torch", "", "import gzoo", "",
              f"model = gzoo.load_pretrained({source!r})  # {comment}", *use, "```", ""]
    return lines, source


def _weights_line(config: Mapping[str, Any]) -> list[str]:
    return [f"Weights: `{WEIGHTS_FILE}`, sha256 `{config.get('weights_sha256', '?')}`.", ""]


def model_card(config: Mapping[str, Any], name: str | None = None, *,
               folder: str | os.PathLike[str] | None = None) -> str:
    """The ``README.md`` of a checkpoint, generated from its ``config.json`` (a card per task).
    ``folder``, the checkpoint's folder, makes the snippet load it from any working directory.
    """
    if _task(config) == TASK_ROTMNIST:
        return _image_card(config, name, folder)
    return _ca_card(config, name, folder)


def certificate_sentence(cert: Mapping[str, Any] | None) -> str:
    """The card's one sentence on a recorded certificate (``config["certificate"]``)."""
    if not cert:
        return "none recorded"
    version = cert.get("gzoo_version", "?")
    verdict = "exact" if cert.get("exact") else "not exact"
    if cert.get("method") == "exhaustive":
        return (f"proved {verdict} by gzoo {version}: all 512 3×3 neighbourhoods checked, with "
                "the 3×3 receptive field and the torus boundary read from the layers and the "
                "locality, boards and determinism checks passed, so this holds on every board "
                "of every size")
    failed = [c.get("name") for c in cert.get("checks", []) if not c.get("passed")]
    return (f"evidence only, not a proof (gzoo {version}): {cert.get('structure', '?')}; "
            + (f"{verdict}, {', '.join(failed)} check failed" if failed
               else f"{'no error found' if cert.get('exact') else verdict} in random contexts "
                    "and the locality, boards and determinism checks"))


def recipe_sentence(train: Mapping[str, Any]) -> str:
    """The card's words for the training recipe of a ``config["train"]`` record."""
    data = train.get("data_used")
    if data == "patterns":
        return (f"patterns: all 512 neighbourhoods on one covering torus, class-balanced, "
                f"{train.get('population', '?')} nets at once, re-drawn on plateaus "
                f"(patience {train.get('patience', '?')}), hinge {train.get('hinge', '?')} at "
                f"margin {train.get('margin', '?')}")
    if data == "soups":
        return f"soups: random boards, batches of {train.get('batch_size', '?')}"
    return "soups: random boards (recorded before the recipes had names)"


def _ca_card(config: Mapping[str, Any], name: str | None,
             folder: str | os.PathLike[str] | None) -> str:
    """The card of a cellular-automaton checkpoint: rule, exactness, rollouts, reproduction."""
    rule = Rule.parse(config["rule"])
    common = f" ({rule.name})" if rule.name else ""
    hood = "Moore" if rule.neighbourhood == "moore" else "von Neumann"
    model = config["model"]
    kwargs = ", ".join(f"{k}={v!r}" for k, v in model.get("kwargs", {}).items())
    group = config.get("group")
    metrics = config.get("metrics") or {}
    train = config.get("train") or {}
    title = name or f"{rule.slug}_{group or model['class']}"

    if "exact" in metrics:
        method = metrics.get("method", "exhaustive")
        if method == "exhaustive":
            how = "exhaustive check of all 512 3×3 neighbourhoods"
            if metrics["exact"] is True:
                how += ": exact on every board of every size"
        else:
            how = f"checked in {metrics.get('n_contexts', '?')} random contexts per pattern"
        verdict = "**yes**" if metrics["exact"] is True else "**no**"
        exact = f"{verdict} — {metrics.get('n_wrong', '?')}/512 neighbourhoods wrong ({how})"
    else:
        exact = "not checked"
    rows = [
        ("rule", f"`{rule}`{common}, {hood} neighbourhood"),
        ("model", f"`{model['class']}({kwargs})`"),
        ("group", group or "none (plain CNN)"),
        ("parameters", str(config.get("n_params", "?"))),
        ("exact", exact),
        ("certificate", certificate_sentence(config.get("certificate"))),
        ("held-out accuracy", _fmt_pct(metrics.get("accuracy"))),
    ]
    if "rollout_agreement" in metrics:
        rows.append(("rollout agreement", _fmt_pct(metrics["rollout_agreement"])
                     + f" of cells over {metrics.get('rollout_steps', '?')} self-fed steps"))
    if "seconds" in metrics:
        rows.append(("recipe", recipe_sentence(train)))
        seed = train.get("seed_used", train.get("seed", "?"))
        where = (f"device {train.get('device', '?')}, world size "
                 f"{metrics.get('world_size', 1)}")
        used = metrics.get("restarts_used", 0)
        drawn = used + 1 if isinstance(used, int) else "?"
        if train.get("data_used") == "patterns":  # nets trained together, drawn one by one
            run = (f"{metrics.get('steps_run', '?')} steps of the net proved exact, "
                   f"{metrics.get('total_steps', '?')} steps of the population, in "
                   f"{float(metrics['seconds']):.1f} s (net {drawn} drawn, seed {seed}, "
                   f"{where})")
        else:
            steps = f"{metrics.get('steps_run', '?')} steps"
            total = metrics.get("total_steps")
            if total is not None and total != metrics.get("steps_run"):
                steps += f" ({total} over all attempts)"
            attempt = f"attempt {drawn}"
            if isinstance(metrics.get("attempts_run"), int):
                attempt += f" of {metrics['attempts_run']}"
            run = (f"{steps} in {float(metrics['seconds']):.1f} s (seed {seed}, {attempt}, "
                   f"{where})")
        rows.append(("training", run))
    lines, _ = _card_top(f"{title} — {rule}{common}, {group or model['class']}", rows, config,
                         title, folder, [
        f"rule = model.checkpoint.rule  # {rule}",
        "boards = torch.rand(8, 64, 64) < 0.3  # bool/uint8 [B, H, W] or [H, W]",
        "next_boards = model.step(boards)",
        "print(gzoo.verify_exact(model, rule).n_wrong)  # 0 if exact"])
    if train.get("command"):
        lines += ["## Reproduce", "", "```bash", str(train["command"]), "```", ""]
        threads = train.get("torch_threads")
        cpu = train.get("cpu")
        where = f" ({cpu})" if cpu else ""
        if threads:
            plural = "s" if threads != 1 else ""
            lines += [
                f"Trained with {threads} torch thread{plural} (`--threads {threads}`). The same "
                f"weights, bit for bit, need a single CPU process with that thread count on "
                f"the same CPU model{where}; elsewhere the floating-point sums round "
                "differently, and what carries over is exactness and the rollouts.", ""]
    return "\n".join(lines + _weights_line(config))


def _epoch_runs(values: list[Any]) -> str:
    """``[None, None, 1, 1, 1]`` → ``"epochs 1–2: not logged, 3–5: 1 thread(s)"``."""
    runs: list[list[Any]] = []  # [value, first epoch, last epoch]
    for epoch, value in enumerate(values, 1):
        if runs and runs[-1][0] == value:
            runs[-1][2] = epoch
        else:
            runs.append([value, epoch, epoch])
    return "epochs " + "; ".join(
        (f"{a}–{b}" if a != b else f"{a}") + ": "
        + ("not logged" if v is None else f"{v} thread(s)") for v, a, b in runs)


#: What each image model is invariant to by construction, by group.
_INVARIANT_TO = {"p4": "exact 90° turns", "p4m": "exact 90° turns and mirrors",
                 "p8": "exact 90° turns (45° turns approximately)"}


def _image_card(config: Mapping[str, Any], name: str | None,
                folder: str | os.PathLike[str] | None) -> str:
    """The card of a rotated-MNIST checkpoint: protocol, test error, seeds, data checksums,
    the command that reproduces it, and a snippet that runs without the data."""
    model = config["model"]
    kwargs = ", ".join(f"{k}={v!r}" for k, v in model.get("kwargs", {}).items())
    metrics = config.get("metrics") or {}
    train = config.get("train") or {}
    data = config.get("data") or {}
    protocol = data.get("protocol") or {}
    source = data.get("source") or {}
    inv = metrics.get("invariance") or {}
    group = config.get("group")
    title = name or f"rotmnist_{group or 'cnn'}"
    recipe = train.get("recipe") or {}
    n_test = protocol.get("n_test", "?")
    rows = [
        ("task", "rotated MNIST digits: `[B, 1, 28, 28]` float pixels in [0, 1] (white digit on "
                 "black, as MNIST stores them) → logits `[B, 10]`"),
        ("model", f"`{model['class']}({kwargs})`"),
        ("group", group or "none (plain CNN)"),
        ("parameters", str(config.get("n_params", "?"))),
        ("test error", f"{_fmt_pct(metrics.get('test_error'))} of the {n_test} rotated test "
                       f"digits (training seed {train.get('seed', '?')})"),
        ("invariant by construction", _INVARIANT_TO.get(group or "", "nothing (plain CNN)")),
    ]
    if inv:
        rows.append(("measured Δlogits", (
            f"90°: {inv['rot90_rel']:.1e}, mirror: {inv['mirror_rel']:.1e}, 45° (bilinear): "
            f"{inv['rot45_rel']:.3f}, predicted class changed by a 45° turn: "
            f"{_fmt_pct(inv.get('rot45_flips'))} — mean relative change over "
            f"{metrics.get('invariance_digits', '?')} test digits")))
    rows += [
        ("protocol", (
            f"{protocol.get('n_train', '?')} of the 60,000 standard training digits drawn with "
            f"seed {protocol.get('seed', '?')} (the last {protocol.get('n_val', '?')} a "
            f"validation split), the first {n_test} standard test digits; each turned by a "
            "seeded uniform angle in [0°, 360°), bilinear, zero fill (`gzoo.mnist`)")),
        ("data", "standard MNIST, sha256 of the IDX files: " + ", ".join(
            f"`{k}` {v}" for k, v in (source.get("idx_sha256") or {}).items())
            + ("" if source.get("standard") else " (**not** the standard files)")),
        ("rotated digits sha256", ", ".join(
            f"{k} {v}" for k, v in (data.get("rotated_sha256") or {}).items()) or "—"),
    ]
    if recipe:
        cpu = metrics.get("cpu_seconds_per_epoch")
        rows.append(("training", (
            f"{recipe.get('epochs', '?')} epochs on all {protocol.get('n_train', '?')} training "
            f"digits, recipe `{recipe}` (`gzoo.images.Recipe`), dropout "
            f"{train.get('dropout', '?')}"
            + (f"; {float(cpu):.1f} CPU seconds per epoch on one thread" if isinstance(
                cpu, int | float) else "")
            + f" ({train.get('machine', '?')}, commit {train.get('commit', '?')})")))
    lines, source = _card_top(f"{title} — rotated MNIST, {group or 'plain CNN'}", rows, config,
                              title, folder, [
        "images = torch.rand(8, 1, 28, 28)  # float [B, 1, 28, 28] in [0, 1], white on black",
        "logits = model(images)  # [B, 10]",
        "print(logits.argmax(1))  # the predicted digits"])
    lines += [f"Its test error on your copy of the standard MNIST files: `gzoo eval {source} "
              "--data PATH` (the IDX files, gzipped or not, or `mnist.pkl.gz`).", ""]
    if train.get("command"):
        threads = list(train.get("threads_per_epoch") or [])
        if len(set(threads)) > 1:
            how = (f"This run was resumed with another torch thread count ({_epoch_runs(threads)}"
                   "), so a rerun reproduces its test error to within seed noise, not its "
                   "weights bit for bit.")
        else:
            how = ("The same weights, bit for bit, need the same seed, thread count and CPU "
                   "model; elsewhere a rerun reproduces the test error to within seed noise.")
        lines += ["## Reproduce", "", "```bash", str(train["command"]), "```", "",
                  how + " An interrupted run resumes from its last epoch.", ""]
    return "\n".join(lines + _weights_line(config))


# ---------------------------------------------------------------------------- output folders
def _fail(path: str | os.PathLike[str], error: OSError, doing: str) -> CheckpointError:
    """One :class:`CheckpointError` for an ``OSError`` (permission denied, file exists, no such
    folder, disk full, ...) met while ``doing`` something to ``path``."""
    where = f" ({error.filename})" if error.filename and os.fspath(error.filename) != os.fspath(
        path) else ""
    return CheckpointError(path, f"cannot {doing}: {error.strerror or error}{where}")


def _as_path(folder: object, name: str = "folder") -> Path:
    if not isinstance(folder, str | os.PathLike):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got "
                        f"{type(folder).__name__} {folder!r}")
    text = os.fspath(folder)
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str path, got {type(text).__name__} {text!r}")
    if not text or "\0" in text:
        raise ValueError(f"{name} must be a non-empty path without NUL bytes, got {text!r}")
    return Path(text)


def _listing_problem(folder: Path) -> str | None:
    """Why ``folder`` (an existing directory) is not a gzoo checkpoint folder that may be
    replaced; ``None`` if it is one: a ``config.json`` of this format and nothing but the
    files a checkpoint holds (those its config lists, or the files of a training run)."""
    config_path = folder / CONFIG_FILE
    if not config_path.is_file() or config_path.is_symlink():
        return f"it has no {CONFIG_FILE}"
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        return f"its {CONFIG_FILE} is larger than any gzoo config"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return f"its {CONFIG_FILE} is not JSON"
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        return f"its {CONFIG_FILE} is not a gzoo checkpoint config"
    listed = config.get("files")
    allowed = {WEIGHTS_FILE, CONFIG_FILE, README_FILE, *TRAINING_FILES}
    if isinstance(listed, list):
        allowed |= {n for n in listed if isinstance(n, str)}
    strangers = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()
                       if p.name not in allowed or p.is_symlink() or not p.is_file())
    if strangers:
        shown = ", ".join(strangers[:5]) + (f" and {len(strangers) - 5} more"
                                             if len(strangers) > 5 else "")
        return f"it holds {shown}, which a gzoo checkpoint does not"
    return None


def check_output(folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Check that a checkpoint can be written to ``folder``, before any work is done.

    Raises :class:`CheckpointError` (naming the folder and the reason) when ``folder`` is the
    working directory or one of its parents, a symbolic link, a file, an existing folder
    (unless ``overwrite``), an existing folder that is not a gzoo checkpoint (never replaced,
    even with ``overwrite``: see :func:`save_checkpoint`), or when the nearest existing parent
    is not a writable folder. Returns ``folder`` as a :class:`~pathlib.Path`.
    """
    path = _as_path(folder)
    try:
        resolved = path.resolve()
        cwd = Path.cwd().resolve()
        if resolved == cwd or resolved in cwd.parents:
            raise CheckpointError(path, (
                "is the working directory or one of its parents; a checkpoint needs a folder "
                "of its own (e.g. runs/NAME)"))
        if path.is_symlink():
            raise CheckpointError(path, "is a symbolic link; name the checkpoint folder itself")
        if path.exists():
            if not path.is_dir():
                raise CheckpointError(path, "exists and is not a folder")
            if not overwrite:
                raise CheckpointError(path, (
                    "already exists; pass overwrite=True (CLI: --overwrite)"))
            problem = _listing_problem(path)
            if problem is not None:
                raise CheckpointError(path, (
                    f"exists and is not a gzoo checkpoint folder ({problem}); overwrite only "
                    "replaces a checkpoint folder, so it was left alone"))
        ancestor = resolved.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise CheckpointError(path, f"cannot create it: {ancestor} is not a folder")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise CheckpointError(path, f"cannot create it: {ancestor} is not writable")
    except OSError as e:
        raise _fail(path, e, "check it") from None
    except RuntimeError as e:  # a symbolic-link loop in the path
        raise CheckpointError(path, f"cannot resolve it: {e}") from None
    return path


#: Checkpoint folders (resolved) this process holds the lock of → the lock file's descriptor.
_HELD: dict[Path, int] = {}


def _lock_file(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def output_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the lock on writing checkpoint ``folder`` for the duration of the block.

    The lock is an ``flock`` on ``.<name>.lock`` beside the folder (created, and removed on
    release; a killed process leaves only this empty file, which the next run reuses). A second
    process asking for the same folder gets a :class:`CheckpointError` at once; the lock is
    re-entrant within a process (training holds it while it saves). Parent folders it had to
    create are removed again if the block leaves no checkpoint in them.
    """
    path = _as_path(folder)
    key = path.resolve()
    if key in _HELD:
        yield path
        return
    made: list[Path] = []
    try:
        parent = key.parent
        while not parent.exists():
            made.append(parent)
            parent = parent.parent
        for p in reversed(made):
            p.mkdir()  # 0o777 less the umask
        lock = _lock_file(key)
        fd = _acquire(path, lock)
    except OSError as e:
        _remove_empty(made)
        raise _fail(path, e, "lock it") from None
    except BaseException:
        _remove_empty(made)
        raise
    _HELD[key] = fd
    try:
        yield path
    finally:
        del _HELD[key]
        with suppress(OSError):
            os.unlink(lock)
        os.close(fd)
        if not key.exists():
            _remove_empty(made)


def _acquire(path: Path, lock: Path) -> int:
    """Open and ``flock`` the lock file (checking it is still the one on disk after the lock is
    taken: a holder that just released it has unlinked it)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: an exclusively created file is the lock
        try:
            return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            raise CheckpointError(path, (
                f"another process is writing this checkpoint (lock file {lock}; remove it "
                "if no gzoo process is running)")) from None
    for _ in range(5):
        # O_NOFOLLOW: a symbolic link planted as the lock file is refused, never written through
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f" (process {holder})" if holder.isdigit() else ""
            raise CheckpointError(path, (
                f"another process{who} is writing this checkpoint right now (lock {lock}); "
                "wait for it to finish or choose another folder")) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        held = os.read(fd, 64).strip()
        if same and held and not held.isdigit():  # not a lock of ours: leave it alone
            os.close(fd)
            raise CheckpointError(path, (
                f"{lock} exists and is not a gzoo lock file; move it away to write here"))
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)
    raise CheckpointError(path, f"could not take the lock {lock}; try again")


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed write created (innermost first), if they are empty."""
    for p in folders:
        with suppress(OSError):
            p.rmdir()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode(requested: int) -> int:
    """The permissions a new file (``0o666``) or folder (``0o777``) gets under the umask."""
    return requested & ~_umask()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def non_finite(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating tensors of a state dict holding NaN or ±inf."""
    return [k for k, v in state.items()
            if v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all())]


# ---------------------------------------------------------------------------- saving
def save_checkpoint(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    rule: Rule | str | None = None,
    train_config: Mapping[str, Any] | Any | None = None,
    metrics: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    data: Mapping[str, Any] | None = None,
    certificate: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a checkpoint folder (module docstring); returns the folder.

    Nothing outside ``folder`` is changed: the checkpoint is written to a temporary sibling and
    renamed into place. With ``overwrite`` an existing ``folder`` is replaced only if it is a
    gzoo checkpoint folder (:func:`check_output`), and atomically: the old folder is renamed
    aside, the new one renamed in, and the old one deleted only then (a failure puts it back).
    Folders get ``0o777`` and files ``0o666``, less the umask. Every failure is a
    :class:`CheckpointError`, ``OSError`` included; so are weights holding NaN or ±inf.

    The task is the model's (:data:`TASK_MODELS`): a cellular-automaton model needs its
    ``rule``; an image model (:class:`gzoo.models.RotMNISTNet`) takes no rule and needs its
    ``data`` record instead.

    Args:
        model: a gzoo model (:data:`gzoo.models.MODELS`; a DDP wrapper is unwrapped).
        folder: the checkpoint folder to create.
        rule: the rule a cellular-automaton model simulates.
        train_config: the training recipe (a mapping, or an object with ``to_dict()``).
        metrics: results to record (exactness, accuracy, test error, timings, ...).
        overwrite: replace an existing checkpoint ``folder``; otherwise an existing ``folder``
            is a :class:`CheckpointError`.
        extra_files: ``{name in the folder: source file}`` copied in as well.
        data: an image model's data record (:attr:`gzoo.mnist.RotMNIST.record`: protocol and
            checksums, checked by :func:`gzoo.mnist.check_record`).
        certificate: what :meth:`gzoo.verify.ExactResult.certificate` established (recorded
            as ``config["certificate"]``, stated in one sentence on the card); a
            cellular-automaton model only.
    """
    folder = _as_path(folder)
    model = _unwrap(model)
    if not isinstance(model, ZooModel) or type(model).__name__ not in MODELS:
        raise CheckpointError(folder, (
            f"can only save gzoo models ({', '.join(sorted(MODELS))}), got {type(model).__name__}"
        ))
    task = next((t for t, base in TASK_MODELS.items() if isinstance(model, base)), None)
    if task is None:
        raise CheckpointError(folder, f"{type(model).__name__} does no task this gzoo saves "
                                      f"({', '.join(TASKS)})")
    if task == TASK_CA:
        if rule is None:
            raise CheckpointError(folder, "a cellular-automaton model needs its rule (rule=...)")
        if data is not None:
            raise CheckpointError(folder, "data= is the record of an image model; a "
                                          "cellular-automaton model has a rule instead")
        rule = Rule.parse(rule)
    else:
        if certificate is not None:
            raise CheckpointError(folder, "certificate= records a cellular-automaton model's "
                                          "exactness; an image model has none")
        if rule is not None:
            raise CheckpointError(folder, f"an image model ({type(model).__name__}) takes no "
                                          f"rule, got rule={_short(rule)}")
        if data is None:
            raise CheckpointError(folder, f"an image model ({type(model).__name__}) needs its "
                                          "data record (data=RotMNIST.record)")
        try:
            data = check_record(_jsonable(dict(data)))
        except (TypeError, ValueError) as e:
            raise CheckpointError(folder, f"bad data record: {e}") from None
    extras = dict(extra_files or {})
    for name, src in extras.items():
        if (not isinstance(name, str) or Path(name).name != name or name.startswith(".")
                or name in (WEIGHTS_FILE, CONFIG_FILE, README_FILE)):
            raise CheckpointError(folder, f"bad extra file name {name!r}")
        if not Path(src).is_file():
            raise CheckpointError(folder, f"extra file {name!r}: no such file {os.fspath(src)}")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    broken = non_finite(state)
    if broken:
        raise CheckpointError(folder, (
            f"refusing to save weights holding NaN or inf: {', '.join(broken[:5])}"))
    to_dict = getattr(train_config, "to_dict", None)
    if callable(to_dict):  # a TrainConfig
        train_config = to_dict()
    files = sorted({WEIGHTS_FILE, CONFIG_FILE, README_FILE, *extras})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gzoo_version": __version__,
        "task": task,
        "rule": None if rule is None else str(rule),
        **({} if data is None else {"data": data}),
        **model.describe(),
        "train": _jsonable(dict(train_config)) if train_config is not None else None,
        "metrics": _jsonable(dict(metrics)) if metrics is not None else None,
        **({"certificate": _jsonable(dict(certificate))} if certificate is not None else {}),
        "files": files,
    }
    check_output(folder, overwrite=overwrite)
    with output_lock(folder):
        check_output(folder, overwrite=overwrite)  # again, now that no gzoo writer can race us
        try:
            _write_folder(folder, state, config, extras)
        except OSError as e:
            raise _fail(folder, e, "write the checkpoint") from None
    return folder


def _write_folder(folder: Path, state: dict[str, torch.Tensor], config: dict[str, Any],
                  extras: Mapping[str, str | os.PathLike[str]]) -> None:
    """Write the folder's files into a temporary sibling, then rename it into place."""
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        save_file(state, tmp / WEIGHTS_FILE, metadata={"format": "pt"})
        config = {**config, "weights_sha256": sha256_file(tmp / WEIGHTS_FILE)}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / README_FILE).write_text(model_card(config, folder.name, folder=folder),
                                       encoding="utf-8")
        for name, src in extras.items():
            shutil.copyfile(src, tmp / name)
        for p in tmp.iterdir():
            p.chmod(_mode(0o666))
            _fsync(p)
        tmp.chmod(_mode(0o777))
        if folder.exists():  # overwrite: move the old one aside, swap, then delete it
            trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, trash / folder.name)
            try:
                os.replace(tmp, folder)
            except BaseException:
                os.replace(trash / folder.name, folder)
                trash.rmdir()
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- loading
def _task(config: Mapping[str, Any]) -> str:
    """The config's task; configs written before tasks existed are cellular automata."""
    task: str = config.get("task", TASK_CA)
    return task


def resolve_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """A zoo name (``"b36s23_p8"``) → its installed folder; otherwise the path itself.

    A name that is neither installed nor an existing path is a :class:`CheckpointError`
    listing the installed names.
    """
    from gzoo import zoo

    path = _as_path(name_or_path, "name_or_path")
    text = os.fspath(path)
    if isinstance(name_or_path, str) and text in zoo.available():
        return zoo.path_of(text)
    try:
        if path.exists():
            return (path.parent if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE)
                    else path)
    except OSError as e:
        raise _fail(path, e, "read it") from None
    looks_like_name = isinstance(name_or_path, str) and os.sep not in text and "/" not in text
    if looks_like_name:
        names = ", ".join(zoo.available()) or "none installed"
        raise CheckpointError(path, (
            f"no such checkpoint: not an installed zoo name (available: {names}) "
            "and no such folder"
        ))
    raise CheckpointError(path, "no such checkpoint folder")


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (config values quoted in messages)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[:limit - 5] + " ...]"


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and check a checkpoint's ``config.json`` (format, version, required keys and their
    types; at most :data:`MAX_CONFIG_BYTES`)."""
    folder = _as_path(folder)
    path = folder / CONFIG_FILE
    try:
        if not folder.is_dir():
            raise CheckpointError(folder, "not a folder (a checkpoint is a folder)")
        if not path.is_file():
            raise CheckpointError(path, "missing file (not a gzoo checkpoint folder?)")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise CheckpointError(path, (
                f"{size:,} bytes: too large for a gzoo config (at most {MAX_CONFIG_BYTES:,})"))
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise _fail(path, e, "read it") from None
    except UnicodeDecodeError as e:
        raise CheckpointError(path, f"bad JSON: not UTF-8 text ({e.reason})") from None
    try:
        config = json.loads(text)
    except RecursionError:
        raise CheckpointError(path, "bad JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, or an integer too long to convert
        raise CheckpointError(path, f"bad JSON: {e}") from None
    if not isinstance(config, dict):
        raise CheckpointError(path, "bad config: expected a JSON object")
    if config.get("format") != FORMAT:
        raise CheckpointError(path, (
            f"not a gzoo checkpoint config (format {_short(config.get('format'))}, "
            f"expected {FORMAT!r})"
        ))
    version = config.get("format_version")
    if (isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION
            or version < 1):
        raise CheckpointError(path, (
            f"unsupported format_version {_short(version)} "
            f"(this gzoo reads up to {FORMAT_VERSION})"
        ))
    model = config.get("model")
    if (not isinstance(model, dict) or not isinstance(model.get("class"), str)
            or not isinstance(model.get("kwargs", {}), dict)):
        raise CheckpointError(path, 'bad config: "model" must be {"class": str, "kwargs": {...}}')
    task = _task(config)
    if not isinstance(task, str) or task not in TASKS:
        raise CheckpointError(path, f"unknown task {_short(task)}; this gzoo reads {list(TASKS)}")
    for key in ("rule", "weights_sha256") if task == TASK_CA else ("weights_sha256",):
        if not isinstance(config.get(key), str):
            raise CheckpointError(path, f"bad config: missing or non-string {key!r}")
    if task == TASK_ROTMNIST:
        if config.get("rule") is not None:
            raise CheckpointError(path, f"bad config: task {task!r} has no rule, got "
                                        f"{_short(config['rule'])}")
        try:
            check_record(config.get("data"))
        except ValueError as e:
            raise CheckpointError(path, f"bad config: {e}") from None
    for key, types, want in (("metrics", (dict,), "an object"), ("train", (dict,), "an object"),
                             ("group", (str,), "a string"), ("n_params", (int,), "an int"),
                             ("files", (list,), "a list"),
                             ("certificate", (dict,), "an object")):
        value = config.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise CheckpointError(path, f"bad config: {key!r} must be {want} or null, "
                                        f"got {_short(value)}")
    return config


def load_checkpoint(
    folder: str | os.PathLike[str], device: torch.device | str | None = None
) -> ZooModel:
    """Load a checkpoint folder: the model in eval mode, its :class:`CheckpointInfo` as
    ``model.checkpoint``.

    Checks, each a :class:`CheckpointError` naming the file: the device (it must exist here),
    the config (see :func:`read_config`), the rule, the model class (one of
    :data:`gzoo.models.MODELS`, a model of the config's task: :data:`TASK_MODELS`) and its
    arguments
    (within :data:`gzoo.models.MAX_PARAMS` and :data:`gzoo.models.MAX_DEPTH`, checked before
    anything is allocated), the weights file's sha256 against the config, that the weights fit
    the model (names, shapes, and dtypes: floating weights stay in the file's floating dtype,
    nothing else is cast), that they are finite, and that the recorded group and size are the
    model's.
    """
    from gzoo._checks import check_device

    folder = _as_path(folder)
    dev = None
    if device is not None:
        try:
            dev = check_device(device)
        except (TypeError, ValueError) as e:
            raise CheckpointError(folder, f"cannot load onto this device: {e}") from None
    config = read_config(folder)
    cfg_path = folder / CONFIG_FILE
    rule = None
    if config.get("rule") is not None:
        try:
            rule = Rule.parse(config["rule"])
        except ValueError as e:
            raise CheckpointError(cfg_path, f"bad rule: {e}") from None
    cls_name = config["model"]["class"]
    cls = MODELS.get(cls_name)
    if cls is None:
        raise CheckpointError(cfg_path, (
            f"unknown model class {_short(cls_name)}; this gzoo knows {', '.join(sorted(MODELS))}"
        ))
    task = _task(config)
    if not issubclass(cls, TASK_MODELS[task]):
        raise CheckpointError(cfg_path, (
            f"task {task!r} needs a {TASK_MODELS[task].__name__} model, got class {cls_name!r}"
        ))
    kwargs = config["model"].get("kwargs", {})
    try:
        model = cls(**kwargs)  # the constructor bounds the size before it allocates anything
    except (TypeError, ValueError) as e:
        raise CheckpointError(cfg_path, (
            f"model arguments {_short(kwargs)} do not fit {cls_name}: {e}")) from None

    weights = folder / WEIGHTS_FILE
    header = _weights_header(weights, config["weights_sha256"])
    expected = model.state_dict()
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    shapes = [
        f"{k}: file {header[k][1]} vs model {list(expected[k].shape)}"
        for k in sorted(set(header) & set(expected))
        if header[k][1] != list(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        raise CheckpointError(weights, (
            f"weights do not fit {cls_name}({_short(kwargs)}): " + ", ".join(parts)
        ))
    floating = _check_dtypes(weights, header, expected)
    state = _load_weights(weights)
    broken = non_finite(state)
    if broken:
        raise CheckpointError(weights, (
            f"weights hold NaN or inf (a diverged training?): {', '.join(broken[:5])}"))
    if floating is not None:
        model.to(floating)  # the file's precision: nothing is cast
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(weights, f"weights do not fit {cls_name}: {e}") from None
    # p4m and p8 layers have the same weight shapes: the recorded group and size must agree too
    described = model.describe()
    for key in ("group", "n_params"):
        built = described[key]
        if key in config and config[key] != built:
            raise CheckpointError(cfg_path, (
                f"inconsistent config: {key} is {_short(config[key])} but {cls_name}"
                f"({_short(kwargs)}) has {key} {built!r}"
            ))
    if dev is not None:
        model.to(dev)
    model.eval()
    model.checkpoint = CheckpointInfo(
        path=folder, task=task, rule=rule, config_json=json.dumps(config))
    return model


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def _weights_header(weights: Path, sha256: str) -> dict[str, tuple[str, list[int]]]:
    """``{name: (dtype, shape)}`` of a weights file whose sha256 is ``sha256``, read from the
    safetensors header alone (nothing is loaded before it is known to fit)."""
    from safetensors import SafetensorError, safe_open

    try:
        if not weights.is_file():
            raise CheckpointError(weights, "missing file")
        digest = sha256_file(weights)
    except OSError as e:
        raise _fail(weights, e, "read it") from None
    if digest != sha256:
        raise CheckpointError(weights, (
            f"sha256 mismatch: file has {digest}, config.json expects {_short(sha256)} "
            "(the weights were changed or corrupted)"
        ))
    try:
        with safe_open(weights, framework="pt") as f:
            return {k: (f.get_slice(k).get_dtype(), list(f.get_slice(k).get_shape()))
                    for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(weights, f"unreadable safetensors file: {e}") from None


def _load_weights(weights: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(weights)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(weights, f"unreadable safetensors file: {e}") from None


def _check_dtypes(weights: Path, header: Mapping[str, tuple[str, list[int]]],
                  expected: Mapping[str, torch.Tensor]) -> torch.dtype | None:
    """The floating dtype of the file's floating tensors (one for all of them), after checking
    that each tensor is floating exactly where the model's is and that the others have the
    model's dtype: bool or integer weights are refused, never cast."""
    wrong = []
    floats = set()
    for k, want in expected.items():
        got = _SAFETENSORS_DTYPES.get(header[k][0])
        if got is not None and got.is_floating_point:
            floats.add(got)
        if got is None or want.is_floating_point() != got.is_floating_point or (
                not want.is_floating_point() and got != want.dtype):
            kind = "a floating dtype" if want.is_floating_point() else str(want.dtype)
            wrong.append(f"{k} is {header[k][0]}, expected {kind}")
    if wrong:
        raise CheckpointError(weights, (
            f"weights of the wrong dtype (gzoo does not cast them): {'; '.join(wrong[:5])}"))
    if len(floats) > 1:
        raise CheckpointError(weights, f"floating weights mix dtypes {sorted(map(str, floats))}")
    return floats.pop() if floats else None


def load_pretrained(
    name_or_path: str | os.PathLike[str], device: torch.device | str | None = None
) -> ZooModel:
    """Load a zoo checkpoint by name (``"b36s23_p8"``) or any checkpoint folder by path.

    Returns the model in eval mode — a :class:`gzoo.models.CAModel` for a cellular-automaton
    checkpoint (call ``.step(boards)`` or ``model(onehot)``), a :class:`gzoo.models.RotMNISTNet`
    for a rotated-MNIST one (``model(pixels)`` → logits ``[B, 10]``) — carrying a read-only
    :class:`CheckpointInfo` as ``model.checkpoint`` (``.task``, ``.rule``, ``.config``,
    ``.data``, ``.path``, ...). Failures raise :class:`CheckpointError`.
    """
    return load_checkpoint(resolve_checkpoint(name_or_path), device)


def zoo_entries(task: str | None = None) -> list[dict[str, Any]]:
    """One row per installed zoo checkpoint (of ``task`` only, one of :data:`TASKS`, when
    given): name, task, rule (``None`` for images), group, model, params, and the results —
    exact and accuracy for a cellular automaton, test_error for an image model. A row whose
    config cannot be read has an ``error`` instead (and is listed under every task)."""
    from gzoo import zoo

    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)} or None, got {_short(task)}")
    rows: list[dict[str, Any]] = []
    for name in zoo.available():
        try:
            config = read_config(zoo.path_of(name))
        except CheckpointError as e:
            rows.append({"name": name, "error": e.reason})
            continue
        if task is not None and _task(config) != task:
            continue
        metrics = config.get("metrics") or {}
        row = {
            "name": name,
            "task": _task(config),
            "rule": config.get("rule"),
            "group": config.get("group"),
            "model": config["model"]["class"],
            "n_params": config.get("n_params"),
        }
        if row["task"] == TASK_CA:
            row |= {"exact": metrics.get("exact"), "accuracy": metrics.get("accuracy")}
        else:
            row["test_error"] = metrics.get("test_error")
        rows.append(row)
    return rows
