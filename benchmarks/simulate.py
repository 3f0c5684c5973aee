"""Cell updates per second: gzoo's torus simulator against pyseagull's ``life_rule``.

A cell update is one cell advanced by one step, so a run is ``batch · size² · steps`` updates
(default 64 boards of 128×128 for 50 steps, the issue's setting). Candidates, all on the same
random soups:

- ``gzoo step``: ``x = step(x, rule)`` ``steps`` times on the whole batch (bool boards);
- ``gzoo simulate``: :func:`gzoo.ca.simulate`, which also writes the ``[steps+1, B, H, W]``
  history;
- ``pyseagull life_rule``: one board at a time (it is 2-D only), ``steps`` calls each, with gzoo's
  documented monkey patch (:mod:`gzoo.ca.seagull`) and, for Moore rules, also unpatched;
- on CUDA, when available: ``gzoo step`` at the same batch and at ``--cuda-batch`` boards.

Every candidate must end in the same state (checked before timing). Timing is round-robin
(``common.bench``); ratios to pyseagull are per round (``common.paired_ratio``), i.e. measured
in the same run. Torch uses one CPU thread unless ``--threads`` says otherwise.
Targets (issue 4): ≥ 10× pyseagull on a 2-core CPU, ≥ 5e10 updates/s on an H100.

Run ``python benchmarks/simulate.py`` (about 20 s on 2 cores); writes ``simulate.json`` and
``simulate.png`` to ``--out`` (default ``benchmarks/out/``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from common import (
    add_common_args,
    bench,
    describe_machine,
    finish,
    fmt_time,
    machine_info,
    paired_ratio,
    print_table,
    pyplot,
    setup_run,
    sync,
)

from gzoo.ca import Rule, simulate, step
from gzoo.ca.seagull import apply_seagull_patch, remove_seagull_patch

BASE = "pyseagull life_rule (patched)"


def gzoo_step_loop(boards: torch.Tensor, rule: Rule, steps: int) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        x = boards
        for _ in range(steps):
            x = step(x, rule)
        sync(boards.device)
        return x

    return run


def gzoo_simulate(boards: torch.Tensor, rule: Rule, steps: int) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        hist = simulate(boards, rule, steps)
        sync(boards.device)
        return hist[-1]

    return run


def seagull_loop(boards: np.ndarray, fn: Callable, rule: Rule, steps: int) -> Callable:
    text = str(rule)

    def run() -> np.ndarray:
        out = []
        for board in boards:
            x = board
            for _ in range(steps):
                x = fn(x, text)
            out.append(x)
        return np.stack(out)

    return run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--rule", default="B3/S23")
    p.add_argument("--batch", type=int, default=64, help="boards per batch")
    p.add_argument("--size", type=int, default=128, help="board side")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--density", type=float, default=0.35, help="soup density")
    p.add_argument("--repeats", type=int, default=3, help="timed round-robin rounds")
    p.add_argument(
        "--cuda-batch", type=int, default=1024, help="extra CUDA candidate at this batch (0: none)"
    )
    p.add_argument(
        "--no-original", action="store_true", help="skip pyseagull's unpatched life_rule"
    )
    add_common_args(p)
    # pyseagull is single-threaded, and OpenMP threads on a busy shared machine collapse: one
    # thread is the like-for-like, robust default (``--threads 2`` for both cores).
    p.set_defaults(threads=1)
    return p.parse_args(argv)


def candidates(args: argparse.Namespace, rule: Rule) -> dict[str, tuple[Callable, int, str, int]]:
    """name → (callable, cell updates per call, device, batch)."""
    g = torch.Generator().manual_seed(args.seed)
    boards = torch.rand((args.batch, args.size, args.size), generator=g) < args.density
    per_board = args.size * args.size * args.steps
    cells = args.batch * per_board

    import seagull.rules

    remove_seagull_patch()
    original = seagull.rules.life_rule
    apply_seagull_patch()
    patched = seagull.rules.life_rule

    out: dict[str, tuple[Callable, int, str, int]] = {
        "gzoo step (cpu)": (gzoo_step_loop(boards, rule, args.steps), cells, "cpu", args.batch),
        "gzoo simulate (cpu)": (gzoo_simulate(boards, rule, args.steps), cells, "cpu", args.batch),
    }
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        out["gzoo step (cuda)"] = (
            gzoo_step_loop(boards.to(dev), rule, args.steps),
            cells,
            "cuda",
            args.batch,
        )
        out["gzoo simulate (cuda)"] = (
            gzoo_simulate(boards.to(dev), rule, args.steps),
            cells,
            "cuda",
            args.batch,
        )
        if args.cuda_batch:
            big = torch.rand((args.cuda_batch, args.size, args.size), generator=g) < args.density
            out[f"gzoo step (cuda, batch {args.cuda_batch})"] = (
                gzoo_step_loop(big.to(dev), rule, args.steps),
                args.cuda_batch * per_board,
                "cuda",
                args.cuda_batch,
            )
    np_boards = boards.numpy()
    out[BASE] = (seagull_loop(np_boards, patched, rule, args.steps), cells, "cpu", args.batch)
    if not args.no_original and rule.neighbourhood == "moore":  # unpatched: Moore only
        out["pyseagull life_rule (original)"] = (
            seagull_loop(np_boards, original, rule, args.steps),
            cells,
            "cpu",
            args.batch,
        )
    return out


def check_agreement(cands: dict[str, tuple[Callable, int, str, int]], batch: int) -> None:
    ref = None
    for name, (fn, _, _, n) in cands.items():
        if n != batch:
            continue
        res = fn()
        res = res.cpu().numpy() if isinstance(res, torch.Tensor) else res
        res = res.astype(bool)
        if ref is None:
            ref = res
        elif not np.array_equal(res, ref):
            raise SystemExit(f"{name} ends in a different state from the first candidate")


def plot(payload: dict[str, Any], path) -> Any:
    plt = pyplot()
    rows = payload["rows"]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.6))
    rates = [r["cell_updates_per_s"] for r in rows]
    colors = ["tab:blue" if r["method"].startswith("gzoo") else "tab:gray" for r in rows]
    ax.barh([r["method"] for r in rows], rates, color=colors)
    ax.set_xscale("log")
    ax.set_xlim(right=3 * max(rates))
    ax.invert_yaxis()
    ax.set_xlabel("cell updates per second (log scale)")
    a = payload["args"]
    ax.set_title(
        f"{payload['rule']}: {a['batch']} boards of {a['size']}², {a['steps']} steps, "
        f"{a['threads']} CPU thread(s)"
    )
    for i, r in enumerate(rows):
        ax.text(r["cell_updates_per_s"], i, f" {r['ratio_vs_pyseagull']:.1f}×", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_run(args)
    t0 = time.perf_counter()
    rule = Rule.parse(args.rule)
    cands = candidates(args, rule)
    devices = sorted({c[2] for c in cands.values()})
    info = machine_info(devices)
    print(f"# Simulator throughput — {describe_machine(info)}")
    print(
        f"rule {rule}, {args.batch} boards of {args.size}×{args.size}, {args.steps} steps, "
        f"{args.repeats} round-robin rounds"
    )
    check_agreement(cands, args.batch)
    timings = bench({n: c[0] for n, c in cands.items()}, repeats=args.repeats, warmup=1)

    rows = []
    for name, (_, cells, device, batch) in cands.items():
        t = timings[name]
        ratio = paired_ratio(timings[BASE], t)  # pyseagull time / candidate time, per round
        rows.append(
            {
                "method": name,
                "device": device,
                "batch": batch,
                "cell_updates": cells,
                "timing": t,
                "cell_updates_per_s": cells / t.median,
                "ratio_vs_pyseagull": ratio["median"] * cells / cands[BASE][1],
                "ratio_vs_pyseagull_q1_q3": [
                    ratio["q1"] * cells / cands[BASE][1],
                    ratio["q3"] * cells / cands[BASE][1],
                ],
            }
        )
    table = print_table(
        ["method", "batch", "median", "IQR", "cell updates/s", "× pyseagull (paired)"],
        [
            [
                r["method"],
                r["batch"],
                fmt_time(r["timing"].median),
                fmt_time(r["timing"].iqr),
                f"{r['cell_updates_per_s']:.3e}",
                f"{r['ratio_vs_pyseagull']:.1f}",
            ]
            for r in rows
        ],
    )
    payload = {
        "benchmark": "simulate",
        "rule": str(rule),
        "machine": info,
        "args": dict(vars(args)),
        "rows": rows,
        "table": table,
        "seconds": time.perf_counter() - t0,
    }
    return finish(payload, args, "simulate", plot)


if __name__ == "__main__":
    main()
