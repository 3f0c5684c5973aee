"""The rule-space atlas as a benchmark: success rates, time per rule, throughput, ablation.

    python benchmarks/atlas.py full          # the issue's sample, one rule at a time (CLI defaults)
    python benchmarks/atlas.py throughput    # `gzoo train` one by one vs `gzoo atlas` batched
    python benchmarks/atlas.py ablation      # what each lever of the recipe buys
    python benchmarks/atlas.py report        # the tables of ATLAS.md, from the records

**full** — atlases (:mod:`gzoo.atlas`) of seeded samples: ``--moore`` outer-totalistic rules
(birth and survival sets uniform, B0 included) and ``--vn`` von Neumann and ``--iso`` isotropic
rules, each × p4, p4m, p8, with the CLI's default recipe and one rule in flight (so each record's
seconds and CPU seconds are what training that rule took on one thread). Pairs whose symmetry
floor is positive are recorded as such, not trained. Resumable (the atlas folders under
``--out``).

**throughput** — the same ``--rules`` rules × ``--group`` trained (a) one by one, each by its own
``gzoo train`` process (what a user runs: start-up, training, checkpoint), (b) by one
``gzoo atlas`` process for each ``--in-flight`` value (rules trained at once), and (c) by
``torchrun`` with 2 ``gzoo atlas`` processes at the default in-flight
(:data:`gzoo.atlas.IN_FLIGHT`); rules per hour of each against (a) in the same round,
``--rounds`` rounds in alternating order.

**ablation** — one seeded sample trained with the levers switched on one after the other: the
old default (random soups), then all 512 patterns on the covering torus (uniform over patterns,
one net, restarts only after the full budget, no hinge), + class balance, + hinge, + restarts on
plateaus, + a population of 4 nets (the default), and the default at width 5.

Each writes ``benchmarks/records/atlas_<mode>.json`` (``--records``): the machine, the commit at
the start, the recipe, every record and the summary — the source of every number in
``benchmarks/ATLAS.md``.
Run with ``OMP_NUM_THREADS=1`` (one torch thread is set here too).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import common
import torch

from gzoo.atlas import (
    IN_FLIGHT,
    format_summary,
    read_records,
    run_atlas,
    sample_rules,
    summarize,
    write_summary,
)
from gzoo.ca import Rule
from gzoo.models import build_model
from gzoo.population import PatternData, train_population
from gzoo.train import TrainConfig, train
from gzoo.verify import verify_exact

RECORDS = common.REPO / "benchmarks" / "records"
FAMILIES = {"moore": "outer_totalistic", "vn": "von_neumann", "iso": "isotropic"}


def _header(args: argparse.Namespace) -> dict[str, Any]:
    return {"machine": common.machine_info(), "args": vars(args) | {"out": str(args.out)},
            "recipe": TrainConfig().to_dict(), "started": time.time()}


def _save(name: str, payload: dict[str, Any], records: Path) -> Path:
    payload["seconds"] = time.time() - payload["started"]
    path = common.write_json(records / f"atlas_{name}.json", payload)
    print(f"wrote {path}")
    return path


# ---------------------------------------------------------------------------- full
def full(args: argparse.Namespace) -> None:
    payload = _header(args)
    records: list[dict[str, Any]] = []
    for key, n in (("moore", args.moore), ("vn", args.vn), ("iso", args.iso)):
        if n <= 0:
            continue
        folder = args.out / f"full_{key}"
        run_atlas(folder, family=FAMILIES[key], n_rules=n, seed=args.sample_seed,
                  in_flight=1, log=print)
        write_summary(folder)
        records += read_records(folder)
    payload["summary"] = summarize(records)
    payload["records"] = records
    print(format_summary(payload["summary"]))
    _save("full", payload, args.records)


# ---------------------------------------------------------------------------- throughput
def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a child process (which must succeed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    w, c = time.perf_counter(), _child_cpu()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - w, _child_cpu() - c


def throughput(args: argparse.Namespace) -> None:
    payload = _header(args)
    rules = sample_rules("outer_totalistic", args.rules, args.sample_seed)
    py = sys.executable
    scratch = args.out / "throughput"
    # ways: one `gzoo train` per rule; one `gzoo atlas` process per --in-flight value; torchrun
    # with 2 `gzoo atlas` processes at the default in-flight
    ways = ["one_by_one", *(f"atlas_1p_{k}" for k in args.in_flight), f"atlas_2p_{IN_FLIGHT}"]
    rounds = []
    for r in range(args.rounds):
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        found: dict[str, Any] = {}

        def one_by_one() -> dict[str, Any]:
            per_rule = []
            for i, rule in enumerate(rules):
                wall, cpu = _run([py, "-m", "gzoo", "train", "--rule", str(rule), "--model",
                                  args.group, "--quiet", "--out", str(scratch / f"train_{i}")])
                cfg = json.loads((scratch / f"train_{i}" / "config.json").read_text())
                per_rule.append({"rule": str(rule), "wall": wall, "cpu": cpu,
                                 "exact": cfg["metrics"]["exact"]})
            wall = sum(p["wall"] for p in per_rule)
            return {"wall": wall, "cpu": sum(p["cpu"] for p in per_rule),
                    "exact": sum(p["exact"] for p in per_rule), "per_rule": per_rule}

        def atlas(way: str) -> dict[str, Any]:
            _, procs_p, flight = way.split("_")  # atlas_<processes>p_<in flight>
            procs, in_flight = int(procs_p[:-1]), int(flight)
            folder = scratch / way
            cmd = ["-m", "gzoo", "atlas", "--rules", str(args.rules), "--groups", args.group,
                   "--sample-seed", str(args.sample_seed), "--in-flight", str(in_flight),
                   "--quiet", "--out", str(folder)]
            if procs > 1:
                cmd = ["-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={procs}", *cmd]
            wall, cpu = _run([py, *cmd])
            recs = read_records(folder)
            return {"wall": wall, "cpu": cpu, "exact": sum(bool(x["exact"]) for x in recs),
                    "processes": procs, "in_flight": in_flight}

        order = ways if r % 2 == 0 else ways[::-1]  # interleaved: alternate the order
        for name in order:
            found[name] = one_by_one() if name == "one_by_one" else atlas(name)
            found[name]["rules_per_hour"] = 3600 * args.rules / found[name]["wall"]
            print(f"round {r + 1}: {name}: {found[name]['wall']:.1f} s wall, "
                  f"{found[name]['cpu']:.1f} s CPU, {found[name]['exact']}/{args.rules} exact",
                  flush=True)
        for name in ways:  # rules per hour against one by one: its wall time / theirs
            found[name]["ratio"] = found["one_by_one"]["wall"] / found[name]["wall"]
        rounds.append(found)
        print(f"round {r + 1}: × one by one: " + ", ".join(
            f"{n} {found[n]['ratio']:.2f}" for n in ways[1:]), flush=True)
    payload["rules"] = [str(x) for x in rules]
    payload["ways"] = ways
    payload["rounds"] = rounds
    payload["median_ratio"] = {n: statistics.median(rd[n]["ratio"] for rd in rounds)
                               for n in ways}
    _save("throughput", payload, args.records)


# ---------------------------------------------------------------------------- ablation
def _soups(rule: Rule, group: str, cfg: TrainConfig) -> dict[str, Any]:
    """The old default: random soups, attempts of 2000 steps, 2 restarts, checks every 100."""
    c = replace(cfg, rule=str(rule), model=group, data="soups", restarts=2, check_every=100)
    w, cpu = time.perf_counter(), time.process_time()
    res = train(c)
    return {"exact": res.exact, "n_wrong": res.n_wrong, "seconds": time.perf_counter() - w,
            "cpu_seconds": time.process_time() - cpu}


def _patterns(rule: Rule, group: str, cfg: TrainConfig, family: str | None) -> dict[str, Any]:
    def build() -> torch.nn.Module:
        return build_model(group, **cfg.model_kwargs)

    def proved(_: int, net: torch.nn.Module) -> bool:
        res = verify_exact(net, rule)
        return res.exact and res.method == "exhaustive"

    [o] = train_population(
        build, [PatternData.build(rule, family=family)], population=cfg.population,
        steps=cfg.steps, restarts=cfg.restarts, patience=cfg.patience, seed=cfg.seed, lr=cfg.lr,
        l1=cfg.l1, margin=cfg.margin, hinge=cfg.hinge, check_every=cfg.check_every,
        verify=proved)
    return {"exact": o.exact, "n_wrong": o.n_wrong, "seconds": o.seconds,
            "cpu_seconds": o.cpu_seconds, "draws": o.draws, "steps": o.steps}


def ablation(args: argparse.Namespace) -> None:
    payload = _header(args)
    base = TrainConfig()
    never = 10 ** 9  # no restart on plateaus
    plain = replace(base, population=1, restarts=2, patience=never, hinge=0.0)
    rows: list[tuple[str, str, TrainConfig, str | None]] = [
        ("soups (the old default)", "soups", replace(base, restarts=2), None),
        ("patterns, uniform over patterns, 1 net, 3 draws", "patterns", plain, "map"),
        ("+ class balance", "patterns", plain, None),
        ("+ hinge (m = 1, μ = 1)", "patterns", replace(plain, hinge=1.0), None),
        ("+ restarts on plateaus (patience 400, 16 re-draws)", "patterns",
         replace(base, population=1), None),
        ("+ population of 4 nets (the default)", "patterns", base, None),
        ("default at width 5 (p4: 6)", "patterns", base, "wide"),
    ]
    rules = sample_rules("outer_totalistic", args.rules, args.sample_seed)
    out_rows = []
    for name, data, cfg, family in rows:
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        per_group: dict[str, list[dict[str, Any]]] = {}
        for group in args.groups:
            results = []
            for rule in rules:
                c = cfg
                fam = family
                if family == "wide":
                    c = replace(cfg, model_kwargs={"width": 6 if group == "p4" else 5})
                    fam = None
                res = _soups(rule, group, c) if data == "soups" else \
                    _patterns(rule, group, c, fam)
                res["rule"] = str(rule)
                results.append(res)
                print(f"{name[:40]:<40} {group:<4} {rule!s:<24} exact {res['exact']!s:<5} "
                      f"{res['cpu_seconds']:6.1f} s CPU", flush=True)
            per_group[group] = results
        row = {"name": name, "recipe": cfg.to_dict(), "family": family, "groups": {}}
        for group, results in per_group.items():
            cpus = sorted(r["cpu_seconds"] for r in results)
            row["groups"][group] = {
                "exact": sum(r["exact"] for r in results), "n": len(results),
                "median_cpu_seconds": cpus[len(cpus) // 2],
                "max_cpu_seconds": cpus[-1], "total_cpu_seconds": sum(cpus),
                "results": results}
        out_rows.append(row)
        print(f"== {name}: " + ", ".join(
            f"{g} {v['exact']}/{v['n']} exact, median {v['median_cpu_seconds']:.1f} s CPU"
            for g, v in row["groups"].items()), flush=True)
    payload["rules"] = [str(r) for r in rules]
    payload["rows"] = out_rows
    _save("ablation" + (f"_{args.tag}" if args.tag else ""), payload, args.records)


# ---------------------------------------------------------------------------- report
def _machine(payload: dict[str, Any]) -> str:
    m = payload["machine"]
    git = m["git"]
    return (f"commit `{git['commit']}`{' (dirty)' if git['dirty'] else ''}, "
            f"{m['cpu_model']}, {m['cpu_count']} cores, {m['torch_threads']} torch thread, "
            f"torch {m['torch']}, load average at the start "
            f"{' '.join(f'{v:.1f}' for v in m['loadavg'] or [])}, {m['time_utc']}")


def report(args: argparse.Namespace) -> None:
    """Print the Markdown tables of benchmarks/ATLAS.md from the records."""
    path = args.records / "atlas_full.json"
    if path.exists():
        full = json.loads(path.read_text())
        print(f"### Full run ({_machine(full)})\n")
        print(format_summary(full["summary"]))
        recs = full["records"]
        hard = sorted((r for r in recs if r["status"] != "floor"),
                      key=lambda r: (bool(r["exact"]), -r["cpu_seconds"]))[:10]
        print("\n| group | rule | status | CPU s | nets | classes wrong most often |")
        print("|---|---|---|---|---|---|")
        for r in hard:
            classes = r["wrong_classes"] if not r["exact"] else r["hard_classes"]
            top = ", ".join(f"{c} ×{n}" for c, n in sorted(
                classes.items(), key=lambda kv: -kv[1])[:5])
            print(f"| {r['group']} | `{r['rule']}` | {r['status']} | {r['cpu_seconds']:.1f} | "
                  f"{r['draws']} | {top} |")
    path = args.records / "atlas_throughput.json"
    if path.exists():
        tp = json.loads(path.read_text())
        n = len(tp["rules"])
        print(f"\n### Throughput ({_machine(tp)})\n")
        print(f"{n} rules × {tp['args']['group']}, {len(tp['rounds'])} rounds in alternating "
              "order; × = rules per hour against one `gzoo train` per rule in the same round\n")
        print("| way | processes | rules in flight | wall s (median) | exact | rules/hour "
              "(median) | × one by one (median [min, max]) |")
        print("|---|---|---|---|---|---|---|")
        for way in tp["ways"]:
            runs = [rd[way] for rd in tp["rounds"]]
            ratios = [x["ratio"] for x in runs]
            print(f"| {way} | {runs[0].get('processes', 1)} | {runs[0].get('in_flight', 1)} | "
                  f"{statistics.median(x['wall'] for x in runs):.1f} | "
                  f"{min(x['exact'] for x in runs)}/{n} | "
                  f"{statistics.median(x['rules_per_hour'] for x in runs):.0f} | "
                  f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] |")
    for path in sorted(args.records.glob("atlas_ablation*.json")):
        ab = json.loads(path.read_text())
        print(f"\n### Ablation {path.name} ({_machine(ab)})\n")
        print("| recipe | group | exact | median CPU s | max CPU s | total CPU s |")
        print("|---|---|---|---|---|---|")
        for row in ab["rows"]:
            for g, v in row["groups"].items():
                print(f"| {row['name']} | {g} | {v['exact']}/{v['n']} | "
                      f"{v['median_cpu_seconds']:.1f} | {v['max_cpu_seconds']:.1f} | "
                      f"{v['total_cpu_seconds']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("full")
    f.add_argument("--moore", type=int, default=100)
    f.add_argument("--vn", type=int, default=50)
    f.add_argument("--iso", type=int, default=50)
    t = sub.add_parser("throughput")
    t.add_argument("--rules", type=int, default=12)
    t.add_argument("--group", default="p4m")
    t.add_argument("--in-flight", type=int, nargs="+", default=[1, 2, 4],
                   help="one `gzoo atlas` process per value (default 1 2 4)")
    t.add_argument("--rounds", type=int, default=2)
    a = sub.add_parser("ablation")
    a.add_argument("--rules", type=int, default=24)
    a.add_argument("--groups", nargs="+", default=["p4m"])
    a.add_argument("--only", nargs="*", default=None, help="rows whose name starts so")
    a.add_argument("--tag", default="", help="suffix of the JSON name")
    r = sub.add_parser("report", help="the Markdown tables of ATLAS.md, from the records")
    for p in (f, t, a):
        p.add_argument("--out", type=Path, default=common.DEFAULT_OUT / "atlas")
        p.add_argument("--sample-seed", type=int, default=0)
    for p in (f, t, a, r):
        p.add_argument("--records", type=Path, default=RECORDS,
                       help=f"where the JSON records go (default {RECORDS})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.mode != "report":
        args.out.mkdir(parents=True, exist_ok=True)
    {"full": full, "throughput": throughput, "ablation": ablation,
     "report": report}[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
