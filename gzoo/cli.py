"""The ``gzoo`` command line: thin wrappers that parse, call the library and print.

    gzoo demo                                    a pretrained p8 net runs HighLife beside the rule
    gzoo equivariance                            equivariance error of every layer
    gzoo infer-rule DIR_OR_NAME                  read the rule back out of a network
    gzoo show DIR_OR_NAME --out fig.png          filters, class response, rollout
    gzoo simulate --rule B36/S23 --out run.png   a simulation history (PNG montage or GIF)
    gzoo train --rule B36/S23 --model p8 --out DIR
    gzoo eval DIR_OR_NAME                        exactness, held-out accuracy, rollout agreement
    gzoo zoo                                     the installed checkpoints
    gzoo atlas --family outer_totalistic --rules 100 --out DIR   a seeded sample × groups

Errors are one line on stderr and exit status 2; no traceback (set ``GZOO_TRACEBACK=1`` to
see one).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, NoReturn

import torch

if TYPE_CHECKING:
    from gzoo.ca import Rule
    from gzoo.models import CAModel
    from gzoo.train import TrainConfig


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _equivariance_table(dtypes: tuple[torch.dtype, ...]) -> None:
    from gzoo.layers import LAYERS

    print("Max relative equivariance error ‖Φ(L_g x) − L_g Φ(x)‖/‖Φ(x)‖ per group element")
    print("(3×3 kernels, circular padding, 2→3 fields, random 15×15 inputs; p8: 90° subgroup)\n")
    for dtype in dtypes:
        print(f"{str(dtype).removeprefix('torch.')}:")
        print(f"  {'layer':<12}" + "".join(f"{'g=' + str(g):>10}" for g in range(8)))
        for cls in LAYERS:
            layer = cls(2, 3, 3, padding=1, padding_mode="circular").to(dtype)
            errs = layer.check_equivariance()
            cells = "".join(
                f"{errs[g]:>10.1e}" if g in errs else f"{'-':>10}" for g in range(8)
            )
            print(f"  {cls.__name__:<12}{cells}")
        print()


def _equivariance(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    _equivariance_table((torch.float32, torch.float64))
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


def _demo(args: argparse.Namespace) -> int:
    """The zoo at work: a pretrained network runs its rule beside the exact simulator."""
    import time

    from gzoo.equivariance import probe_model
    from gzoo.infer import infer_rule
    from gzoo.plots import save_rollout_comparison
    from gzoo.verify import rollout_histories, verify_exact

    t0 = time.perf_counter()
    model, rule = _load_ca_model(args.model)
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
    _equivariance_table((torch.float32,))
    path = save_rollout_comparison(net_history, rule_history, args.out, title=(
        f"{args.model}: network (top) beside {rule} (bottom); {100 * agree:.2f} % agree"))
    print(f"wrote {path}  ({time.perf_counter() - t0:.1f} s)")
    return 0


# ---------------------------------------------------------------------------- infer / show
def _infer_rule(args: argparse.Namespace) -> int:
    from gzoo.infer import infer_rule

    model, trained_on = _load_ca_model(args.checkpoint)
    res = infer_rule(model, args.neighbourhood, check_steps=args.steps)
    print(res.summary())
    print(res.class_table())
    if res.rule is not None:
        verdict = "matches" if res.rule == trained_on else "DIFFERS FROM"
        print(f"inferred rule {res.rule} {verdict} the rule it was trained on ({trained_on})")
    return 0 if res.consistent else 1


def _show(args: argparse.Namespace) -> int:
    from gzoo.infer import infer_rule
    from gzoo.plots import save_model_explanation
    from gzoo.verify import rollout_histories

    model, rule = _load_ca_model(args.checkpoint)
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
    from gzoo.ca import Rule, simulate
    from gzoo.plots import save_simulation

    rule = Rule.parse(args.rule)
    if args.size < 1 or args.steps < 0:
        raise ValueError(f"need --size ≥ 1 and --steps ≥ 0, got {args.size} and {args.steps}")
    if not 0.0 <= args.density <= 1.0:
        raise ValueError(f"--density must be in [0, 1], got {args.density}")
    if not args.out.lower().endswith((".png", ".gif")):
        raise ValueError(f"--out must end in .png or .gif, got {args.out!r}")
    g = torch.Generator().manual_seed(args.seed)
    board = torch.rand(args.size, args.size, generator=g) < args.density
    if args.model:
        model, trained_on = _load_ca_model(args.model)
        history = [board]
        for _ in range(args.steps):
            history.append(model.step(history[-1]))
        hist = torch.stack(history)
        who = f"{args.model} (model of {trained_on})"
    else:
        hist = simulate(board, rule, args.steps)
        who = str(rule) + (f" ({rule.name})" if rule.name else "")
    path = save_simulation(hist, args.out, title=who, n_frames=args.frames, fps=args.fps)
    alive = hist[-1].float().mean().item()
    print(f"{who}: {args.size}×{args.size}, {args.steps} steps, final density {alive:.3f} "
          f"→ {path}")
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


def _train(args: argparse.Namespace) -> int:
    from gzoo.train import train, weights_digest

    cfg = train_config_from_args(args)
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
            f"seed {result.seed_used} ({result.restarts_used} restarts) → {result.checkpoint}"
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
        parser.add_argument(cli_flag(f.name), type=value_type,
                            help=f.metadata["cli_help"] + default)
        if f.name == "model" or (only is not None and f.name == only[0]):
            for name, (arg_type, text, choices) in MODEL_OPTIONS.items():
                parser.add_argument(cli_flag(name), type=arg_type, choices=choices,
                                    help=f"{text} (default: the model's own)")


# ---------------------------------------------------------------------------- eval
def _eval(args: argparse.Namespace) -> int:
    from gzoo.ca import Rule, make_dataset
    from gzoo.verify import dataset_accuracy, rollout_agreement, verify_exact

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, trained_on = _load_ca_model(args.checkpoint, device=device)
    rule = Rule.parse(args.rule) if args.rule else trained_on
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
    head = ("name", "rule", "group", "params", "exact", "accuracy")
    table = [head]
    for r in rows:
        if "error" in r:
            table.append((r["name"], "?", "?", "?", "?", f"unreadable: {r['error']}"))
            continue
        acc = r.get("accuracy")
        exact = "yes" if r.get("exact") is True else "no" if r.get("exact") is False else "?"
        table.append((
            r["name"], r["rule"], r.get("group") or r["model"], str(r.get("n_params", "?")),
            exact, f"{100 * acc:.2f} %" if isinstance(acc, int | float) else "?",
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gzoo", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a pretrained network runs its rule beside the simulator")
    demo.add_argument("--model", default="b36s23_p8", help="zoo name or folder (b36s23_p8)")
    demo.add_argument("--size", type=int, default=64)
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--density", type=float, default=0.35)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="demo.png", help="rollout picture (demo.png)")
    demo.set_defaults(func=_demo)

    eq = sub.add_parser("equivariance", help="equivariance error of every hand-written layer")
    eq.add_argument("--seed", type=int, default=0)
    eq.set_defaults(func=_equivariance)

    inf = sub.add_parser("infer-rule", help="read the B/S rule back out of a network")
    inf.add_argument("checkpoint", help="zoo name or checkpoint folder")
    inf.add_argument("--neighbourhood", default="auto", choices=("auto", "moore", "von_neumann"))
    inf.add_argument("--steps", type=int, default=64, help="steps of the immediate check (64)")
    inf.set_defaults(func=_infer_rule)

    show = sub.add_parser("show", help="picture: lifting filters, class response, rollout")
    show.add_argument("checkpoint", help="zoo name or checkpoint folder")
    show.add_argument("--out", required=True, help="output .png")
    show.add_argument("--size", type=int, default=48)
    show.add_argument("--steps", type=int, default=60)
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(func=_show)

    sim = sub.add_parser("simulate", help="simulate a rule and write a PNG montage or a GIF")
    sim.add_argument("--rule", default="B3/S23", help="rule, e.g. B36/S23 (default B3/S23)")
    sim.add_argument("--size", type=int, default=64, help="board side (default 64)")
    sim.add_argument("--steps", type=int, default=100, help="steps (default 100)")
    sim.add_argument("--density", type=float, default=0.3, help="initial density (0.3)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--out", required=True, help="output .png (montage) or .gif (animation)")
    sim.add_argument("--frames", type=int, default=8, help="frames in a PNG montage (8)")
    sim.add_argument("--fps", type=int, default=10, help="GIF frames per second (10)")
    sim.add_argument("--model", help="simulate with this checkpoint (zoo name or folder) "
                                     "instead of the rule")
    sim.set_defaults(func=_simulate)

    tr = sub.add_parser("train", help="train a model until it reproduces a rule exactly")
    tr.add_argument("--out", required=True, help="checkpoint folder to write")
    _add_train_options(tr)
    tr.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument("--weights-hash-file", help=argparse.SUPPRESS)  # tests: rank-suffixed sha
    tr.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="exactness, held-out accuracy and rollout agreement")
    ev.add_argument("checkpoint", help="zoo name (see gzoo zoo) or checkpoint folder")
    ev.add_argument("--rule", help="evaluate against this rule instead of the checkpoint's")
    ev.add_argument("--size", type=int, default=64, help="board side (default 64)")
    ev.add_argument("--steps", type=int, default=64, help="rollout steps (default 64)")
    ev.add_argument("--boards", type=int, default=16, help="held-out soups (default 16)")
    ev.add_argument("--seed", type=int, default=12345, help="seed of the fresh data")
    ev.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    ev.set_defaults(func=_eval)

    at = sub.add_parser("atlas", help="train a seeded sample of rules × groups, one record each "
                                      "(resumable; torchrun splits the jobs)")
    at.add_argument("--out", required=True, help="atlas folder (created, or resumed)")
    at.add_argument("--family", default="outer_totalistic",
                    choices=("outer_totalistic", "von_neumann", "isotropic"),
                    help="rule family sampled (default outer_totalistic)")
    at.add_argument("--rules", type=int, default=100, help="rules in the sample (default 100)")
    at.add_argument("--groups", nargs="+", default=["p4", "p4m", "p8"],
                    choices=("p4", "p4m", "p8"), help="GCNN groups (default all three)")
    at.add_argument("--sample-seed", type=int, default=0, help="seed of the sample (default 0)")
    at.add_argument("--in-flight", type=int, default=4,
                    help="rules trained at once in one batched model (default 4)")
    at.add_argument("--quiet", action="store_true", help="no line per finished job")
    _add_train_options(at, only=ATLAS_OPTIONS)
    at.set_defaults(func=_atlas)

    zoo = sub.add_parser("zoo", help="list the installed pretrained checkpoints")
    zoo.set_defaults(func=_zoo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gzoo.checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, RuntimeError, CheckpointError) as exc:
        if os.environ.get("GZOO_TRACEBACK"):
            raise
        message = " / ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"gzoo {args.command}: error: {message or type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gzoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
