"""Cell updates per second: gzoo's bit-sliced and byte-per-cell simulators, pyseagull, lifelib.

A cell update is one cell advanced by one step, so a call is ``batch · H · W · steps`` updates.
Settings (``--settings HxWxB``): one 2048² board and 64 boards of 64² by default. Rules
(``--rules``): Life (``B3/S23``, outer-totalistic), tlife (``B3/S2-i34q``, isotropic) and
``random-map`` (a seeded random 512-entry table, a MAP rule). Candidates, on the same random soup:

- ``bytes step``: ``x = step(x, rule, backend="bytes")`` ``steps`` times — today's byte-per-cell
  step (count lookup for B/S rules, pattern-index lookup otherwise): the reference of every ratio;
- ``bits step``: the same loop with ``backend="bits"``: every call packs, steps and unpacks;
- ``bytes simulate`` / ``bits simulate``: :func:`gzoo.ca.simulate`, writing the whole history;
- ``bits packed``: ``BitBoards.pack(x).step(rule, steps).unpack()``: packing once;
- ``bits engine``: ``packed.step(rule, steps)`` on boards packed beforehand, packed out — the
  bit-sliced step alone;
- the ``bits`` rows run natively, as every run does once its rule has been stepped for
  ``NATIVE_AFTER`` = 0.5 s (:mod:`gzoo.ca.bitnative`: the rule's step as generated C; ``step``
  and ``simulate`` pack, step and unpack in one call, ``BitBoards`` steps its words; built and
  checked before the timing); the ``(eager)`` rows are the same calls in eager PyTorch, as short
  runs and CUDA step;
- ``bytes table, int16 index`` (rules that are not B/S only; written here, not in gzoo): a leaner
  byte-per-cell table step — the nine-roll pattern index in ``int16`` and an ``index_select``
  gather instead of ``int64`` — a stronger byte baseline for the table ratios ("× lean");
- ``copy floor (bytes)``: ``steps`` copies of the byte boards (each cell read and written once
  per step, the least a byte-per-cell stepper moves); ``copy floor (packed)``: ``steps`` copies
  of the packed words. "of floor" = floor time / candidate time;
- ``pyseagull life_rule (patched)``: B/S rules only, one board at a time (it is 2-D only);
- ``lifelib`` (if ``python-lifelib`` is installed; Life, the 2048² setting): lifelib's own
  ``advance`` of the same soup on its *unbounded plane* — throughput only, its states differ
  from the torus and are not compared.

Every gzoo and pyseagull candidate must end in the same state (checked before timing). Timing is
round-robin (``common.bench``); ratios are per round against ``bytes step`` (medians and
quartiles of paired ratios). One torch thread by default (``--threads``).

Extra sections: ``--crossover`` (``step()`` bytes vs bits from 2¹⁰ to 2²⁰ cells: where
``backend="auto"`` switches), ``--chunk-sweep`` (bit-sliced step time against
``gzoo.ca.bitslice.CHUNK_WORDS``), ``--memory`` (peak RSS growth of one ``step`` on a
``--memory-size``² board, default 20000², each backend in a fresh subprocess, after one
step that builds what the step needs), ``--compile`` (the time to build and self-test a rule's
native library, in a fresh subprocess).

Run ``python benchmarks/simulate.py --crossover --memory`` (a few minutes on 2 cores); writes
``simulate.json`` and ``simulate.png`` to ``--out`` (default ``benchmarks/out/``).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from common import (
    REPO,
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

import gzoo.ca.bitnative as bitnative
import gzoo.ca.bitslice as bitslice
from gzoo.ca import Rule, simulate, step
from gzoo.ca.bitslice import BitBoards
from gzoo.ca.seagull import apply_seagull_patch

BASE = "bytes step"
LEAN = "bytes table, int16 index"
FLOORS = ("copy floor (bytes)", "copy floor (packed)")


def parse_rule(text: str, seed: int) -> Rule:
    if text == "random-map":
        return Rule.from_table(random.Random(seed).getrandbits(512))
    return Rule.parse(text)


def parse_setting(text: str) -> tuple[int, int, int]:
    try:
        h, w, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a setting is HxWxB, e.g. 2048x2048x1, got {text!r}") from None
    return h, w, b


# ---------------------------------------------------------------------- candidates
def loop(fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int) -> Callable:
    def run() -> torch.Tensor:
        x = x0
        for _ in range(steps):
            x = fn(x)
        sync(x0.device)
        return x

    return run


def kernels(native: bool, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with native steps on from the first cell update, or off (eager PyTorch)."""
    def run() -> Any:
        saved, bitnative.NATIVE_AFTER = bitnative.NATIVE_AFTER, (0 if native else None)
        try:
            return fn()
        finally:
            bitnative.NATIVE_AFTER = saved

    return run


def gzoo_candidates(boards: torch.Tensor, rule: Rule, steps: int) -> dict[str, Callable]:
    packed = BitBoards.pack(boards)
    byte_dst = torch.empty_like(boards)
    word_dst = torch.empty_like(packed.words)

    def floor(src: torch.Tensor, dst: torch.Tensor) -> Callable:
        def run() -> torch.Tensor:
            for _ in range(steps):
                dst.copy_(src)
            return dst

        return run

    bits = {
        "bits step": loop(lambda x: step(x, rule, backend="bits"), boards, steps),
        "bits simulate": lambda: simulate(boards, rule, steps, backend="bits")[-1],
        "bits packed": lambda: BitBoards.pack(boards).step(rule, steps).unpack(),
        "bits engine": lambda: packed.step(rule, steps),
    }
    return {
        BASE: loop(lambda x: step(x, rule, backend="bytes"), boards, steps),
        **{name: kernels(True, fn) for name, fn in bits.items()},
        **{f"{name} (eager)": kernels(False, fn) for name, fn in bits.items()
           if name != "bits packed"},
        "bytes simulate": lambda: simulate(boards, rule, steps, backend="bytes")[-1],
        FLOORS[0]: floor(boards, byte_dst),
        FLOORS[1]: floor(packed.words, word_dst),
    }


def lean_table_step(rule: Rule) -> Callable[[torch.Tensor], torch.Tensor]:
    """x' = table[Σ_bit x[i + dr, j + dc] · 2^bit] with an int16 index (bit = 3(dr+1) + dc+1)."""
    lut = rule.lookup()

    def fn(x: torch.Tensor) -> torch.Tensor:
        x8 = x.view(torch.uint8)
        p = torch.zeros(x.shape, dtype=torch.int16)
        for bit in range(9):
            dr, dc = bit // 3 - 1, bit % 3 - 1
            p.bitwise_or_(x8.roll((-dr, -dc), (-2, -1)).to(torch.int16).bitwise_left_shift_(bit))
        return lut.index_select(0, p.view(-1).to(torch.int32)).view(x.shape).view(torch.bool)

    return fn


def seagull_candidate(boards: torch.Tensor, rule: Rule, steps: int) -> Callable | None:
    if not rule.is_outer_totalistic:
        return None
    import seagull.rules

    apply_seagull_patch()
    fn, text = seagull.rules.life_rule, str(rule)
    np_boards = boards.numpy()

    def run() -> np.ndarray:
        out = []
        for board in np_boards:
            x = board
            for _ in range(steps):
                x = fn(x, text)
            out.append(x)
        return np.stack(out)

    return run


def lifelib_candidate(board: torch.Tensor, rule: Rule, steps: int) -> Callable | None:
    """lifelib's ``advance`` of the soup on its unbounded plane (state carried between calls,
    so hashing never replays a memoised call); ``None`` without python-lifelib."""
    try:
        import lifelib
    except ImportError:
        return None
    name = str(rule).replace("/", "").lower()
    session = lifelib.load_rules(name)  # compiles C++ once per rule (minutes), then cached
    tree = session.lifetree(memory=4000)
    ys, xs = np.nonzero(board.numpy())
    pattern = tree.pattern("", name)
    pattern[np.stack([xs, ys], 1).astype(np.int64)] = np.ones(len(xs), dtype=np.uint64)
    state = {"p": pattern}

    def run() -> int:
        state["p"] = state["p"].advance(steps)
        return state["p"].population

    return run


def check_agreement(cands: dict[str, Callable], names: Sequence[str]) -> None:
    ref = None
    for name in names:
        res = cands[name]()
        res = res.unpack() if isinstance(res, BitBoards) else res
        res = torch.as_tensor(np.asarray(res.cpu() if isinstance(res, torch.Tensor) else res))
        res = res.bool()
        if ref is None:
            ref = res
        elif not torch.equal(res, ref):
            raise SystemExit(f"{name} ends in a different state from {names[0]}")


def run_setting(
    args: argparse.Namespace, setting: tuple[int, int, int], rule_text: str
) -> list[dict[str, Any]]:
    h, w, b = setting
    steps = args.steps if args.steps else max(4, min(64, (1 << 25) // (h * w * b)))
    rule = parse_rule(rule_text, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    boards = torch.rand((b, h, w), generator=g) < args.density
    t0 = time.perf_counter()
    program = bitslice._program(rule)
    compile_s = time.perf_counter() - t0
    cands = gzoo_candidates(boards, rule, steps)
    compared = [BASE, "bits step", "bytes simulate", "bits simulate", "bits packed", "bits engine",
                "bits step (eager)", "bits simulate (eager)", "bits engine (eager)"]
    if not rule.is_outer_totalistic:
        cands[LEAN] = loop(lean_table_step(rule), boards, steps)
        compared.append(LEAN)
    sg = seagull_candidate(boards, rule, steps)
    if sg is not None:
        cands["pyseagull life_rule (patched)"] = sg
        compared.append("pyseagull life_rule (patched)")
    if b == 1 and str(rule) == "B3/S23" and not args.no_lifelib:
        ll = lifelib_candidate(boards[0], rule, steps)
        if ll is not None:
            cands["lifelib (unbounded plane)"] = ll
    check_agreement(cands, compared)
    print(f"\n{rule_text} = {rule.family} ({len(program.circuit.gates)} gates on "
          f"{program.inputs} inputs, compiled in {compile_s * 1e3:.0f} ms): "
          f"{b} × {h}×{w}, {steps} steps per call")
    timings = bench(cands, repeats=args.repeats, warmup=1)
    cells = b * h * w * steps
    rows = []
    for name, t in timings.items():
        ratio = paired_ratio(timings[BASE], t)
        floor = FLOORS[1] if name.startswith("bits") else FLOORS[0]
        rows.append({
            "setting": f"{b}×{h}×{w}", "rule": rule_text, "rule_string": str(rule)[:40],
            "family": rule.family, "gates": len(program.circuit.gates), "method": name,
            "steps": steps, "cell_updates": cells, "timing": t,
            "cell_updates_per_s": cells / t.median,
            "x_bytes_step": ratio["median"], "x_bytes_step_q1_q3": [ratio["q1"], ratio["q3"]],
            "x_lean": paired_ratio(timings[LEAN], t)["median"] if LEAN in timings else None,
            "of_copy_floor": (timings[floor].median / t.median
                              if name not in FLOORS and not name.startswith(("pyseagull",
                                                                              "lifelib"))
                              else None),
            "floor": floor,
        })
    print_table(
        ["method", "median", "IQR", "cell updates/s", "× bytes step [q1–q3]", "× lean",
         "of floor"],
        [[r["method"], fmt_time(r["timing"].median), fmt_time(r["timing"].iqr),
          f"{r['cell_updates_per_s']:.3g}",
          f"{r['x_bytes_step']:.2f} [{r['x_bytes_step_q1_q3'][0]:.2f}–"
          f"{r['x_bytes_step_q1_q3'][1]:.2f}]",
          "" if r["x_lean"] is None else f"{r['x_lean']:.2f}",
          "" if r["of_copy_floor"] is None else f"{r['of_copy_floor']:.1%}"] for r in rows],
    )
    return rows


# ---------------------------------------------------------------------- extra sections
def crossover(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``step()`` per call on single boards of 2¹⁰ … 2²⁰ cells: bytes, bits eager and bits native
    (built before the timing)."""
    out = []
    print("\n## crossover: step() per call, bytes / bits time (> 1: bits faster)")
    for rule_text in ("B3/S23", "random-map"):
        rule = parse_rule(rule_text, args.seed)
        bitslice._program(rule)  # compile the circuit outside the timing
        for log2 in range(10, 21):
            h, w = 1 << (log2 // 2), 1 << (log2 - log2 // 2)
            x = torch.rand(h, w, generator=torch.Generator().manual_seed(1)) < 0.4
            reps = max(1, (1 << 18) >> log2)
            cands = {
                "bytes": loop(lambda y, r=rule: step(y, r, backend="bytes"), x, reps),
                "bits": kernels(False, loop(lambda y, r=rule: step(y, r, backend="bits"), x,
                                            reps)),
                "bits native": kernels(True, loop(lambda y, r=rule: step(y, r, backend="bits"),
                                                  x, reps)),
            }
            cands["bits native"]()  # build the library outside the timing
            t = bench(cands, repeats=args.repeats, warmup=1)
            row: dict[str, Any] = {"rule": rule_text, "cells": h * w,
                                   "bytes_s": t["bytes"].median / reps}
            for name, key in (("bits", "bits"), ("bits native", "bits_native")):
                row[f"{key}_s"] = t[name].median / reps
                row[f"bytes_over_{key}"] = paired_ratio(t["bytes"], t[name])["median"]
            out.append(row)
    print_table(["rule", "cells", "bytes", "bits", "bits native", "bytes/bits", "bytes/native"],
                [[o["rule"], o["cells"], fmt_time(o["bytes_s"]), fmt_time(o["bits_s"]),
                  fmt_time(o["bits_native_s"]), f"{o['bytes_over_bits']:.2f}",
                  f"{o['bytes_over_bits_native']:.2f}"] for o in out])
    return out


def chunk_sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Eager bit-sliced steps (packed) at 2048² against the chunk size (never native: a rule
    whose tier filled earlier in the run would otherwise step natively here)."""
    out = []
    x = torch.rand(2048, 2048, generator=torch.Generator().manual_seed(1)) < 0.4
    packed = BitBoards.pack(x)
    default = bitslice.CHUNK_WORDS
    print("\n## chunk sweep: packed steps at 2048², time per step")
    for rule_text in ("B3/S23", "random-map"):
        rule = parse_rule(rule_text, args.seed)
        cands = {}
        for log2 in range(12, 21, 2):
            def run(log2: int = log2, rule: Rule = rule) -> BitBoards:
                bitslice.CHUNK_WORDS = 1 << log2
                return packed.step(rule, 4, hot=False)

            cands[str(1 << log2)] = run
        t = bench(cands, repeats=args.repeats, warmup=1)
        bitslice.CHUNK_WORDS = default
        out += [{"rule": rule_text, "chunk_words": int(k), "step_s": v.median / 4}
                for k, v in t.items()]
    print_table(["rule", "chunk words", "per step"],
                [[o["rule"], o["chunk_words"], fmt_time(o["step_s"])] for o in out])
    return out


COMPILE_PROBE = """
import sys, time, torch
from gzoo.ca import bitnative, bitslice
sys.path.insert(0, "benchmarks")
from simulate import parse_rule
torch.set_num_threads(1)
program = bitslice._program(parse_rule(sys.argv[1], int(sys.argv[2])))
t0 = time.perf_counter()
lib = bitnative._library(program)  # generate, compile, load and self-test
print(time.perf_counter() - t0, lib is not None)
"""


def compile_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seconds to build a rule's native library (generate the C, compile, load, self-test) in a
    fresh process, three times per rule (there is no cache: every process builds afresh)."""
    out = []
    print("\n## compile: building one native library in a fresh process (self-test included)")
    for rule_text in ("B3/S23", "B3/S2-i34q", "random-map"):
        row: dict[str, Any] = {"rule": rule_text, "gates": len(bitslice._program(
            parse_rule(rule_text, args.seed)).circuit.gates), "native_s": []}
        for _ in range(3):
            res = subprocess.run([sys.executable, "-c", COMPILE_PROBE, rule_text, str(args.seed)],
                                 capture_output=True, text=True, cwd=REPO, check=True)
            seconds, built = res.stdout.split()[-2:]
            if built != "True":
                raise SystemExit(f"no native library was built ({rule_text}): {res.stderr}")
            row["native_s"].append(float(seconds))
        out.append(row)
    print_table(["rule", "gates", "build + self-test (3 fresh processes)"],
                [[o["rule"], o["gates"], " / ".join(f"{v:.2f} s" for v in o["native_s"])]
                 for o in out])
    return out


MEMORY_PROBE = """
import sys, torch
from gzoo.ca import bitnative, step
torch.set_num_threads(1)
side, backend = int(sys.argv[1]), sys.argv[2]

def status(key):  # kB → bytes
    with open("/proc/self/status") as f:
        return next(int(v.split()[1]) * 1024 for v in f if v.startswith(key + ":"))

x = torch.empty(side, side, dtype=torch.uint8).random_(0, 2).view(torch.bool)
bitnative.NATIVE_AFTER = 0 if backend == "bits native" else None
backend = backend.split()[0]
step(x, "B3/S23", backend=backend)  # lazy imports, caches, the kernel
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
y = step(x, "B3/S23", backend=backend)
print(status("VmHWM") - before)
"""


def memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Peak RSS growth of one ``step`` (output included) on a bool board, fresh process each
    (Linux: ``/proc/self/clear_refs`` resets the peak before the step)."""
    out = []
    side = args.memory_size
    print(f"\n## memory: one step of Life on a {side}² bool board, peak RSS growth")
    for backend in ("bits", "bits native", "bytes"):
        res = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(side), backend],
                             capture_output=True, text=True, cwd=REPO, check=True)
        grown = int(res.stdout.strip().splitlines()[-1])
        out.append({"backend": backend, "side": side, "peak_rss_growth_bytes": grown,
                    "bytes_per_cell": grown / side**2})
    print_table(["backend", "board", "peak RSS growth", "bytes per cell (1 = the output)"],
                [[o["backend"], f"{side}²", f"{o['peak_rss_growth_bytes'] / 2**20:.0f} MiB",
                  f"{o['bytes_per_cell']:.2f}"] for o in out])
    return out


# ---------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--settings", type=parse_setting, nargs="+",
                   default=[(2048, 2048, 1), (64, 64, 64)], help="HxWxB")
    p.add_argument("--rules", nargs="+", default=["B3/S23", "B3/S2-i34q", "random-map"])
    p.add_argument("--steps", type=int, default=0,
                   help="steps per call (0: about 2^25 cell updates, 4..64 steps)")
    p.add_argument("--density", type=float, default=0.35, help="soup density")
    p.add_argument("--repeats", type=int, default=5, help="timed round-robin rounds")
    p.add_argument("--crossover", action="store_true", help="add the bytes/bits crossover")
    p.add_argument("--chunk-sweep", action="store_true", help="add the chunk-size sweep")
    p.add_argument("--memory", action="store_true", help="add the peak-RSS measurement")
    p.add_argument("--compile", action="store_true",
                   help="add the kernel build time, cold and warm (slow: fresh processes)")
    p.add_argument("--memory-size", type=int, default=20000, help="board side for --memory")
    p.add_argument("--no-lifelib", action="store_true", help="skip lifelib even if installed")
    add_common_args(p)
    p.set_defaults(threads=1)  # pyseagull and lifelib are single-threaded: like for like
    return p.parse_args(argv)


def plot(payload: dict[str, Any], path) -> Any:
    plt = pyplot()
    rows = [r for r in payload["rows"] if r["method"] not in FLOORS]
    groups = sorted({(r["setting"], r["rule"]) for r in rows}, key=str)
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.2 * len(groups) + 0.5), squeeze=False)
    for ax, (setting, rule) in zip(axes[:, 0], groups, strict=True):
        sel = [r for r in rows if (r["setting"], r["rule"]) == (setting, rule)]
        rates = [r["cell_updates_per_s"] for r in sel]
        colors = ["tab:blue" if r["method"].startswith("bits") else
                  "tab:orange" if r["method"].startswith("bytes") else "tab:gray" for r in sel]
        ax.barh([r["method"] for r in sel], rates, color=colors)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_title(f"{rule}, {setting}", fontsize=9)
        for i, r in enumerate(sel):
            ax.text(r["cell_updates_per_s"], i, f" {r['x_bytes_step']:.1f}×", va="center",
                    fontsize=8)
    axes[-1, 0].set_xlabel("cell updates per second (log), × = per-round ratio to bytes step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_run(args)
    t0 = time.perf_counter()
    info = machine_info("cpu")
    print(f"# Simulator throughput — {describe_machine(info)}")
    print(f"chunk {bitslice.CHUNK_WORDS} words; {args.repeats} round-robin rounds; "
          f"BITS_MIN_CELLS = {sys.modules['gzoo.ca.simulate'].BITS_MIN_CELLS}")
    rows = []
    for setting in args.settings:
        for rule_text in args.rules:
            rows += run_setting(args, setting, rule_text)
    payload: dict[str, Any] = {
        "benchmark": "simulate",
        "machine": info,
        "args": dict(vars(args)),
        "chunk_words": bitslice.CHUNK_WORDS,
        "rows": rows,
        "gpu": "not measured: no GPU machine was lent to this task",
    }
    if args.crossover:
        payload["crossover"] = crossover(args)
    if args.chunk_sweep:
        payload["chunk_sweep"] = chunk_sweep(args)
    if args.compile:
        payload["compile"] = compile_section(args)
    if args.memory:
        payload["memory"] = memory(args)
    payload["seconds"] = time.perf_counter() - t0
    return finish(payload, args, "simulate", plot)


if __name__ == "__main__":
    main()
