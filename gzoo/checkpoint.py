"""Checkpoint folders: save, load, verify, and the installed zoo.

A checkpoint is a folder holding

* ``model.safetensors`` — the state dict, nothing else (safetensors metadata ``format: pt``);
* ``config.json`` — ``{"format": "gzoo-checkpoint", "format_version": 1, "gzoo_version",
  "task", "rule", "model": {"class", "kwargs"}, "group", "n_params", "train", "metrics",
  "certificate", "weights_sha256"}``, enough to rebuild the model and to check the weights file
  (``task`` is optional and defaults to ``"cellular-automaton"``, the only task so far; ``rule``
  is required for that task; ``certificate`` is optional: what
  :meth:`gzoo.verify.ExactResult.certificate` established — the method, what it covered, the
  checks and the gzoo version);
* ``README.md`` — a model card generated from the config;

and possibly extra files a training run adds (``metrics.jsonl``, ``training_curve.png``).

Loading returns the model in eval mode; what the folder says about it travels beside the
module's weights as one read-only record, ``model.checkpoint`` (a :class:`CheckpointInfo`:
``path``, ``task``, ``rule``, and the parsed ``config``).

Saving writes everything into a temporary sibling folder and renames it into place, so a crash
leaves no half-written checkpoint, and it never replaces an existing folder unless asked
(``overwrite=True``). Every loading failure raises :class:`CheckpointError` naming the path and
the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gzoo._version import __version__
from gzoo.ca import Rule
from gzoo.models import MODELS, CAModel, ZooModel

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "README_FILE",
    "TASKS",
    "TASK_CA",
    "WEIGHTS_FILE",
    "CheckpointError",
    "CheckpointInfo",
    "certificate_sentence",
    "load_checkpoint",
    "load_pretrained",
    "model_card",
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
#: Every task this gzoo reads (``config.json``'s ``"task"``).
TASKS = (TASK_CA,)


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
        task: what the model computes; :data:`TASK_CA` (one step of ``rule``) so far.
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


def model_card(config: Mapping[str, Any], name: str | None = None) -> str:
    """The ``README.md`` of a checkpoint, generated from its ``config.json``."""
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
        how = ("exhaustive check of all 512 3×3 neighbourhoods: exact on every board of every "
               "size" if method == "exhaustive"
               else f"checked in {metrics.get('n_contexts', '?')} random contexts per pattern")
        verdict = "**yes**" if metrics["exact"] else "**no**"
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
        if train.get("data_used") == "patterns":  # nets trained together, drawn one by one
            run = (f"{metrics.get('steps_run', '?')} steps of the net proved exact, "
                   f"{metrics.get('total_steps', '?')} steps of the population, in "
                   f"{float(metrics['seconds']):.1f} s (net {metrics.get('restarts_used', 0) + 1}"
                   f" drawn, seed {seed}, {where})")
        else:
            steps = f"{metrics.get('steps_run', '?')} steps"
            total = metrics.get("total_steps")
            if total is not None and total != metrics.get("steps_run"):
                steps += f" ({total} over all attempts)"
            run = (f"{steps} in {float(metrics['seconds']):.1f} s (seed {seed}, "
                   f"{metrics.get('restarts_used', 0)} restarts, {where})")
        rows.append(("training", run))
    rows.append(("gzoo", str(config.get("gzoo_version", "?"))))

    lines = [f"# {title} — {rule}{common}, {group or model['class']}", ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
    lines += [
        "## Use", "", "```python", "import torch", "", "import gzoo", "",
        f'model = gzoo.load_pretrained("{title}")  # zoo name, or the path of this folder',
        f"rule = model.checkpoint.rule  # {rule}",
        "boards = torch.rand(8, 64, 64) < 0.3  # bool/uint8 [B, H, W] or [H, W]",
        "next_boards = model.step(boards)",
        "print(gzoo.verify_exact(model, rule).n_wrong)  # 0 if exact", "```", "",
    ]
    if train.get("command"):
        lines += ["## Reproduce", "", "```bash", str(train["command"]), "```", ""]
        threads = train.get("torch_threads")
        plural = "s" if threads != 1 else ""
        used = f" (trained with {threads} torch thread{plural})." if threads else "."
        lines += [
            "Bit-for-bit deterministic in a single CPU process for a given seed and thread count"
            + used, ""]
    lines += [f"Weights: `{WEIGHTS_FILE}`, sha256 `{config.get('weights_sha256', '?')}`.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- saving
def save_checkpoint(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    rule: Rule | str,
    train_config: Mapping[str, Any] | Any | None = None,
    metrics: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    certificate: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a checkpoint folder (module docstring); returns the folder.

    Args:
        model: a gzoo model (:data:`gzoo.models.MODELS`; a DDP wrapper is unwrapped).
        folder: the checkpoint folder to create.
        rule: the rule the model simulates.
        train_config: the training recipe (a mapping, or an object with ``to_dict()``).
        metrics: results to record (exactness, accuracy, timings, ...).
        overwrite: replace an existing ``folder``; otherwise that is a :class:`CheckpointError`.
        extra_files: ``{name in the folder: source file}`` copied in as well.
        certificate: what :meth:`gzoo.verify.ExactResult.certificate` established (recorded
            as ``config["certificate"]``, stated in one sentence on the card).
    """
    folder = Path(folder)
    model = _unwrap(model)
    if not isinstance(model, ZooModel) or type(model).__name__ not in MODELS:
        raise CheckpointError(folder, (
            f"can only save gzoo models ({', '.join(sorted(MODELS))}), got {type(model).__name__}"
        ))
    rule = Rule.parse(rule)
    if folder.exists() and not overwrite:
        raise CheckpointError(folder, "already exists; pass overwrite=True (CLI: --overwrite)")
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(folder, "exists and is not a folder")
    to_dict = getattr(train_config, "to_dict", None)
    if callable(to_dict):  # a TrainConfig
        train_config = to_dict()

    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, tmp / WEIGHTS_FILE, metadata={"format": "pt"})
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "gzoo_version": __version__,
            "task": TASK_CA,
            "rule": str(rule),
            **model.describe(),
            "train": _jsonable(dict(train_config)) if train_config is not None else None,
            "metrics": _jsonable(dict(metrics)) if metrics is not None else None,
            **({"certificate": _jsonable(dict(certificate))} if certificate is not None else {}),
            "weights_sha256": sha256_file(tmp / WEIGHTS_FILE),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / README_FILE).write_text(model_card(config, folder.name), encoding="utf-8")
        for name, src in (extra_files or {}).items():
            if Path(name).name != name or name in (WEIGHTS_FILE, CONFIG_FILE, README_FILE):
                raise CheckpointError(folder, f"bad extra file name {name!r}")
            shutil.copyfile(src, tmp / name)
        if folder.exists():  # overwrite: move the old one aside, then swap
            trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, trash / folder.name)
            os.replace(tmp, folder)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


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

    text = os.fspath(name_or_path)
    if isinstance(name_or_path, str) and text in zoo.available():
        return zoo.path_of(text)
    path = Path(text)
    if path.exists():
        return path.parent if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE) else path
    looks_like_name = isinstance(name_or_path, str) and os.sep not in text and "/" not in text
    if looks_like_name:
        names = ", ".join(zoo.available()) or "none installed"
        raise CheckpointError(path, (
            f"no such checkpoint: not an installed zoo name (available: {names}) "
            "and no such folder"
        ))
    raise CheckpointError(path, "no such checkpoint folder")


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and check a checkpoint's ``config.json`` (format, version, required keys)."""
    path = Path(folder) / CONFIG_FILE
    if not Path(folder).is_dir():
        raise CheckpointError(folder, "not a folder (a checkpoint is a folder)")
    if not path.is_file():
        raise CheckpointError(path, "missing file (not a gzoo checkpoint folder?)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"bad JSON: {e}") from None
    if not isinstance(config, dict):
        raise CheckpointError(path, "bad config: expected a JSON object")
    if config.get("format") != FORMAT:
        raise CheckpointError(path, (
            f"not a gzoo checkpoint config (format {config.get('format')!r}, "
            f"expected {FORMAT!r})"
        ))
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(path, (
            f"unsupported format_version {version!r} (this gzoo reads up to {FORMAT_VERSION})"
        ))
    model = config.get("model")
    if (not isinstance(model, dict) or not isinstance(model.get("class"), str)
            or not isinstance(model.get("kwargs", {}), dict)):
        raise CheckpointError(path, 'bad config: "model" must be {"class": str, "kwargs": {...}}')
    task = _task(config)
    if task not in TASKS:
        raise CheckpointError(path, f"unknown task {task!r}; this gzoo reads {list(TASKS)}")
    for key in ("rule", "weights_sha256") if task == TASK_CA else ("weights_sha256",):
        if not isinstance(config.get(key), str):
            raise CheckpointError(path, f"bad config: missing or non-string {key!r}")
    return config


def load_checkpoint(
    folder: str | os.PathLike[str], device: torch.device | str | None = None
) -> ZooModel:
    """Load a checkpoint folder: the model in eval mode, its :class:`CheckpointInfo` as
    ``model.checkpoint``.

    Checks, each a :class:`CheckpointError`: the config (see :func:`read_config`), the rule,
    the model class (one of :data:`gzoo.models.MODELS`, a cellular-automaton model for that
    task) and its arguments, the weights file's sha256 against the config, that the weights
    fit the model (names and shapes), and that the recorded group and size are the model's.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
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
            f"unknown model class {cls_name!r}; this gzoo knows {', '.join(sorted(MODELS))}"
        ))
    if _task(config) == TASK_CA and not issubclass(cls, CAModel):
        raise CheckpointError(cfg_path, (
            f"task {TASK_CA!r} needs a cellular-automaton model, got class {cls_name!r}"
        ))
    kwargs = config["model"].get("kwargs", {})
    try:
        model = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(cfg_path, f"model arguments {kwargs} do not fit {cls_name}: {e}") \
            from None

    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(weights, "missing file")
    digest = sha256_file(weights)
    if digest != config["weights_sha256"]:
        raise CheckpointError(weights, (
            f"sha256 mismatch: file has {digest}, config.json expects {config['weights_sha256']} "
            "(the weights were changed or corrupted)"
        ))
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(weights, f"unreadable safetensors file: {e}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
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
            f"weights do not fit {cls_name}({kwargs}): " + ", ".join(parts)
        ))
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
                f"inconsistent config: {key} is {config[key]!r} but {cls_name}({kwargs}) "
                f"has {key} {built!r}"
            ))
    if device is not None:
        model.to(device)
    model.eval()
    model.checkpoint = CheckpointInfo(
        path=folder, task=_task(config), rule=rule, config_json=json.dumps(config))
    return model


def load_pretrained(
    name_or_path: str | os.PathLike[str], device: torch.device | str | None = None
) -> ZooModel:
    """Load a zoo checkpoint by name (``"b36s23_p8"``) or any checkpoint folder by path.

    Returns the model in eval mode (a :class:`gzoo.models.CAModel` for a cellular-automaton
    checkpoint: call ``.step(boards)`` or ``model(onehot)``), carrying a read-only
    :class:`CheckpointInfo` as ``model.checkpoint`` (``.rule``, ``.config``, ``.path``, ...).
    Failures raise :class:`CheckpointError`.
    """
    return load_checkpoint(resolve_checkpoint(name_or_path), device)


def zoo_entries() -> list[dict[str, Any]]:
    """One row per installed zoo checkpoint: name, rule, group, params, exact, accuracy (a row
    whose config cannot be read has an ``error`` instead)."""
    from gzoo import zoo

    rows: list[dict[str, Any]] = []
    for name in zoo.available():
        try:
            config = read_config(zoo.path_of(name))
        except CheckpointError as e:
            rows.append({"name": name, "error": e.reason})
            continue
        metrics = config.get("metrics") or {}
        rows.append({
            "name": name,
            "rule": config["rule"],
            "group": config.get("group"),
            "model": config["model"]["class"],
            "n_params": config.get("n_params"),
            "exact": metrics.get("exact"),
            "accuracy": metrics.get("accuracy"),
        })
    return rows
