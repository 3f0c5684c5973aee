"""The ``gzoo`` command line: thin wrappers that parse, call the library and print."""

from __future__ import annotations

import argparse
import sys

import torch


def _demo(args: argparse.Namespace) -> int:
    from gzoo.layers import LAYERS

    torch.manual_seed(args.seed)
    print("Max relative equivariance error ‖Φ(L_g x) − L_g Φ(x)‖/‖Φ(x)‖ per group element")
    print("(3×3 kernels, circular padding, 2→3 fields, random 15×15 inputs; p8: 90° subgroup)\n")
    for dtype in (torch.float32, torch.float64):
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
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gzoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="show the layers' equivariance error")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"gzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
