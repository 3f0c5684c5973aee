"""The ``gzoo`` command line: thin wrappers that parse, call the library and print.

    gzoo demo                                    a pretrained p8 net runs HighLife beside the rule
    gzoo equivariance                            equivariance error of every layer
    gzoo infer-rule DIR_OR_NAME                  read the rule back out of a network
    gzoo show DIR_OR_NAME --out fig.png          filters, class response, rollout
    gzoo simulate --rule B36/S23 --out run.png   a simulation history (PNG montage or GIF)
    gzoo train --rule B36/S23 --model p8 --out DIR
    gzoo eval DIR_OR_NAME                        exactness, held-out accuracy, rollout agreement
    gzoo eval rotmnist_p4 --data PATH            an image entry's rotated-MNIST test error
    gzoo zoo                                     the installed checkpoints

Errors are one line on stderr and exit status 2; no traceback (set ``GZOO_TRACEBACK=1`` to
see one).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

import torch


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


def _demo(args: argparse.Namespace) -> int:
    """The zoo at work: a pretrained p8 network runs HighLife beside the exact rule."""
    import time

    from gzoo.checkpoint import load_pretrained
    from gzoo.groups import C8
    from gzoo.infer import infer_rule
    from gzoo.plots import save_rollout_comparison
    from gzoo.verify import rollout_histories, verify_exact

    t0 = time.perf_counter()
    model = load_pretrained(args.model)
    rule = model.rule
    print(f"loaded {args.model}: {type(model).__name__}({model.init_kwargs()}), "
          f"{model.n_params} parameters, trained on {rule} ({rule.name or 'unnamed'})")
    print(f"exactness: {verify_exact(model, rule).summary()}")

    g = torch.Generator().manual_seed(args.seed)
    soup = (torch.rand(args.size, args.size, generator=g) < args.density).to(torch.uint8)
    net, exact = rollout_histories(model, rule, soup, args.steps)
    same = (net == exact).flatten(1).all(1)
    agree = (net == exact).double().mean().item()
    diverged = (~same).nonzero()
    print(f"rollout: {args.steps} steps on a {args.size}×{args.size} torus from a density "
          f"{args.density} soup: {100 * agree:.4f} % of cells agree; "
          + ("identical at every step" if diverged.numel() == 0
             else f"first difference at step {int(diverged[0])}"))
    print(f"  live cells at the end: network {int(net[-1].sum())}, rule {int(exact[-1].sum())}")

    inf = infer_rule(model, check_steps=32)
    print(f"rule read back from the network: {inf.summary()}")

    x = torch.randn(2, 2, 15, 15)
    lift_err = model.lift.check_equivariance(x)
    stencil = torch.randn(2, 2, 3, 3)
    with torch.no_grad():  # centre response of a 3×3 stencil under 45° ring rotations
        y = model.lift(stencil)[..., 1, 1]
        ring = max(float((model.lift(C8.act_z2(stencil, k))[..., 1, 1] - y.roll(k, 2)).norm()
                         / y.norm()) for k in range(8))
    print("equivariance of its lifting layer (relative error): "
          + ", ".join(f"g={k}: {e:.1e}" for k, e in lift_err.items())
          + f"; 45° ring rotation of a 3×3 stencil: {ring:.1e}")
    with torch.no_grad():
        inv = max(float((model(C8.act_z2(x, k)) - C8.act_z2(model(x), k)).norm()
                        / model(x).norm()) for k in (0, 2, 4, 6))
    print(f"whole network under 90° turns: {inv:.1e}\n")
    _equivariance_table((torch.float32,))
    path = save_rollout_comparison(net, exact, args.out, title=(
        f"{args.model}: network (top) beside {rule} (bottom); {100 * agree:.2f} % agree"))
    print(f"wrote {path}  ({time.perf_counter() - t0:.1f} s)")
    return 0


# ---------------------------------------------------------------------------- infer / show
def _infer_rule(args: argparse.Namespace) -> int:
    from gzoo.checkpoint import load_pretrained
    from gzoo.infer import infer_rule

    model = load_pretrained(args.checkpoint)
    res = infer_rule(model, args.neighbourhood, check_steps=args.steps)
    print(res.summary())
    print(res.table())
    if model.rule is not None and res.rule is not None:
        verdict = "matches" if res.rule == model.rule else "DIFFERS FROM"
        print(f"inferred rule {res.rule} {verdict} the rule it was trained on ({model.rule})")
    return 0 if res.consistent else 1


def _show(args: argparse.Namespace) -> int:
    from gzoo.checkpoint import load_pretrained
    from gzoo.infer import infer_rule
    from gzoo.plots import save_model_explanation
    from gzoo.verify import rollout_histories

    model = load_pretrained(args.checkpoint)
    res = infer_rule(model, check=False)
    g = torch.Generator().manual_seed(args.seed)
    soup = (torch.rand(args.size, args.size, generator=g) < 0.35).to(torch.uint8)
    net, exact = rollout_histories(model, model.rule, soup, args.steps)
    path = save_model_explanation(model, res, net, exact, args.out, title=(
        f"{args.checkpoint}: {type(model).__name__} trained on {model.rule}, "
        f"inferred {res.rule}"))
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
        from gzoo.checkpoint import load_pretrained

        model = load_pretrained(args.model)
        history = [board]
        for _ in range(args.steps):
            history.append(model.step(history[-1]))
        hist = torch.stack(history)
        who = f"{args.model} (model of {model.rule})"
    else:
        hist = simulate(board, rule, args.steps)
        who = str(rule) + (f" ({rule.name})" if rule.name else "")
    path = save_simulation(hist, args.out, title=who, n_frames=args.frames, fps=args.fps)
    alive = hist[-1].float().mean().item()
    print(f"{who}: {args.size}×{args.size}, {args.steps} steps, final density {alive:.3f} "
          f"→ {path}")
    return 0


# ---------------------------------------------------------------------------- train
def _train(args: argparse.Namespace) -> int:
    from gzoo.train import TrainConfig, train, weights_digest

    kwargs = {k: getattr(args, k) for k in ("width", "depth", "backend")
              if getattr(args, k) is not None}
    from gzoo.models import build_model

    build_model(args.model, **kwargs)  # bad --model/--width/... fail before data is made
    defaults = TrainConfig()
    cfg = TrainConfig(
        rule=args.rule, model=args.model, model_kwargs=kwargs,
        steps=args.steps if args.steps is not None else defaults.steps,
        batch_size=args.batch_size if args.batch_size is not None else defaults.batch_size,
        lr=args.lr if args.lr is not None else defaults.lr,
        l1=args.l1 if args.l1 is not None else defaults.l1,
        seed=args.seed,
        data_seed=args.data_seed,
        restarts=args.restarts if args.restarts is not None else defaults.restarts,
        check_every=args.check_every if args.check_every is not None else defaults.check_every,
        device=args.device,
    )
    result = train(cfg, args.out, overwrite=args.overwrite,
                   progress=False if args.quiet else None)
    if args.weights_hash_file:
        with open(f"{args.weights_hash_file}.rank{result.rank}", "w", encoding="utf-8") as f:
            f.write(weights_digest(result.model) + "\n")
    if result.rank == 0:
        verdict = "exact" if result.exact else "NOT exact"
        print(
            f"{cfg.rule} · {args.model} ({result.model.n_params} params): {verdict} — "
            f"{result.n_wrong}/512 neighbourhoods wrong, held-out accuracy "
            f"{100 * result.accuracy:.3f} %, {result.steps_run} steps, {result.seconds:.1f} s, "
            f"seed {result.seed_used} ({result.restarts_used} restarts) → {result.checkpoint}"
        )
    return 0


# ---------------------------------------------------------------------------- eval
def _eval(args: argparse.Namespace) -> int:
    from gzoo.ca import Rule, make_dataset
    from gzoo.checkpoint import load_pretrained
    from gzoo.verify import dataset_accuracy, rollout_agreement, verify_exact

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_pretrained(args.checkpoint, device=device)
    if model.rule is None:  # an image entry
        return _eval_image(args, model)
    rule = Rule.parse(args.rule) if args.rule else model.rule
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


def _eval_image(args: argparse.Namespace, model: torch.nn.Module) -> int:
    from gzoo.images import evaluate_on_protocol

    if args.data is None:
        raise ValueError(f"{args.checkpoint} is an image model: pass --data PATH (the MNIST "
                         "IDX files or mnist.pkl.gz)")
    kwargs = ", ".join(f"{k}={v!r}" for k, v in model.init_kwargs().items())
    print(f"{args.checkpoint}: {type(model).__name__}({kwargs}), {model.n_params} params")
    res = evaluate_on_protocol(model, args.data, verify=not args.unverified)
    recorded = (model.config.get("metrics") or {}).get("test_error")
    same = {True: "the digits it was tested on", False: "NOT the digits it was tested on",
            None: "no recorded digests to compare"}[res["matches_record"]]
    print(f"test error: {100 * res['test_error']:.2f} % of {res['n_test']} rotated test digits "
          f"(protocol {res['protocol']}; {same})")
    if isinstance(recorded, float):
        print(f"recorded:   {100 * recorded:.2f} %")
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
        if "task" in r:  # an image entry: its test error
            err = r.get("test_error")
            table.append((r["name"], "(images)", r.get("group") or "plain",
                          str(r.get("n_params", "?")), "-",
                          f"{100 * err:.2f} % error" if isinstance(err, float) else "?"))
            continue
        acc = r.get("accuracy")
        exact = {True: "yes", False: "no"}.get(r.get("exact"), "?")
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
    demo = sub.add_parser("demo", help="a pretrained p8 network runs HighLife beside the rule")
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
    tr.add_argument("--rule", default="B36/S23")
    tr.add_argument("--model", default="p8",
                    help="p4, p4m, p8 (GCNN of that group), tiny, small, multiscale (plain CNNs)")
    tr.add_argument("--out", required=True, help="checkpoint folder to write")
    tr.add_argument("--width", type=int, help="fields (GCNN) or channels (tiny/small)")
    tr.add_argument("--depth", type=int, help="1×1 (group) convolutions after the first layer")
    tr.add_argument("--backend", choices=("gzoo", "e2cnn"), help="GCNN layers (default gzoo)")
    tr.add_argument("--steps", type=int, help="steps per attempt (default 2000)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--data-seed", type=int, help="data seed (default: --seed)")
    tr.add_argument("--restarts", type=int, help="extra attempts with new seeds (default 2)")
    tr.add_argument("--batch-size", type=int, help="boards per step (default 16)")
    tr.add_argument("--lr", type=float, help="Adam learning rate (default 1e-2)")
    tr.add_argument("--l1", type=float, help="L1 weight (default 1e-5)")
    tr.add_argument("--check-every", type=int, help="steps between exactness checks (100)")
    tr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
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
    ev.add_argument("--data", help="image entries: the MNIST IDX files or mnist.pkl.gz")
    ev.add_argument("--unverified", action="store_true",
                    help="image entries: accept MNIST files that fail the standard checksums")
    ev.set_defaults(func=_eval)

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
