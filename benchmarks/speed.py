"""Speed of the hand-written layers against the plain-conv floor and their e2cnn twins.

For each layer and size, one interleaved run (:func:`common.bench`) times these candidates:

* ``hand``: the hand-written layer in train mode — forward (autograd recording) and
  forward+backward — and in eval mode under ``no_grad`` (the bank gathered afresh: the engine
  has no eval cache); ``hand cached`` is the alternative it does not take, the same layer with
  its bank served by :class:`gzoo.layers.engine.EvalBankCache` (eval mode only);
* ``floor``: a plain :class:`torch.nn.Conv2d` holding the same expanded bank
  (``layer.export()``) on the flattened input: what any implementation of the layer must at
  least pay. Its forward+backward includes the weight gradient of the whole bank;
* ``e2cnn``: the e2cnn twin (:mod:`gzoo.layers.reference`) in train mode (fwd, fwd+bwd) and
  eval mode under ``no_grad`` (its bank from the value-checked eval cache); ``e2cnn fresh``
  the twin expanding its bank on every eval call (what the cache saves);
* ``harmonic`` (p8 layers only): the band-limited variant (``rotation="harmonic"``: the bank
  built from basis coefficients by one batched matmul, then one ``conv2d``), same modes, eval
  calls served by its value-checked eval cache; its bank has the ring layer's shape, so the
  same ``floor`` is its floor too;
* optionally ``compiled`` (``--compile``: ``torch.compile`` of the hand-written layer) and,
  on CUDA, ``graph hand``/``graph floor`` (``--cuda-graphs``: forward+backward replayed as CUDA
  graphs by ``torch.cuda.make_graphed_callables``).

forward+backward = set grads to None, forward, ``backward`` of a fixed random output gradient;
the input needs a gradient for group layers (mid-network), not for lifting layers (they read
data). Ratios are medians of per-round ratios (same round, same machine state), with their
quartiles. Construction time per layer (median of a few, and the first, cold, one) comes first.

Sizes are ``BxHxC`` (batch, H = W, fields in = fields out) or an alias: ``ca`` = 64x64x4,
``image`` = 64x64x32, ``image8`` = 8x64x32 and ``image4`` = 4x64x32 (the image size at a
smaller batch: overheads weigh more, not less), ``tiny`` = 2x16x2. Default: ``ca image4`` on
CPU (about a minute on 2 quiet cores), ``ca image`` on CUDA.

Run ``python benchmarks/speed.py`` (``--device cuda`` for the GPU only, ``--help``).
"""

from __future__ import annotations

import argparse
import copy
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    Timing,
    add_common_args,
    bench,
    describe_machine,
    finish,
    fmt_time,
    keep_freed_memory,
    machine_info,
    paired_ratio,
    print_table,
    pyplot,
    setup_run,
    summarize,
    sync,
)
from torch import Tensor, nn

from gzoo.layers import GroupCorrelation
from gzoo.layers.engine import EvalBankCache
from gzoo.layers.harmonic import HARMONIC_OF
from gzoo.layers.reference import REFERENCE_LAYERS, E2Reference

SIZES: dict[str, tuple[int, int, int]] = {
    "ca": (64, 64, 4),
    "image": (64, 64, 32),
    "image8": (8, 64, 32),
    "image4": (4, 64, 32),
    "tiny": (2, 16, 2),
}
DEFAULT_SIZES = {"cpu": ["ca", "image4"], "cuda": ["ca", "image"]}
MODES = ("fwd+bwd", "fwd", "eval")
# targets from the issue: hand-written fwd+bwd within this factor of the floor
TARGET = {"cpu": {"ca": 1.10, "image": 1.10}, "cuda": {"ca": 1.20, "image": 1.03}}
CONSTRUCTION_TARGET_S = 0.010


@dataclass(frozen=True)
class Size:
    name: str
    batch: int
    hw: int
    fields: int

    @property
    def kind(self) -> str:
        """``ca`` or ``image`` — which target applies (CA-like below 16 fields)."""
        return "ca" if self.fields < 16 else "image"

    def __str__(self) -> str:
        return f"{self.name} ({self.batch}×{self.fields}f×{self.hw}²)"


def parse_size(spec: str) -> Size:
    if spec in SIZES:
        return Size(spec, *SIZES[spec])
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", spec)
    if not m:
        raise argparse.ArgumentTypeError(
            f"size {spec!r} is neither an alias {sorted(SIZES)} nor BxHxC (e.g. 64x64x4)")
    b, h, c = (int(v) for v in m.groups())
    return Size(spec, b, h, c)


def layer_classes(names: Sequence[str] | None) -> list[tuple[type[GroupCorrelation],
                                                            type[E2Reference]]]:
    pairs = [(ref.TWIN, ref) for ref in REFERENCE_LAYERS]
    if names:
        known = [h.__name__ for h, _ in pairs]
        unknown = set(names) - set(known)
        if unknown:
            raise SystemExit(f"unknown layers {sorted(unknown)}; choose from {known}")
        pairs = [p for p in pairs if p[0].__name__ in names]
    return pairs


# ---------------------------------------------------------------------- construction
def time_construction(
    hand_cls: type[GroupCorrelation], ref_cls: type[E2Reference], fields: int,
    args: argparse.Namespace, device: str,
) -> dict[str, Any]:
    """Seconds to build each implementation on ``device``: the first build in this process
    (``cold``: e2cnn builds and caches its group's representations on first use) and the
    median of ``--construct-repeats`` more."""
    k = args.kernel_size
    out: dict[str, Any] = {"layer": hand_cls.__name__, "fields": fields, "device": device}
    harmonic = [("harmonic", HARMONIC_OF[hand_cls])] if hand_cls in HARMONIC_OF else []
    for impl, cls in (("hand", hand_cls), *harmonic, ("e2cnn", ref_cls)):
        times = []
        for _ in range(1 + args.construct_repeats):
            sync(device)
            t0 = time.perf_counter()
            cls(fields, fields, k, padding=k // 2, device=device)
            sync(device)
            times.append(time.perf_counter() - t0)
        med, q1, q3 = summarize(times[1:] or times)
        out[impl] = {"first": times[0], "median": med, "q1": q1, "q3": q3, "times": times}
    out["e2cnn/hand"] = out["e2cnn"]["median"] / out["hand"]["median"]
    return out


# ---------------------------------------------------------------------- candidates
def _fwd(m: Callable[[Tensor], Tensor], x: Tensor) -> Callable[[], Any]:
    def run() -> None:
        m(x)

    return run


def _fwd_bwd(
    m: Callable[[Tensor], Tensor], x: Tensor, gy: Tensor, params: list[nn.Parameter]
) -> Callable[[], Any]:
    def run() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        m(x).backward(gy)

    return run


def _eval(m: Callable[[Tensor], Tensor], x: Tensor) -> Callable[[], Any]:
    def run() -> None:
        with torch.no_grad():
            m(x)

    return run


def _eval_cached(layer: GroupCorrelation, x: Tensor) -> Callable[[], Any]:
    """``layer``'s eval forward with its bank from an :class:`EvalBankCache`."""
    cache = EvalBankCache()
    params = list(layer.parameters())

    def bank() -> tuple[Tensor, Tensor | None]:
        return layer.expand_filter(), layer.expand_bias()

    def run() -> None:
        with torch.no_grad():
            layer._check_input(x)  # as forward does
            layer.correlate(x, *cache.bank(layer.training, params, bank))

    return run


def _eval_fresh(layer: E2Reference, x: Tensor) -> Callable[[], Any]:
    """The e2cnn twin's eval forward with the bank expanded on every call."""
    cache = layer.bank_cache

    def run() -> None:
        with torch.no_grad():
            cache.clear()
            layer(x)

    return run


def make_candidates(
    hand_cls: type[GroupCorrelation], ref_cls: type[E2Reference], size: Size,
    args: argparse.Namespace, device: str, extra: dict[str, Any],
) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """The candidates for one layer at one size, and a description of the problem."""
    k, c = args.kernel_size, size.fields
    hand = hand_cls(c, c, k, padding=k // 2, device=device).train()
    hand_eval = copy.deepcopy(hand).eval()
    floor = hand.export().train()
    e2 = ref_cls(c, c, k, padding=k // 2, device=device).train()
    e2_eval = copy.deepcopy(e2).eval()
    lifting = hand.lifting
    order = hand.group_order
    shape = [size.batch, c, *([] if lifting else [order]), size.hw, size.hw]
    x = torch.randn(shape, device=device).requires_grad_(not lifting)
    xf = x.detach().flatten(1, 2).requires_grad_(True) if not lifting else x
    with torch.no_grad():
        y = hand(x)
    gy = torch.randn_like(y)
    gyf = gy.flatten(1, 2)
    bank = tuple(floor.weight.shape)
    info = {
        "input": shape, "output": list(y.shape), "bank": list(bank),
        "flops_fwd": 2 * size.batch * y.shape[-2] * y.shape[-1] * int(np.prod(bank)),
        "params_hand": sum(p.numel() for p in hand.parameters()),
        "params_e2cnn": sum(p.numel() for p in e2.parameters()),
    }
    if hand_cls in HARMONIC_OF:
        harm = HARMONIC_OF[hand_cls](c, c, k, padding=k // 2, device=device).train()
        harm_eval = copy.deepcopy(harm).eval()
        info["params_harmonic"] = sum(p.numel() for p in harm.parameters())
    hp, fp, ep = list(hand.parameters()), list(floor.parameters()), list(e2.parameters())
    cands: dict[str, Callable[[], Any]] = {
        "floor fwd+bwd": _fwd_bwd(floor, xf, gyf, fp),
        "hand fwd+bwd": _fwd_bwd(hand, x, gy, hp),
        "e2cnn fwd+bwd": _fwd_bwd(e2, x, gy, ep),
        "floor fwd": _fwd(floor, xf),
        "hand fwd": _fwd(hand, x),
        "e2cnn fwd": _fwd(e2, x),
        "floor eval": _eval(floor, xf),
        "hand eval": _eval(hand_eval, x),
        "hand cached eval": _eval_cached(hand_eval, x),
        "e2cnn eval": _eval(e2_eval, x),
        "e2cnn fresh eval": _eval_fresh(copy.deepcopy(e2_eval), x),
    }
    if hand_cls in HARMONIC_OF:
        cands |= {
            "harmonic fwd+bwd": _fwd_bwd(harm, x, gy, list(harm.parameters())),
            "harmonic fwd": _fwd(harm, x),
            "harmonic eval": _eval(harm_eval, x),
        }
    if args.compile:
        # compile in this process: a pool of compile workers left busy in the background
        # would steal the cores from the timed candidates (seen on a 2-core machine)
        import torch._inductor.config as inductor_config

        inductor_config.compile_threads = 1
        # a fresh dynamo cache per (layer, size): all layers share GroupCorrelation.forward,
        # whose cache would hit the recompile limit and silently fall back to eager
        torch._dynamo.reset()
        compiled = torch.compile(copy.deepcopy(hand))
        cp = list(compiled.parameters())
        t0 = time.perf_counter()
        compiled(x).backward(gy)  # compiles forward and backward
        sync(device)
        extra["compile_seconds"] = time.perf_counter() - t0
        cands["compiled fwd+bwd"] = _fwd_bwd(compiled, x, gy, cp)
        cands["compiled fwd"] = _fwd(compiled, x)
    if args.cuda_graphs and device.startswith("cuda"):
        g_hand = copy.deepcopy(hand)
        g_floor = copy.deepcopy(floor)
        gx = x.detach().clone().requires_grad_(x.requires_grad)
        gxf = gx.detach().flatten(1, 2).clone().requires_grad_(xf.requires_grad)
        t0 = time.perf_counter()
        graphed_hand = torch.cuda.make_graphed_callables(g_hand, (gx,))
        graphed_floor = torch.cuda.make_graphed_callables(g_floor, (gxf,))
        sync(device)
        extra["graph_capture_seconds"] = time.perf_counter() - t0
        cands["graph hand fwd+bwd"] = _fwd_bwd(graphed_hand, gx, gy, list(g_hand.parameters()))
        cands["graph floor fwd+bwd"] = _fwd_bwd(graphed_floor, gxf, gyf,
                                                list(g_floor.parameters()))
    return cands, info


RATIOS: tuple[tuple[str, str, str], ...] = (
    ("hand/floor fwd+bwd", "hand fwd+bwd", "floor fwd+bwd"),
    ("hand/floor fwd", "hand fwd", "floor fwd"),
    ("hand/floor eval", "hand eval", "floor eval"),
    ("e2cnn/hand fwd+bwd", "e2cnn fwd+bwd", "hand fwd+bwd"),
    ("e2cnn/hand fwd", "e2cnn fwd", "hand fwd"),
    ("e2cnn/hand eval", "e2cnn eval", "hand eval"),
    ("hand cached/hand eval", "hand cached eval", "hand eval"),
    ("e2cnn/e2cnn fresh eval", "e2cnn eval", "e2cnn fresh eval"),
    ("harmonic/floor fwd+bwd", "harmonic fwd+bwd", "floor fwd+bwd"),
    ("harmonic/floor fwd", "harmonic fwd", "floor fwd"),
    ("harmonic/floor eval", "harmonic eval", "floor eval"),
    ("e2cnn/harmonic fwd+bwd", "e2cnn fwd+bwd", "harmonic fwd+bwd"),
    ("e2cnn/harmonic fwd", "e2cnn fwd", "harmonic fwd"),
    ("e2cnn/harmonic eval", "e2cnn eval", "harmonic eval"),
    ("compiled/floor fwd+bwd", "compiled fwd+bwd", "floor fwd+bwd"),
    ("compiled/floor fwd", "compiled fwd", "floor fwd"),
    ("graph hand/graph floor fwd+bwd", "graph hand fwd+bwd", "graph floor fwd+bwd"),
    ("graph hand/floor fwd+bwd", "graph hand fwd+bwd", "floor fwd+bwd"),
)


def measure(
    hand_cls: type[GroupCorrelation], ref_cls: type[E2Reference], size: Size,
    args: argparse.Namespace, device: str,
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    cands, info = make_candidates(hand_cls, ref_cls, size, args, device, extra)
    timings: dict[str, Timing] = bench(
        cands, device=device, repeats=args.repeats, warmup=args.warmup,
        min_sample=args.min_sample,
    )
    ratios = {name: paired_ratio(timings[a], timings[b])
              for name, a, b in RATIOS if a in timings and b in timings}
    floor_fwd = timings["floor fwd"].median
    return {
        "device": device, "size": vars(size) | {"kind": size.kind}, "layer": hand_cls.__name__,
        **info, **extra,
        "floor_fwd_gflops": info["flops_fwd"] / floor_fwd / 1e9,
        "timings": {n: t.as_dict() for n, t in timings.items()},
        "ratios": ratios,
    }


# ---------------------------------------------------------------------- report
def _ratio(r: dict[str, float] | None) -> str:
    if r is None:
        return "-"
    return f"{r['median']:.2f} [{r['q1']:.2f}–{r['q3']:.2f}]"


def print_tables(runs: list[dict[str, Any]], construction: list[dict[str, Any]]) -> list[str]:
    tables = []
    for mode in MODES:
        extra_cols = [c for c in ("compiled", "graph hand", "graph floor", "hand cached",
                                  "e2cnn fresh")
                      if any(f"{c} {mode}" in r["timings"] for r in runs)]
        harm = any(f"harmonic {mode}" in r["timings"] for r in runs)
        headers = ["device", "size", "layer", "floor", "hand", "hand/floor", "e2cnn",
                   "e2cnn/hand",
                   *(["harmonic", "harmonic/floor", "e2cnn/harmonic"] if harm else []),
                   *extra_cols]
        rows = []
        for r in runs:
            t = r["timings"]
            ra = r["ratios"]
            h = t.get(f"harmonic {mode}")
            rows.append([
                r["device"], r["size"]["name"], r["layer"],
                fmt_time(t[f"floor {mode}"]["median"]), fmt_time(t[f"hand {mode}"]["median"]),
                _ratio(ra.get(f"hand/floor {mode}")), fmt_time(t[f"e2cnn {mode}"]["median"]),
                _ratio(ra.get(f"e2cnn/hand {mode}")),
                *([fmt_time(h["median"]) if h else "-", _ratio(ra.get(f"harmonic/floor {mode}")),
                   _ratio(ra.get(f"e2cnn/harmonic {mode}"))] if harm else []),
                *[fmt_time(t[f"{c} {mode}"]["median"]) if f"{c} {mode}" in t else "-"
                  for c in extra_cols],
            ])
        what = {"fwd+bwd": "forward+backward, train mode",
                "fwd": "forward, train mode (autograd recording)",
                "eval": "forward, eval mode under no_grad"}[mode]
        print(f"\n## {what}: median time; ratios = median [quartiles] of per-round ratios")
        tables.append(print_table(headers, rows))
    print("\n## Construction (median of repeats; first = first build in this process)")
    headers = ["device", "layer", "fields", "hand", "hand first", "harmonic", "harmonic first",
               "e2cnn", "e2cnn first", "e2cnn/hand"]
    rows = [[c["device"], c["layer"], c["fields"], fmt_time(c["hand"]["median"]),
             fmt_time(c["hand"]["first"]),
             *([fmt_time(c["harmonic"]["median"]), fmt_time(c["harmonic"]["first"])]
               if "harmonic" in c else ["-", "-"]),
             fmt_time(c["e2cnn"]["median"]),
             fmt_time(c["e2cnn"]["first"]), f"{c['e2cnn/hand']:.0f}×"] for c in construction]
    tables.append(print_table(headers, rows))
    return tables


def check_targets(runs: list[dict[str, Any]],
                  construction: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, each with the worst case measured and whether it is met."""
    targets: dict[str, Any] = {}
    for dev in dict.fromkeys(r["device"] for r in runs):
        dtype = "cuda" if dev.startswith("cuda") else "cpu"
        for impl in ("hand", "harmonic"):  # harmonic: the p8 layers' band-limited variant
            key = f"{impl}/floor fwd+bwd"
            for kind in ("ca", "image"):
                sub = [r for r in runs if r["device"] == dev and r["size"]["kind"] == kind
                       and key in r["ratios"]]
                if not sub:
                    continue
                worst = max(sub, key=lambda r, key=key: r["ratios"][key]["median"])
                ratio = worst["ratios"][key]["median"]
                limit = TARGET[dtype][kind]
                targets[f"{dev} {kind}: {impl} fwd+bwd ≤ {limit:.2f}× floor"] = {
                    "worst": ratio, "at": f"{worst['layer']} {worst['size']['name']}",
                    "met": ratio <= limit,
                }
        sub = [r for r in runs if r["device"] == dev]
        worst = min(sub, key=lambda r: r["ratios"]["e2cnn/hand fwd+bwd"]["median"])
        ratio = worst["ratios"]["e2cnn/hand fwd+bwd"]["median"]
        targets[f"{dev}: faster than e2cnn train (e2cnn/hand fwd+bwd > 1)"] = {
            "worst": ratio, "at": f"{worst['layer']} {worst['size']['name']}", "met": ratio > 1,
        }
    for impl in ("hand", "harmonic"):
        built = [c for c in construction if impl in c]
        if not built:
            continue
        worst_c = max(built, key=lambda c, impl=impl: c[impl]["median"])
        targets[f"construction < {CONSTRUCTION_TARGET_S * 1e3:.0f} ms per layer ({impl})"] = {
            "worst": worst_c[impl]["median"],
            "at": f"{worst_c['layer']} {worst_c['fields']} fields {worst_c['device']}",
            "met": worst_c[impl]["median"] < CONSTRUCTION_TARGET_S,
        }
    print("\n## Targets (this run; noisy on a shared machine)")
    for name, t in targets.items():
        val = fmt_time(t["worst"]) if name.startswith("construction") else f"{t['worst']:.3f}"
        print(f"- {name}: worst {val} at {t['at']} → {'met' if t['met'] else 'MISSED'}")
    return targets


def plot(payload: dict[str, Any], path: Path) -> Path:
    """Per (device, size): fwd+bwd times (log), hand/floor and e2cnn/hand ratios per mode with
    their quartiles; last row: construction times."""
    plt = pyplot()
    runs, construction = payload["runs"], payload["construction"]
    panels = list(dict.fromkeys((r["device"], r["size"]["name"]) for r in runs))
    nrows = len(panels) + (1 if construction else 0)
    fig, axes = plt.subplots(nrows, 3, figsize=(17, 3.8 * nrows), squeeze=False)
    impls = ["floor", "hand", "harmonic", "e2cnn", "compiled", "graph hand", "graph floor"]
    for i, (dev, size) in enumerate(panels):
        sub = [r for r in runs if r["device"] == dev and r["size"]["name"] == size]
        x = np.arange(len(sub))
        labels = [r["layer"] for r in sub]
        ax = axes[i][0]
        present = [m for m in impls if any(f"{m} fwd+bwd" in r["timings"] for r in sub)]
        width = 0.8 / len(present)
        for n, impl in enumerate(present):
            vals = [r["timings"].get(f"{impl} fwd+bwd", {}).get("median", np.nan) * 1e3
                    for r in sub]
            ax.bar(x + n * width, vals, width, label=impl)
        ax.set_xticks(x + width * (len(present) - 1) / 2, labels, rotation=25, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(f"{dev} {size}: fwd+bwd time", fontsize=10)
        ax.legend(fontsize=7)
        limit = TARGET["cuda" if dev.startswith("cuda") else "cpu"][sub[0]["size"]["kind"]]
        for ax, (num, den), ref in ((axes[i][1], ("hand", "floor"), limit),
                                    (axes[i][2], ("e2cnn", "hand"), 1.0)):
            width = 0.8 / len(MODES)
            span = [ref]
            for n, mode in enumerate(MODES):
                rs = [r["ratios"].get(f"{num}/{den} {mode}") for r in sub]
                med = np.array([q["median"] if q else np.nan for q in rs])
                lo = np.array([q["median"] - q["q1"] if q else 0 for q in rs])
                hi = np.array([q["q3"] - q["median"] if q else 0 for q in rs])
                ax.bar(x + n * width, med, width, yerr=[lo, hi], capsize=2, label=mode)
                span += [v for q in rs if q for v in (q["q1"], q["q3"])]
            if max(span) > 3:
                ax.set_yscale("log")
            else:  # zoom on the interesting range around 1
                ax.set_ylim(min(0.8, min(span) - 0.05), max(span) + 0.05)
            ax.axhline(1.0, color="k", lw=0.8)
            if ref != 1.0:
                ax.axhline(ref, color="r", ls="--", lw=0.8, label=f"target {ref:g}×")
            ax.set_xticks(x + width * (len(MODES) - 1) / 2, labels, rotation=25, fontsize=8)
            ax.set_title(f"{dev} {size}: {num}/{den} (median, quartiles)", fontsize=10)
            ax.legend(fontsize=7)
    if construction:
        devs = list(dict.fromkeys(c["device"] for c in construction))
        for j in range(3):
            ax = axes[-1][j]
            if j >= len(devs):
                ax.axis("off")
                continue
            sub = [c for c in construction if c["device"] == devs[j]]
            labels = [f"{c['layer']}\n{c['fields']}f" for c in sub]
            x = np.arange(len(sub))
            ax.bar(x - 0.2, [c["hand"]["median"] * 1e3 for c in sub], 0.4, label="hand")
            ax.bar(x + 0.2, [c["e2cnn"]["median"] * 1e3 for c in sub], 0.4, label="e2cnn")
            ax.axhline(CONSTRUCTION_TARGET_S * 1e3, color="k", ls="--", lw=0.8,
                       label="10 ms target")
            ax.set_xticks(x, labels, rotation=45, fontsize=6)
            ax.set_yscale("log")
            ax.set_ylabel("ms")
            ax.set_title(f"{devs[j]}: construction", fontsize=10)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "both"), default="auto",
                   help="auto: CPU, and CUDA too when available; both: CPU and CUDA (error "
                   "without CUDA)")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=None,
                   help="sizes BxHxC or aliases (default per device: "
                   f"{DEFAULT_SIZES}; aliases {SIZES})")
    p.add_argument("--layers", nargs="+", default=None,
                   help="hand-written layer names (default: all six)")
    p.add_argument("--kernel-size", type=int, default=3)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds (default 5 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed rounds (default 1 on CPU, 3 on CUDA)")
    p.add_argument("--min-sample", type=float, default=None,
                   help="seconds; faster candidates are repeated within a sample "
                   "(default 0.02 on CPU, 0.01 on CUDA)")
    p.add_argument("--construct-repeats", type=int, default=3,
                   help="constructions timed per layer after the first")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile of the hand-written layer (slow to compile)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="on CUDA, also time fwd+bwd replayed as CUDA graphs (hand and floor)")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave glibc malloc as it is (by default freed memory is kept for reuse; "
                   "see common.keep_freed_memory)")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="set torch.backends.cudnn.benchmark (autotuned conv algorithms)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: tiny size, 2 rounds, no warm-up repeats (seconds)")
    add_common_args(p)
    args = p.parse_args(argv)
    if args.kernel_size < 1 or args.kernel_size % 2 == 0:
        p.error("--kernel-size must be a positive odd int")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_run(args)
    if args.device == "auto":
        devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    elif args.device == "both":
        devices = ["cpu", "cuda"]
    else:
        devices = [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--device cuda/both: no CUDA device available")
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    malloc = ({"applied": False, "reason": "--system-malloc"} if args.system_malloc
              else keep_freed_memory())
    if args.quick:
        args.sizes = args.sizes or [parse_size("tiny")]
        args.repeats = args.repeats or 2
        args.warmup = 1 if args.warmup is None else args.warmup
        args.min_sample = 0.0 if args.min_sample is None else args.min_sample
        args.construct_repeats = min(args.construct_repeats, 1)
    pairs = layer_classes(args.layers)
    info = machine_info(devices)
    print(f"# Speed — {describe_machine(info)}; glibc malloc keeps freed memory: "
          f"{malloc['applied']}")
    t_start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    construction: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}
    for device in devices:
        cuda = device == "cuda"
        dev_args = argparse.Namespace(**vars(args))
        dev_args.repeats = args.repeats or (20 if cuda else 5)
        dev_args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
        dev_args.min_sample = args.min_sample if args.min_sample is not None else (
            0.01 if cuda else 0.02)
        sizes = args.sizes or [parse_size(s) for s in DEFAULT_SIZES[device]]
        settings[device] = {"sizes": [vars(s) for s in sizes], "repeats": dev_args.repeats,
                            "warmup": dev_args.warmup, "min_sample": dev_args.min_sample}
        for fields in dict.fromkeys(s.fields for s in sizes):
            for hand_cls, ref_cls in pairs:
                construction.append(time_construction(hand_cls, ref_cls, fields, dev_args,
                                                      device))
        for size in sizes:
            for hand_cls, ref_cls in pairs:
                t0 = time.perf_counter()
                run = measure(hand_cls, ref_cls, size, dev_args, device)
                run["seconds"] = time.perf_counter() - t0
                runs.append(run)
                r = run["ratios"]
                print(f"  {device} {size} {hand_cls.__name__}: hand/floor fwd+bwd "
                      f"{_ratio(r['hand/floor fwd+bwd'])}, e2cnn/hand "
                      f"{_ratio(r['e2cnn/hand fwd+bwd'])} ({run['seconds']:.1f} s)", flush=True)
                if cuda:
                    torch.cuda.empty_cache()
    tables = print_tables(runs, construction)
    targets = check_targets(runs, construction)
    payload = {
        "benchmark": "speed",
        "machine": info,
        "args": {k: (v if k != "sizes" else [vars(s) for s in v or []])
                 for k, v in vars(args).items()},
        "settings": settings,
        "malloc": malloc,
        "runs": runs,
        "construction": construction,
        "targets": targets,
        "tables": tables,
        "seconds": time.perf_counter() - t_start,
    }
    return finish(payload, args, "speed", plot)


if __name__ == "__main__":
    main()
