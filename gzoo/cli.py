"""The ``gzoo`` command line: thin wrappers that parse, call the library and print.

    gzoo demo                                    a pretrained p8 net runs HighLife beside the rule
    gzoo equivariance                            equivariance error of every layer
    gzoo infer-rule DIR_OR_NAME                  read the rule back out of a network
    gzoo symmetry DIR_OR_NAME | --rule R         which symmetries the dynamics respect
    gzoo show DIR_OR_NAME --out fig.png          filters, class response, rollout
    gzoo simulate --rule B36/S23 --out run.png   a simulation history (PNG montage or GIF)
    gzoo simulate --pattern gun.rle --out a.gif  an RLE pattern on a torus
    gzoo train --rule B36/S23 --model p8 --out DIR
    gzoo eval DIR_OR_NAME                        exactness, held-out accuracy, rollout agreement
    gzoo eval rotmnist_p4 --data PATH            an image entry's rotated-MNIST test error
    gzoo zoo                                     the installed checkpoints
    gzoo atlas --family outer_totalistic --rules 100 --out DIR   a seeded sample × groups

Every option is checked before any work (ranges, densities in [0, 1], devices that exist,
output paths, the memory a run needs). Errors are one line on stderr and exit status 2; no
traceback (set ``GZOO_TRACEBACK=1`` to see one). Long runs report progress on stderr: a bar on
a terminal, a line every few seconds in a pipe or under nohup.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import torch

from gzoo.ca.families import FAMILIES

if TYPE_CHECKING:
    from gzoo.ca import Rule
    from gzoo.models import CAModel, ZooModel
    from gzoo.train import TrainConfig


T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------------- option types
def _quote(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _checked(convert: Callable[[str], T], kind: str, check: Callable[[T], T]
             ) -> Callable[[str], T]:
    """An option type: ``convert`` the text (else "expected ``kind``"), then ``check`` it; both
    failures become argparse's one-line usage error naming the value."""

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {_quote(text)}") from None
        try:
            return check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = kind
    return parse


def _int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An option type: an int in ``[minimum, maximum]`` (checked by ``check_int``)."""
    from gzoo._checks import check_int

    return _checked(int, "an int", lambda v: check_int("the value", v, minimum, maximum))


def _float(minimum: float, maximum: float) -> Callable[[str], float]:
    """An option type: a finite float in ``[minimum, maximum]``."""
    from gzoo._checks import check_float

    return _checked(float, "a number", lambda v: check_float("the value", v, minimum, maximum))


def _device(text: str) -> str:
    """An option type: a device that exists here (``gzoo._checks.check_device``)."""
    from gzoo._checks import check_device

    try:
        check_device(text, "device")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _picture(*suffixes: str) -> Callable[[str], str]:
    """An option type: an output file name ending in one of ``suffixes``."""

    def parse(text: str) -> str:
        if not text.lower().endswith(suffixes):
            raise argparse.ArgumentTypeError(
                f"must end in {' or '.join(suffixes)}, got {_quote(text)}")
        return text

    parse.__name__ = "file"
    return parse


_SEED = _int(0, 2**64 - 1)  # torch.Generator takes 64-bit seeds
_SIZE = _int(1)
_STEPS = _int(0)
_DENSITY = _float(0.0, 1.0)


def _writable_file(path: str) -> None:
    """Refuse, before any work, an output file that cannot be written: a folder, or one whose
    nearest existing parent is not a writable folder."""
    from pathlib import Path

    p = Path(path).absolute()
    if p.is_dir():
        raise ValueError(f"--out {path!r} is a folder; give a file name")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path!r}: cannot write into {parent}")


#: Main memory per cell of drawing a random soup (float32 draws, then the board).
SOUP_BYTES_PER_CELL = 5
#: Memory per cell of one :func:`gzoo.ca.step` by backend, the board and its successor included:
#: peaks of 9.0 (bytes) and 1.19 (bits) bytes per cell measured on a 20000² board
#: (``benchmarks/RESULTS.md``), rounded up.
STEP_BYTES_PER_CELL = {"bytes": 16, "bits": 3}


def _step_bytes_per_cell(rule: Rule, cells: int) -> int:
    """The memory per cell of a step on a board of ``cells`` cells, with the backend
    ``backend="auto"`` picks for it (:data:`gzoo.ca.simulate.BITS_MIN_CELLS`)."""
    from gzoo.ca.simulate import BITS_MIN_CELLS

    bits = cells >= BITS_MIN_CELLS["counts" if rule.is_outer_totalistic else "table"]
    return STEP_BYTES_PER_CELL["bits" if bits else "bytes"]


def _check_memory(what: str, hint: str, host: float, work: float, device: str) -> None:
    """Refuse a run whose estimate does not fit: ``host`` bytes kept in main memory (histories,
    pictures, data), ``work`` bytes of computation on ``device`` (main memory for the CPU)."""
    from gzoo._checks import check_device, check_memory

    dev = check_device(device)
    if dev.type == "cpu":
        check_memory(int(host + work), what, hint)
    else:
        check_memory(int(host), what, hint)
        check_memory(int(work), what, hint, device=dev)


def _equivariance_table(dtypes: tuple[torch.dtype, ...], device: str = "cpu") -> None:
    from gzoo._checks import check_device
    from gzoo.layers import LAYERS

    dev = check_device(device)
    print("Max relative equivariance error ‖Φ(L_g x) − L_g Φ(x)‖/‖Φ(x)‖ per group element")
    print("(3×3 kernels, circular padding, 2→3 fields, random 15×15 inputs; p8: 90° subgroup)\n")
    for dtype in dtypes:
        print(f"{str(dtype).removeprefix('torch.')}:")
        print(f"  {'layer':<12}" + "".join(f"{'g=' + str(g):>10}" for g in range(8)))
        for cls in LAYERS:
            layer = cls(2, 3, 3, padding=1, padding_mode="circular").to(device=dev, dtype=dtype)
            errs = layer.check_equivariance()
            cells = "".join(
                f"{errs[g]:>10.1e}" if g in errs else f"{'-':>10}" for g in range(8)
            )
            print(f"  {cls.__name__:<12}{cells}")
        print()


def _equivariance(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    _equivariance_table((torch.float32, torch.float64), args.device)
    return 0


def _load_ca_model(name_or_path: str, device: str | None = None) -> tuple[CAModel, Rule]:
    """A cellular-automaton checkpoint and its rule; anything else is a one-line error."""
    from gzoo.checkpoint import load_pretrained
    from gzoo.models import CAModel

    model = load_pretrained(name_or_path, device=device)
    rule = model.checkpoint.rule if model.checkpoint is not None else None
    if not isinstance(model, CAModel) or rule is None:
        raise ValueError(f"{name_or_path} is not a cellular-automaton checkpoint "
                         f"({type(model).__name__} without a rule)")
    return model, rule


def _check_rollout_memory(model: CAModel, size: int, steps: int, device: str) -> None:
    """A self-fed rollout beside the rule keeps both histories (``2·(steps + 1)`` boards) in
    main memory and runs the model on one board at a time."""
    from gzoo.models import activation_bytes_per_cell

    cells = size * size
    _check_memory(f"a rollout of {steps} steps on {size}×{size}", "lower --size or --steps",
                  host=(2 * (steps + 1) + SOUP_BYTES_PER_CELL) * cells,
                  work=activation_bytes_per_cell(model) * cells, device=device)


def _demo(args: argparse.Namespace) -> int:
    """The zoo at work: a pretrained network runs its rule beside the exact simulator."""
    import time

    from gzoo.equivariance import probe_model
    from gzoo.infer import infer_rule
    from gzoo.plots import save_rollout_comparison
    from gzoo.verify import rollout_histories, verify_exact

    _writable_file(args.out)
    t0 = time.perf_counter()
    model, rule = _load_ca_model(args.model, args.device)
    _check_rollout_memory(model, args.size, args.steps, args.device)
    print(f"loaded {args.model}: {type(model).__name__}({model.init_kwargs()}), "
          f"{model.n_params} parameters, trained on {rule} ({rule.name or 'unnamed'})")
    print(f"exactness: {verify_exact(model, rule).summary()}")

    g = torch.Generator().manual_seed(args.seed)
    soup = (torch.rand(args.size, args.size, generator=g) < args.density).to(torch.uint8)
    net_history, rule_history = rollout_histories(model, rule, soup, args.steps)
    same = (net_history == rule_history).flatten(1).all(1)
    agree = (net_history == rule_history).double().mean().item()
    diverged = (~same).nonzero()
    print(f"rollout: {args.steps} steps on a {args.size}×{args.size} torus from a density "
          f"{args.density} soup: {100 * agree:.4f} % of cells agree; "
          + ("identical at every step" if diverged.numel() == 0
             else f"first difference at step {int(diverged[0])}"))
    print(f"  live cells at the end: network {int(net_history[-1].sum())}, "
          f"rule {int(rule_history[-1].sum())}")

    inf = infer_rule(model, check_steps=32)
    print(f"rule read back from the network: {inf.summary()}")

    print("equivariance, relative error ‖f(L_g x) − L_g f(x)‖/‖f(x)‖ per group element g:")
    for probe in probe_model(model):
        print(f"  {probe.summary()}")
    print()
    _equivariance_table((torch.float32,), args.device)
    path = save_rollout_comparison(net_history, rule_history, args.out, title=(
        f"{args.model}: network (top) beside {rule} (bottom); {100 * agree:.2f} % agree"))
    print(f"wrote {path}  ({time.perf_counter() - t0:.1f} s)")
    return 0


# ---------------------------------------------------------------------------- infer / show
def _infer_rule(args: argparse.Namespace) -> int:
    from gzoo.infer import infer_rule

    model, trained_on = _load_ca_model(args.checkpoint, args.device)
    res = infer_rule(model, args.family, check_steps=args.steps)
    print(res.summary())
    print(res.class_table())
    if res.rule is not None:
        verdict = "matches" if res.rule == trained_on else "DIFFERS FROM"
        print(f"inferred rule {res.rule} {verdict} the rule it was trained on ({trained_on})")
    else:
        print(f"no rule inferred ({res.reason}); the checkpoint says it was trained on "
              f"{trained_on}")
    return 0 if res.rule is not None else 1


def _symmetry(args: argparse.Namespace) -> int:
    """The symmetry of a network, a rule's dynamics or a saved history, with the evidence."""
    from gzoo.ca import Rule, simulate
    from gzoo.infer import infer_symmetry

    given = [x for x in (args.checkpoint, args.rule, args.data) if x is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of CHECKPOINT, --rule or --data "
                         f"(got {len(given)})")
    if args.checkpoint is not None:
        model, _ = _load_ca_model(args.checkpoint, args.device)
        res = infer_symmetry(model)
    elif args.rule is not None:
        rule = Rule.parse(args.rule)
        cells = args.boards * args.size**2
        _check_memory(f"a history of {args.steps} steps of {args.boards} boards "
                      f"{args.size}×{args.size}", "lower --boards, --size or --steps",
                      host=cells * (SOUP_BYTES_PER_CELL + args.steps + 1), work=0,
                      device="cpu")
        g = torch.Generator().manual_seed(args.seed)
        density = 0.05 + 0.9 * torch.rand(args.boards, 1, 1, generator=g)
        soups = torch.rand(args.boards, args.size, args.size, generator=g) < density
        history = simulate(soups, rule, args.steps)
        res = infer_symmetry(history)
        print(f"{rule}: the table's own symmetry is {rule.symmetry.name}"
              f"{' with' if rule.symmetry.ring else ' without'} the 45° ring rotation")
    else:
        res = infer_symmetry(_load_history(args.data))
    print(res.summary())
    print(res.table())
    return 0


def _load_history(path: str) -> torch.Tensor:
    """A history ``[T+1, (B,) H, W]`` from a .npy file or a tensor saved with torch.save."""
    import numpy as np

    if path.endswith(".npy"):
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {path!r} as a numpy array: {e}") from None
    if path.endswith((".pt", ".pth")):
        try:
            data = torch.load(path, weights_only=True)
        except Exception as e:  # torch raises several unrelated types for bad files
            raise ValueError(f"cannot read {path!r} as a saved tensor: {e}") from None
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"{path!r} holds a {type(data).__name__}, not a tensor")
        return data
    raise ValueError(f"--data must be a .npy or .pt file, got {path!r}")


def _show(args: argparse.Namespace) -> int:
    from gzoo.infer import infer_rule
    from gzoo.plots import save_model_explanation
    from gzoo.verify import rollout_histories

    _writable_file(args.out)
    model, rule = _load_ca_model(args.checkpoint, args.device)
    _check_rollout_memory(model, args.size, args.steps, args.device)
    res = infer_rule(model, check=False)
    g = torch.Generator().manual_seed(args.seed)
    soup = (torch.rand(args.size, args.size, generator=g) < 0.35).to(torch.uint8)
    net_history, rule_history = rollout_histories(model, rule, soup, args.steps)
    path = save_model_explanation(model, res, net_history, rule_history, args.out, title=(
        f"{args.checkpoint}: {type(model).__name__} trained on {rule}, inferred {res.rule}"))
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------- simulate
def _simulate(args: argparse.Namespace) -> int:
    """Simulate and keep only the pictures: the frames the PNG montage or the GIF shows,
    max-pooled to at most ``MAX_PICTURE_SIDE`` cells a side, so memory does not grow with the
    number of steps; refused up front when the board itself does not fit in memory."""
    from gzoo._checks import check_device
    from gzoo.ca import Rule, step
    from gzoo.models import activation_bytes_per_cell
    from gzoo.plots import (
        GIF_FRAME_BYTES,
        MAX_GIF_FRAMES,
        MAX_PICTURE_SIDE,
        frame_times,
        picture_factor,
        save_simulation,
        simulation_frames,
    )

    _writable_file(args.out)
    pattern = None
    if args.pattern is not None:
        from gzoo.ca import PATTERNS, load_pattern, place_on_torus, read_rle

        pattern, pattern_rule = (load_pattern(args.pattern) if args.pattern in PATTERNS
                                 else read_rle(args.pattern))
        rule = Rule.parse(args.rule or pattern_rule or "B3/S23")
        if pattern_rule is not None and rule != pattern_rule:
            print(f"note: the pattern's own rule is {pattern_rule}; running {rule} as asked")
        h, w = pattern.shape
        height, width = ((2 * h + 16, 2 * w + 16) if args.size is None  # place_on_torus's fit
                         else (args.size, args.size))
    else:
        rule = Rule.parse(args.rule or "B3/S23")
        height = width = 64 if args.size is None else args.size
    gif = args.out.lower().endswith(".gif")
    times = frame_times(args.steps, MAX_GIF_FRAMES if gif else args.frames)
    factor = picture_factor(height, width)
    side_h, side_w = -(-height // factor), -(-width // factor)
    device = check_device(args.device)
    model = trained_on = None
    if args.model:
        model, trained_on = _load_ca_model(args.model, args.device)
    cells = height * width
    per_cell = (_step_bytes_per_cell(rule, cells) if model is None
                else 2 + activation_bytes_per_cell(model))  # + the board, one byte a cell
    _check_memory(f"simulating a {height}×{width} board",
                  "lower --size" + (" (or --steps: a GIF keeps its frames)" if gif else ""),
                  host=SOUP_BYTES_PER_CELL * cells
                  + len(times) * (side_h * side_w + GIF_FRAME_BYTES * gif),
                  work=per_cell * cells, device=args.device)
    if factor > 1:
        print(f"note: pictures max-pooled {factor}×{factor} to {side_h}×{side_w} "
              f"(at most {MAX_PICTURE_SIDE} cells a side)")
    if gif and len(times) < args.steps + 1:
        print(f"note: GIF of {len(times)} of the {args.steps + 1} steps, evenly spaced "
              f"(at most {MAX_GIF_FRAMES} frames)")

    if pattern is not None:
        board = place_on_torus(pattern, (height, width)).bool()
    else:
        g = torch.Generator().manual_seed(args.seed)
        board = torch.rand(height, width, generator=g) < args.density
    board = board.to(device)
    advance: Callable[[torch.Tensor], torch.Tensor]
    if model is not None:
        advance = model.step
        who = f"{args.model} (model of {trained_on})"
    else:
        advance = partial(step, rule=rule)
        who = str(rule) + (f" ({rule.name})" if rule.name else "")
    show = False if args.quiet else None
    frames, last = simulation_frames(board, advance, args.steps, times, progress=show,
                                     label=f"simulate {height}×{width}")
    path = save_simulation(frames, args.out, title=who, n_frames=args.frames, fps=args.fps,
                           times=times, progress=show)
    alive = last.float().mean().item()
    print(f"{who}: {height}×{width}, {args.steps} steps, final density {alive:.3f} → {path}")
    return 0


# ---------------------------------------------------------------------------- train
def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe ``gzoo train``'s options ask for; an option not given takes
    :class:`gzoo.train.TrainConfig`'s default."""
    from gzoo.train import MODEL_OPTIONS, TrainConfig

    given = {f.name: getattr(args, f.name) for f in TrainConfig.cli_fields()
             if getattr(args, f.name, None) is not None}
    kwargs = {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k, None) is not None}
    return TrainConfig(**given, model_kwargs=kwargs)


def _symmetry_floor(cfg: Any) -> int:
    """The fewest neighbourhoods any net of ``cfg``'s group gets wrong on its rule
    (:func:`gzoo.verify.symmetry_floor`); 0 for a model without a group."""
    from gzoo.models import resolve_model
    from gzoo.verify import symmetry_floor

    group = (resolve_model(cfg.model)[1] | cfg.model_kwargs).get("group")
    return symmetry_floor(cfg.rule, group) if isinstance(group, str) else 0


def _train(args: argparse.Namespace) -> int:
    from gzoo.train import train, weights_digest

    cfg = train_config_from_args(args)
    floor = _symmetry_floor(cfg)
    if floor:  # said before the budget is spent, and again in the summary
        print(f"gzoo train: note: no {cfg.model} network can be exact on {cfg.rule}: its symmetry "
              f"floor is {floor}/512 (the rule lacks a symmetry of the group; see "
              "`gzoo symmetry --rule`); training goes on toward the floor", file=sys.stderr)
    result = train(cfg, args.out, overwrite=args.overwrite,
                   progress=False if args.quiet else None)
    if args.weights_hash_file:
        with open(f"{args.weights_hash_file}.rank{result.rank}", "w", encoding="utf-8") as f:
            f.write(weights_digest(result.model) + "\n")
    if result.rank == 0:
        verdict = "exact" if result.exact else "NOT exact"
        print(
            f"{cfg.rule} · {cfg.model} ({result.model.n_params} params): {verdict} — "
            f"{result.n_wrong}/512 neighbourhoods wrong, held-out accuracy "
            f"{100 * result.accuracy:.3f} %, {result.steps_run} steps, {result.seconds:.1f} s, "
            f"seed {result.seed_used} ({'net' if result.data == 'patterns' else 'attempt'} "
            f"{result.restarts_used + 1} of {result.attempts_run}) → {result.checkpoint}"
            + (f" (symmetry floor {floor}/512: no {cfg.model} net can do better)" if floor
               else "")
        )
    return 0


def _add_train_options(parser: argparse.ArgumentParser,
                       only: tuple[str, ...] | None = None) -> None:
    """``gzoo train``'s options (``only``: those fields), derived from
    :class:`gzoo.train.TrainConfig` (help, types and defaults) and
    :data:`gzoo.train.MODEL_OPTIONS`: one home for each default. An option left out takes the
    field's default."""
    import typing

    from gzoo.train import MODEL_OPTIONS, TrainConfig, cli_flag

    hints = typing.get_type_hints(TrainConfig)
    for f in TrainConfig.cli_fields():
        if only is not None and f.name not in only:
            continue
        given = [t for t in typing.get_args(hints[f.name]) if t is not type(None)]
        value_type = given[0] if given else hints[f.name]  # int | None → int
        default = "" if f.default is None else f" (default {f.default})"
        parser.add_argument(cli_flag(f.name), type=_device if f.name == "device" else value_type,
                            help=f.metadata["cli_help"] + default)
        if f.name == "model" or (only is not None and f.name == only[0]):
            for name, (arg_type, text, choices) in MODEL_OPTIONS.items():
                parser.add_argument(cli_flag(name), type=arg_type, choices=choices,
                                    help=f"{text} (default: the model's own)")


# ---------------------------------------------------------------------------- eval
#: ``gzoo eval``'s options for a cellular-automaton checkpoint and their defaults (an image
#: checkpoint refuses them, so they default to ``None`` on the command line).
EVAL_CA_DEFAULTS: dict[str, Any] = {
    "rule": None, "size": 64, "steps": 64, "boards": 16, "seed": 12345}
#: ``gzoo eval``'s options for an image checkpoint.
EVAL_IMAGE_OPTIONS = ("data", "unverified")


def _eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on its task: a cellular automaton (:func:`_eval_ca`) or rotated
    MNIST (:func:`_eval_image`); the other task's options are refused."""
    from gzoo.checkpoint import TASK_CA, load_pretrained

    model = load_pretrained(args.checkpoint, device=args.device)
    info = model.checkpoint
    task = info.task if info is not None else TASK_CA
    if task == TASK_CA:
        given = [f"--{k}" for k in EVAL_IMAGE_OPTIONS if getattr(args, k) not in (None, False)]
        if given:
            raise ValueError(f"{' and '.join(given)} apply to image checkpoints; "
                             f"{args.checkpoint} is a cellular-automaton checkpoint (its options: "
                             "--rule, --size, --steps, --boards, --seed)")
        for k, v in EVAL_CA_DEFAULTS.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
        return _eval_ca(args)
    given = [f"--{k}" for k in EVAL_CA_DEFAULTS if getattr(args, k) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} apply to cellular-automaton checkpoints; "
                         f"{args.checkpoint} is an image checkpoint (task {task!r}): give "
                         "--data PATH (and --unverified for non-standard files)")
    return _eval_image(args, model)


def _eval_image(args: argparse.Namespace, model: ZooModel) -> int:
    """The test error of an image checkpoint on the rotated digits rebuilt from ``--data``."""
    from gzoo.images import evaluate_on_protocol, evaluation_memory
    from gzoo.mnist import RotMNISTProtocol

    if args.data is None:
        raise ValueError(f"{args.checkpoint} is an image checkpoint: give --data PATH, the "
                         "standard MNIST files (the four IDX files, gzipped or not, or "
                         "mnist.pkl.gz)")
    info = model.checkpoint
    if info is None or info.data is None:  # load_pretrained gives both to an image model
        raise ValueError(f"{args.checkpoint} carries no rotated-MNIST data record")
    protocol = RotMNISTProtocol(**info.data["protocol"])
    host, work = evaluation_memory(model, protocol)
    _check_memory(f"rebuilding and scoring {protocol.n_test:,} rotated test digits", "",
                  host=host, work=work, device=args.device)
    kwargs = ", ".join(f"{k}={v!r}" for k, v in model.init_kwargs().items())
    print(f"{args.checkpoint}: {type(model).__name__}({kwargs}), {model.n_params} params; "
          f"task {info.task}")
    res = evaluate_on_protocol(model, args.data, verify=not args.unverified)
    same = ("the digits it was tested on, byte for byte" if res["matches_record"] else
            "NOT the digits it was tested on (other data, or --unverified files)")
    print(f"test error: {100 * res['test_error']:.2f} % of {res['n_test']:,} rotated test digits "
          f"(protocol {res['protocol']}; {same})")
    recorded = info.metrics.get("test_error")
    if isinstance(recorded, int | float):
        print(f"recorded:   {100 * recorded:.2f} %")
    return 0


def _eval_ca(args: argparse.Namespace) -> int:
    from gzoo.ca import Rule, make_dataset
    from gzoo.models import activation_bytes_per_cell
    from gzoo.verify import dataset_accuracy, rollout_agreement, verify_exact

    model, trained_on = _load_ca_model(args.checkpoint, device=args.device)
    rule = Rule.parse(args.rule) if args.rule else trained_on
    cells, pairs = args.size**2, 8 * args.boards
    _check_memory(f"evaluating on {args.boards} boards of {args.size}×{args.size} and "
                  f"rollouts of {args.steps} steps", "lower --size, --boards or --steps",
                  # soups (float64 draws), the pairs x and y, both rollout histories × 3 soups
                  host=cells * (9 * args.boards + 2 * pairs + 6 * (args.steps + 1)),
                  work=cells * activation_bytes_per_cell(model) * min(256, max(pairs, 3)),
                  device=args.device)
    kwargs = ", ".join(f"{k}={v!r}" for k, v in model.init_kwargs().items())
    name = f" ({rule.name})" if rule.name else ""
    print(f"{args.checkpoint}: {type(model).__name__}({kwargs}), {model.n_params} params; "
          f"rule {rule}{name}")
    res = verify_exact(model, rule)
    print(f"exactness:         {res.summary()}")
    data = make_dataset(rule, args.boards, args.size, 8, seed=args.seed)
    acc = dataset_accuracy(model, data.x, data.y)
    print(f"held-out accuracy: {100 * acc:.4f} % of {data.y.numel():,} cells "
          f"({args.boards} fresh soups {args.size}×{args.size}, 8 pairs each, seed {args.seed})")
    ro = rollout_agreement(model, rule, size=args.size, steps=args.steps, seed=args.seed)
    per = ", ".join(f"{d:g}: {100 * a:.2f} %" for d, a in zip(ro.densities, ro.agreement,
                                                              strict=True))
    same = ("identical at every step" if ro.identical else
            "first divergence at step(s) " + ", ".join(str(d) for d in ro.first_divergence))
    print(f"rollout agreement: {100 * ro.mean:.2f} % of cells over {ro.steps} self-fed steps "
          f"({ro.size}×{ro.size}; by density {per}); {same}")
    return 0


# ---------------------------------------------------------------------------- atlas
#: The recipe fields ``gzoo atlas`` takes (the first one carries the model options).
ATLAS_OPTIONS = ("steps", "population", "patience", "margin", "hinge", "lr", "l1", "seed",
                 "restarts", "check_every", "device")


def _atlas(args: argparse.Namespace) -> int:
    from gzoo.atlas import format_summary, read_records, run_atlas, summarize, write_summary

    cfg = train_config_from_args(args)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    run_atlas(args.out, family=args.family, n_rules=args.rules, groups=args.groups,
              seed=args.sample_seed, config=cfg, in_flight=args.in_flight, rank=rank,
              world=world, log=None if args.quiet else print)
    if world > 1:  # the summary waits for every rank's records, however long they take
        from datetime import timedelta

        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=timedelta(days=7))
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        print(format_summary(summarize(read_records(args.out))))
        paths = write_summary(args.out)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


# ---------------------------------------------------------------------------- zoo
def _zoo(args: argparse.Namespace) -> int:
    from gzoo.checkpoint import zoo_entries

    rows = zoo_entries()
    if not rows:
        print("no checkpoints installed in gzoo.zoo")
        return 0

    def pct(x: object) -> str:
        return f"{100 * x:.2f} %" if isinstance(x, int | float) else "?"

    head = ("name", "task", "rule", "group", "params", "exact", "accuracy", "test error")
    table = [head]
    for r in rows:
        if "error" in r:
            table.append((r["name"], "?", "?", "?", "?", "?", "?", f"unreadable: {r['error']}"))
            continue
        group, params = r.get("group") or r["model"], str(r.get("n_params", "?"))
        if "test_error" in r:  # an image entry: no rule, a test error
            table.append((r["name"], r["task"], "-", group, params, "-", "-",
                          pct(r["test_error"])))
            continue
        exact = "yes" if r.get("exact") is True else "no" if r.get("exact") is False else "?"
        table.append((r["name"], r["task"], r["rule"], group, params, exact,
                       pct(r.get("accuracy")), "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


# ---------------------------------------------------------------------------- parser
def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=_device, default="cpu",
                        help="cpu, cuda, cuda:N, mps or auto (CUDA if present); it must exist "
                             "here (default cpu)")


def _add_seed(parser: argparse.ArgumentParser, default: int, what: str, *,
              fallback: bool = False) -> None:
    """``--seed``; with ``fallback`` its value is ``None`` unless given (the command applies
    ``default`` where the option applies)."""
    parser.add_argument("--seed", type=_SEED, default=None if fallback else default,
                        help=f"seed of {what}, 0..2^64-1 (default {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gzoo", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of the commands below; gzoo COMMAND --help for its "
                                     "options")
    demo = sub.add_parser("demo", help="a pretrained network runs its rule beside the simulator")
    demo.add_argument("--model", default="b36s23_p8", help="zoo name or folder (b36s23_p8)")
    demo.add_argument("--size", type=_SIZE, default=64, help="board side (default 64)")
    demo.add_argument("--steps", type=_STEPS, default=300, help="rollout steps (default 300)")
    demo.add_argument("--density", type=_DENSITY, default=0.35,
                      help="density of the initial soup, in [0, 1] (default 0.35)")
    _add_seed(demo, 0, "the initial soup")
    demo.add_argument("--out", type=_picture(".png"), default="demo.png",
                      help="rollout picture, .png (default demo.png)")
    _add_device(demo)
    demo.set_defaults(func=_demo)

    eq = sub.add_parser("equivariance", help="equivariance error of every hand-written layer")
    _add_seed(eq, 0, "the random layers and inputs")
    _add_device(eq)
    eq.set_defaults(func=_equivariance)

    inf = sub.add_parser("infer-rule", help="read the rule back out of a network")
    inf.add_argument("checkpoint", help="zoo name or checkpoint folder")
    inf.add_argument("--family", "--neighbourhood", default="auto",
                     choices=("auto", *FAMILIES, "moore"),
                     help="read the rule in this family (default: the smallest that fits; "
                          "'moore' = outer_totalistic)")
    inf.add_argument("--steps", type=_STEPS, default=64,
                     help="steps of the immediate check (default 64)")
    _add_device(inf)
    inf.set_defaults(func=_infer_rule)

    show = sub.add_parser("show", help="picture: lifting filters, class response, rollout")
    show.add_argument("checkpoint", help="zoo name or checkpoint folder")
    show.add_argument("--out", type=_picture(".png"), required=True, help="output .png")
    show.add_argument("--size", type=_SIZE, default=48, help="rollout board side (default 48)")
    show.add_argument("--steps", type=_STEPS, default=60, help="rollout steps (default 60)")
    _add_seed(show, 0, "the rollout's soup")
    _add_device(show)
    show.set_defaults(func=_show)

    sim = sub.add_parser("simulate", help="simulate a rule and write a PNG montage or a GIF")
    sim.add_argument("--rule", help="rule, e.g. B36/S23 or B3/S2-i34q (default: the pattern's "
                                    "rule, else B3/S23)")
    sim.add_argument("--pattern", help="an RLE file (or a shipped pattern: "
                                       "glider, gosper_gun, replicator) placed at the centre")
    sim.add_argument("--size", type=_SIZE,
                     help="board side (default 64; with --pattern fitted to it); pictures of "
                          "boards over 512 cells a side are max-pooled")
    sim.add_argument("--steps", type=_STEPS, default=100, help="steps (default 100)")
    sim.add_argument("--density", type=_DENSITY, default=0.3,
                     help="initial density of a random soup, in [0, 1] (default 0.3)")
    _add_seed(sim, 0, "the initial soup")
    sim.add_argument("--out", type=_picture(".png", ".gif"), required=True,
                     help="output .png (montage) or .gif (animation)")
    sim.add_argument("--frames", type=_int(1, 64), default=8,
                     help="frames in a PNG montage, 1..64 (default 8)")
    sim.add_argument("--fps", type=_int(1, 100), default=10,
                     help="GIF frames per second, 1..100 (default 10)")
    sim.add_argument("--model", help="simulate with this checkpoint (zoo name or folder) "
                                     "instead of the rule")
    sim.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _add_device(sim)
    sim.set_defaults(func=_simulate)

    tr = sub.add_parser("train", help="train a model until it reproduces a rule exactly")
    tr.add_argument("--out", required=True,
                    help="checkpoint folder to write (checked and locked before training)")
    _add_train_options(tr)
    tr.add_argument("--overwrite", action="store_true",
                    help="replace an existing --out, if it is a gzoo checkpoint folder")
    tr.add_argument("--quiet", action="store_true", help="no progress on stderr")
    tr.add_argument("--weights-hash-file", help=argparse.SUPPRESS)  # tests: rank-suffixed sha
    tr.set_defaults(func=_train)

    ev = sub.add_parser(
        "eval", help="a cellular automaton's exactness, held-out accuracy and rollout "
                     "agreement, or an image entry's rotated-MNIST test error (--data)")
    ev.add_argument("checkpoint", help="zoo name (see gzoo zoo) or checkpoint folder")
    d = EVAL_CA_DEFAULTS
    ev.add_argument("--rule", help="cellular automata: evaluate against this rule instead of "
                                   "the checkpoint's")
    ev.add_argument("--size", type=_SIZE, help=f"cellular automata: board side (default "
                                               f"{d['size']})")
    ev.add_argument("--steps", type=_STEPS, help=f"cellular automata: rollout steps (default "
                                                 f"{d['steps']})")
    ev.add_argument("--boards", type=_SIZE, help=f"cellular automata: held-out soups (default "
                                                 f"{d['boards']})")
    _add_seed(ev, d["seed"], "the fresh data (cellular automata)", fallback=True)
    ev.add_argument("--data", help="image entries: the standard MNIST files, a folder with the "
                                   "four IDX files (gzipped or not) or mnist.pkl.gz")
    ev.add_argument("--unverified", action="store_true",
                    help="image entries: accept MNIST files whose sha256 is not the standard "
                         "one (the result says so)")
    _add_device(ev)
    ev.set_defaults(func=_eval)

    sym = sub.add_parser("symmetry", help="which symmetries of the square a network, a rule's "
                                          "dynamics or a saved history respect")
    sym.add_argument("checkpoint", nargs="?", help="zoo name or checkpoint folder")
    sym.add_argument("--rule", help="simulate this rule from random soups and test the data")
    sym.add_argument("--data", help="a saved history [T+1, (B,) H, W] (.npy or .pt)")
    sym.add_argument("--boards", type=_SIZE, default=16, help="soups for --rule (16)")
    sym.add_argument("--size", type=_SIZE, default=32, help="board side for --rule (32)")
    sym.add_argument("--steps", type=_int(1), default=4, help="steps for --rule (4)")
    _add_seed(sym, 0, "the soups for --rule")
    _add_device(sym)
    sym.set_defaults(func=_symmetry)
    from gzoo.atlas import IN_FLIGHT, MAX_NETS, MAX_RULES

    at = sub.add_parser("atlas", help="train a seeded sample of rules × groups, one record each "
                                      "(resumable; torchrun splits the jobs)")
    at.add_argument("--out", required=True, help="atlas folder (created, or resumed)")
    at.add_argument("--family", default="outer_totalistic",
                    choices=("outer_totalistic", "von_neumann", "isotropic"),
                    help="rule family sampled (default outer_totalistic)")
    at.add_argument("--rules", type=_int(1, MAX_RULES), default=100,
                    help="rules in the sample (default 100)")
    at.add_argument("--groups", nargs="+", default=["p4", "p4m", "p8"],
                    choices=("p4", "p4m", "p8"), help="GCNN groups (default all three)")
    at.add_argument("--sample-seed", type=_int(0), default=0, help="seed of the sample (default 0)")
    at.add_argument("--in-flight", type=_int(1, MAX_NETS), default=IN_FLIGHT,
                    help=f"rules trained at once in one batched model (default {IN_FLIGHT})")
    at.add_argument("--quiet", action="store_true", help="no line per finished job")
    _add_train_options(at, only=ATLAS_OPTIONS)
    at.set_defaults(func=_atlas)

    zoo = sub.add_parser("zoo", help="list the installed pretrained checkpoints")
    zoo.set_defaults(func=_zoo)
    return parser


#: Errors that are the user's to fix: their message is the whole story.
_EXPECTED = (ValueError, TypeError, OSError, RuntimeError, ArithmeticError)


def _one_line(exc: BaseException) -> str:
    text = " / ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one ``gzoo`` command; errors are one line on stderr (exit status 2). Set
    ``GZOO_TRACEBACK=1`` to get the traceback instead."""
    from gzoo.checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    name = f"gzoo {args.command}"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. gzoo zoo | head -1: the reader left, say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get("GZOO_TRACEBACK"):
            raise
        if isinstance(exc, MemoryError):
            print(f"{name}: error: out of memory ({_one_line(exc)}); try smaller sizes",
                  file=sys.stderr)
        elif isinstance(exc, (*_EXPECTED, CheckpointError)):
            print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
        else:  # the last resort: a bug, still one line
            print(f"{name}: internal error: {type(exc).__name__}: {_one_line(exc)} (a bug; "
                  "rerun with GZOO_TRACEBACK=1 for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
