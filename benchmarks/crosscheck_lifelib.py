"""An independent check of gzoo's rule tables and simulator against python-lifelib.

lifelib (Adam P. Goucher's C++ library, on PyPI as ``python-lifelib``; it compiles one shared
object per rule with the local g++, minutes each) implements Golly's notations itself. Its plane
is unbounded, so a torus board is tiled 3×3 and run there: after ``t < size`` steps the centre
tile equals ``t`` torus steps (information moves one cell per step). Rules must be in lifelib's
canonical lowercase form; lifelib has no von Neumann genus, so V rules are given in their
equivalent Hensel spelling; B0 rules need a download lifelib makes on first use, so the random
rules drawn here have no birth on 0.

    pip install python-lifelib        # into your venv: a development tool, never a dependency
    python benchmarks/crosscheck_lifelib.py [--rules R ...] [--out DIR]

Writes ``crosscheck_lifelib.json`` (per rule: agree or not, the steps and board compared, the
seconds including compilation), with the commit and machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_common_args, git_info, machine_info, setup_run, write_json

from gzoo.ca import Rule, get_family, simulate

#: tlife, Just Friends, B13/S012V in Hensel form, and two random isotropic rules
DEFAULT_RULES = (
    "B3/S2-i34q",
    "B2-a/S12",
    "B1e2ak3einqy4jnry5einqy6ak7e/S0123-e4-ejr5aejkr6ei",
    "random-isotropic:1",
    "random-isotropic:2",
)


def resolve(text: str) -> tuple[Rule, str]:
    """The rule and the string handed to lifelib (``random-isotropic:SEED`` draws one)."""
    if text.startswith("random-isotropic:"):
        g = torch.Generator().manual_seed(int(text.split(":")[1]))
        fam = get_family("isotropic")
        bits = torch.randint(0, 2, (fam.n_classes,), generator=g).tolist()
        bits[fam.class_names.index("B0")] = 0  # lifelib emulates B0 with a downloaded tool
        rule = Rule.from_table(fam.table(bits))
        return rule, str(rule)
    rule = Rule.parse(text)
    return rule, text if rule.family == "von_neumann" else str(rule)


def lifelib_torus(lifelib_name: str, board: torch.Tensor, steps: int) -> torch.Tensor:
    import lifelib

    session = lifelib.load_rules(lifelib_name)
    tree = session.lifetree(n_layers=1)
    n_rows, n_cols = board.shape
    pattern = tree.pattern()
    for r, c in board.repeat(3, 3).nonzero().tolist():
        pattern[c, r] = 1  # lifelib indexes (x, y) = (column, row)
    after = pattern[steps]
    out = torch.zeros_like(board)
    for r in range(n_rows):
        for c in range(n_cols):
            out[r, c] = after[c + n_cols, r + n_rows]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", nargs="+", default=list(DEFAULT_RULES),
                        help="rule strings, or random-isotropic:SEED")
    parser.add_argument("--size", type=int, default=24, help="torus side (24)")
    parser.add_argument("--steps", type=int, default=12, help="steps compared (< size; 12)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    if not 0 < args.steps < args.size:
        parser.error(f"need 0 < --steps < --size, got {args.steps} and {args.size}")
    try:
        import lifelib  # noqa: F401
    except ImportError:
        print("python-lifelib is not installed: pip install python-lifelib (a development tool, "
              "not a gzoo dependency)", file=sys.stderr)
        return 2
    setup_run(args)
    rows = []
    for text in args.rules:
        rule, name = resolve(text)
        g = torch.Generator().manual_seed(args.seed)
        board = (torch.rand(args.size, args.size, generator=g) < 0.4).to(torch.uint8)
        t0 = time.perf_counter()
        theirs = lifelib_torus(name.replace("/", "").lower(), board, args.steps)
        ours = simulate(board, rule, args.steps)[args.steps]
        agree = bool(torch.equal(theirs, ours))
        rows.append({"rule": str(rule), "given": text, "lifelib": name.replace("/", "").lower(),
                     "family": rule.family, "agree": agree,
                     "differing_cells": int((theirs != ours).sum()),
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{rule!s:<60} {rule.family:<17} {'agree' if agree else 'DIFFER'}", flush=True)
    payload = {"benchmark": "crosscheck_lifelib", "git": git_info(), "machine": machine_info(),
               "size": args.size, "steps": args.steps, "seed": args.seed, "rules": rows}
    print(f"wrote {write_json(args.out / 'crosscheck_lifelib.json', payload)}")
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
