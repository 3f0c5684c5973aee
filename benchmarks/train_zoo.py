"""Train (or retrain) the pretrained zoo: every project rule and four well-known isotropic rules
× p4, p4m, p8, shipped only if exact.

    python benchmarks/train_zoo.py                      # train every entry, write zoo/ + report
    python benchmarks/train_zoo.py --only b36s23_p8     # one entry
    python benchmarks/train_zoo.py --reproduce          # retrain shipped entries from their
                                                        # recorded recipes and compare
    python benchmarks/train_zoo.py --baselines          # also the plain CNN baselines
    python benchmarks/train_zoo.py --cards-only         # rewrite every shipped model card
                                                        # from its config.json (weights and
                                                        # configs untouched)
    python benchmarks/train_zoo.py --certify            # record verify_exact's certificate in
                                                        # every shipped config and card
                                                        # (weights untouched)

GCNN entries are trained with ``gzoo train``'s default recipe (patterns: all 512 neighbourhoods,
class-balanced, a population of nets; see :mod:`gzoo.population`), the plain CNN baselines with
random soups (their receptive field is 5×5). A (rule, group) pair whose symmetry floor is
positive (p8 on a rule that is not invariant under the 45° ring rotation: the von Neumann rules,
most isotropic rules) is not trained: no net of that group can be exact, and the report says why.

An entry ships (is written to ``zoo/<slug>_<group>/``) only if it is exact: ``verify_exact``
finds 0 wrong 3×3 neighbourhoods, and self-fed rollouts of 1000 steps from random soups at
densities 0.1, 0.3, 0.5, 0.7, 0.9 on 64×64 boards equal the simulator at every step. Both are
recorded in ``config.json`` and the model card. Entries that are not exact (p8 on von Neumann
rules, see ``zoo/README.md``) are reported with what they reached and not shipped.

Every run uses one torch thread (``--threads`` to change it). A recorded recipe reruns bit for
bit only on the same CPU model with the same thread count (the order and rounding of
floating-point sums depend on both); ``--reproduce`` compares the weights where that holds, and
everywhere compares what carries across machines: exactness (all 512 neighbourhoods) and the
1000-step rollouts, against what the entry's config records. Results go to
``benchmarks/records/zoo_train.json`` (committed: the source of zoo/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rotmnist import images_section  # the zoo README's image entries (benchmarks/rotmnist.py)

from gzoo._system import cpu_model
from gzoo.ca import RULES, Rule
from gzoo.checkpoint import (
    CONFIG_FILE,
    README_FILE,
    load_checkpoint,
    model_card,
    read_config,
    save_checkpoint,
)
from gzoo.train import TrainConfig, train, weights_digest
from gzoo.verify import rollout_agreement, symmetry_floor, verify_exact

ROOT = Path(__file__).resolve().parents[1]

GROUPS = ("p4", "p4m", "p8")
BASELINES = {"small": ("B3/S23", "B36/S23"), "multiscale": ("B3/S23", "B36/S23")}
#: Well-known isotropic (Hensel) rules of the zoo, with their LifeWiki names.
ISOTROPIC: dict[str, str] = {
    "B3/S2-i34q": "tlife",
    "B2-a/S12": "Just Friends",
    "B2i34c/S2-i3": "Salad",
    "B2ci3ai4c8/S02ae3eijkq4iz5ar6i7e": "Snowflakes",
}
ROLLOUT = {"size": 64, "steps": 1000, "densities": (0.1, 0.3, 0.5, 0.7, 0.9)}
MAX_PARAMS = 320
#: Wider nets tried, in order, when the default width fails all its restarts.
WIDTHS = (4, 5)


def entry_name(rule: Rule, model: str) -> str:
    return f"{rule.slug}_{model}"


def rule_name(rule: Rule) -> str | None:
    return rule.name or ISOTROPIC.get(str(rule))


def recipe(rule: Rule, model: str, width: int, seed: int = 0) -> TrainConfig:
    """GCNNs: ``gzoo train``'s defaults at ``width``; baselines: the soups recipe."""
    if model in GROUPS:
        return TrainConfig(rule=str(rule), model=model, model_kwargs={"width": width,
                                                                      "depth": 1}, seed=seed)
    return TrainConfig(rule=str(rule), model=model, seed=seed, data="soups", steps=2000,
                       restarts=3, check_every=100)


def exactness(model: torch.nn.Module, rule: Rule) -> dict[str, Any]:
    """The zoo's bar: exhaustive check plus 1000-step rollouts at five densities."""
    ver = verify_exact(model, rule)
    roll = rollout_agreement(model, rule, size=ROLLOUT["size"], steps=ROLLOUT["steps"],
                             densities=ROLLOUT["densities"], seed=12345)
    return {
        "exact": ver.exact and roll.identical,
        "n_wrong": ver.n_wrong,
        "method": ver.method,
        "certificate": ver.certificate(),
        "wrong_classes": {f"{'BS'[s]}{n}": k for (s, n), k in ver.wrong_classes().items()},
        "rollout_1000": roll.to_dict(),
    }


def train_entry(rule: Rule, model: str, out_dir: Path, *, overwrite: bool) -> dict[str, Any]:
    """Train one entry (widening if needed), check it, and ship it if exact."""
    name = entry_name(rule, model)
    tries: list[dict[str, Any]] = []
    widths: tuple[int | None, ...] = (None,)
    if model in GROUPS:
        floor = symmetry_floor(rule, model)
        if floor > 0:  # no net of this group can be exact: not trained, the floor reported
            print(f"  {name:<20} floor {floor}/512: not trained", flush=True)
            return {"name": name, "rule": str(rule), "model": model, "floor": floor,
                    "shipped": None, "tries": 0}
        widths = WIDTHS
    for width in widths:
        cfg = recipe(rule, model, width or 0)
        t0 = time.perf_counter()
        res = train(cfg, progress=False)
        check = exactness(res.model, rule)
        rec = {
            "name": name, "rule": str(rule), "model": model, "width": width,
            "n_params": res.model.n_params, "accuracy": res.accuracy,
            "train_seconds": round(res.seconds, 2),
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "seed_used": res.seed_used, "restarts_used": res.restarts_used,
            "steps_run": res.steps_run, "total_steps": res.total_steps, **check,
        }
        tries.append(rec)
        print(f"  {name:<20} width {width}: params {rec['n_params']:>4}  "
              f"wrong {rec['n_wrong']:>3}/512  acc {res.accuracy:.5f}  "
              f"rollout identical {check['rollout_1000']['identical']}  "
              f"{rec['train_seconds']:.1f} s", flush=True)
        small_enough = model not in GROUPS or res.model.n_params <= MAX_PARAMS
        if check["exact"] and small_enough:
            metrics = res.metrics() | {
                "rollout_agreement": check["rollout_1000"]["mean"],
                "rollout_steps": ROLLOUT["steps"], "rollout_size": ROLLOUT["size"],
                "rollout_densities": list(ROLLOUT["densities"]),
                "rollout_identical": check["rollout_1000"]["identical"],
            }
            folder = out_dir / name
            shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
            save_checkpoint(res.model, folder, rule=rule, train_config=res.recipe(cfg, shown),
                            metrics=metrics, overwrite=overwrite,
                            certificate=check["certificate"])
            rec["shipped"] = str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) \
                else str(folder)
            rec["tries"] = len(tries)
            return rec
    best = min(tries, key=lambda r: (r["n_wrong"], -r["accuracy"]))
    return best | {"shipped": None, "tries": len(tries)}


def certify(folder: Path) -> dict[str, Any]:
    """Record ``verify_exact``'s certificate in a shipped entry's config and card (weights
    untouched)."""
    model = load_checkpoint(folder)
    ver = verify_exact(model, model.checkpoint.rule)
    config = read_config(folder)
    config["certificate"] = ver.certificate()
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    card = model_card(config, folder.name, folder=folder)
    (folder / README_FILE).write_text(card, encoding="utf-8")
    return {"name": folder.name, "method": ver.method, "exact": ver.exact}


def reproduce(folder: Path) -> dict[str, Any]:
    """Retrain a shipped entry from its recorded recipe and compare: the weights bit for bit
    (expected only on the recorded CPU model and thread count), and, on any machine, exactness
    and the 1000-step rollouts against what the entry's config records."""
    model = load_checkpoint(folder)
    rec = model.checkpoint.train
    metrics = model.checkpoint.metrics
    cfg = TrainConfig.from_dict(rec)
    if rec.get("data_used") != "patterns":  # soups: exactly the attempt that made it
        cfg = dataclasses.replace(cfg, seed=rec["seed_used"], restarts=0,
                                  data_seed=rec["data_seed_used"])
    res = train(cfg, progress=False)  # patterns: the whole run (its nets train together)
    check = exactness(res.model, model.checkpoint.rule)
    threads = torch.get_num_threads()
    same_machine = rec.get("cpu") == cpu_model() and rec.get("torch_threads") == threads
    recorded_rollout = metrics.get("rollout_identical")
    return {
        "name": folder.name,
        "same_weights": weights_digest(res.model) == weights_digest(model),
        "bit_for_bit_expected": same_machine,
        "recorded_cpu": rec.get("cpu"), "recorded_threads": rec.get("torch_threads"),
        "exact": check["exact"],
        "exact_as_recorded": check["exact"] == bool(metrics.get("exact")),
        "rollout_identical": check["rollout_1000"]["identical"],
        "rollout_as_recorded": (recorded_rollout is None
                                or check["rollout_1000"]["identical"] == recorded_rollout),
        "train_seconds": round(res.seconds, 2),
    }


def reproduced(r: dict[str, Any]) -> bool:
    """Whether a :func:`reproduce` record agrees with the shipped entry on everything that
    should carry over to this machine."""
    return (r["exact_as_recorded"] and r["rollout_as_recorded"]
            and (r["same_weights"] or not r["bit_for_bit_expected"]))


#: Published validation accuracy of the code behind the notes (hrjtju/BIMSA, paper/main.tex at
#: 67f68d6, table "detailed_results"): P4 multi-scale e2cnn net (1,276 params) / P4CNN-Small
#: (3,202) / CNN-Small (2,450) / MultiScale (1,004). B234/S is not in that table.
PUBLISHED: dict[str, str] = {
    "B3/S23": "100.00 / 100.00 / 100.00 / 99.97 %",
    "B36/S23": "99.86 / 99.77 / 99.89 / 98.94 %",
    "B3678/S34678": "99.98 / 99.96 / 99.96 / 98.19 %",
    "B35678/S5678": "99.77 / 99.65 / 98.73 / 99.52 %",
    "B2/S": "100.00 / 100.00 / 100.00 / 100.00 %",
    "B234/S": "not reported",
    "B345/S5": "99.92 / 100.00 / 100.00 / 100.00 %",
    "B13/S012V": "100.00 / 100.00 / 100.00 / 99.99 %",
    "B2/S013V": "100.00 / 100.00 / 100.00 / 100.00 %",
}


def _fmt_time(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:.1f} s"


def _recipe_word(cfg: dict[str, Any]) -> str:
    data = (cfg.get("train") or {}).get("data_used")
    return {"patterns": "patterns", "soups": "soups"}.get(data, "soups (before 0.2)")


def _rows(rules: list[Rule], models: list[str], out_dir: Path, by_name: dict[str, Any],
          published: bool) -> list[tuple[str, ...]]:
    """Table rows: shipped entries from their configs, the others from the report or their
    floor."""
    rows = []
    for rule in rules:
        label = f"{rule}" + (f" ({rule_name(rule)})" if rule_name(rule) else "")
        for model in models:
            if model in BASELINES and str(rule) not in BASELINES[model]:
                continue
            name = entry_name(rule, model)
            cfg_path = out_dir / name / "config.json"
            pub = (PUBLISHED.get(str(rule), ""),) if published else ()
            if cfg_path.is_file():
                cfg = json.loads(cfg_path.read_text())
                m = cfg["metrics"]
                cert = (cfg.get("certificate") or {}).get("method", m.get("method"))
                how = ("proof" if cert == "exhaustive"
                       else f"evidence: 0/512 in {m.get('n_contexts')} contexts each")
                rows.append((f"`{name}`", label, model, str(cfg["n_params"]),
                             f"**yes** (0/512, {how}; 5×1000 steps)", _recipe_word(cfg),
                             f"{100 * m['accuracy']:.2f} %", _fmt_time(m.get("seconds")), *pub))
                continue
            floor = symmetry_floor(rule, model) if model in GROUPS else 0
            if floor:
                rows.append((f"{name} (not trained)", label, model, "—",
                             f"no: floor {floor}/512 for any {model} net", "—", "—", "—", *pub))
            elif name in by_name:
                e = by_name[name]
                rows.append((f"{name} (not shipped)", label, model, str(e["n_params"]),
                             f"no: {e['n_wrong']}/512 wrong", "soups",
                             f"{100 * e['accuracy']:.2f} %", _fmt_time(e.get("train_seconds")),
                             *pub))
    return rows


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def write_readme(out_dir: Path, report: dict[str, Any]) -> Path:
    """``zoo/README.md``: the project rules and the isotropic rules, rule × model, from the
    shipped configs, the floors and the report."""
    by_name = {e["name"]: e for e in report.get("entries", [])}
    head = ("entry", "rule", "model", "params", "exact", "recipe", "held-out accuracy",
            "training")
    project = _table((*head, "published: p4 MCNN / P4CNN-S / CNN-S / MCNN"), _rows(
        list(RULES.values()), [*GROUPS, *BASELINES], out_dir, by_name, published=True))
    iso_rules = [Rule.parse(r) for r in ISOTROPIC]
    isotropic = _table(head, _rows(iso_rules, list(GROUPS), out_dir, by_name, published=False))
    floors = {str(r): symmetry_floor(r, "p8") for r in RULES.values()
              if r.neighbourhood == "von_neumann"}
    iso_floors = {f"{r} ({ISOTROPIC[str(r)]})": symmetry_floor(r, "p8") for r in iso_rules}
    ring = [f"{r} ({ISOTROPIC[str(r)]})" for r in iso_rules if r.symmetry.ring]
    machine = report.get("machine", {})
    images = images_section(out_dir)
    text = f"""# The gzoo zoo

Small networks that reproduce Life-like rules **exactly**, one folder per checkpoint
(`model.safetensors`, `config.json`, model card `README.md`). Load one by name:

```python
import torch

import gzoo

model = gzoo.load_pretrained("b36s23_p8")   # HighLife on a p8 GCNN, 218 parameters
print(model.checkpoint.rule)                 # B36/S23: what the checkpoint says, read-only
boards = torch.rand(8, 64, 64) < 0.3         # bool/uint8 [B, H, W] or [H, W]
boards = model.step(boards)                  # one step of the network
```

An entry ships only if it is exact: `gzoo.verify_exact` finds 0 wrong 3×3 neighbourhoods — a
**proof** for the GCNNs, whose 3×3 receptive field and torus boundary `gzoo.certify` reads from
their layers and checks empirically, so the 512 neighbourhoods decide every board of every size —
**and** self-fed rollouts of 1000 steps from random soups at densities 0.1, 0.3, 0.5, 0.7, 0.9 on
64×64 tori equal the simulator at every step. Each `config.json` records the certificate
(method, what it covered, the checks, the gzoo version) and each card states it in one sentence.
GCNN entries are `GCNN(group, width=4, depth=1)`: a 3×3 lifting correlation, one 1×1 group
correlation, group max pooling and a 1×1 readout (p4: 154 parameters, p4m and p8: 218; the
budget is 320; width 5 only where width 4 failed). The *recipe* column says how an entry was
trained: **patterns** is `gzoo train`'s default for the GCNNs (all 512 neighbourhoods on one
covering torus, class-balanced cross-entropy with a hinge, a population of 4 nets re-drawn on
plateaus; `gzoo.population`), **soups** random boards (the baselines, whose receptive field is
5×5). Held-out accuracy is on fresh soups; training time is the wall time of the whole run on
one CPU thread ({machine.get("platform", "?")}).

## The project's rules

{project}

The last column is the published validation accuracy of the code behind the notes
(hrjtju/BIMSA, `paper/main.tex` at commit 67f68d6): its e2cnn P4 multi-scale network (1,276
parameters; the notes call it p4m, the code builds it on rotations only), P4CNN-Small (3,202),
CNN-Small (2,450) and MultiScale (1,004). Its worst rule, B35678/S5678, stopped at 99.77 %; no
model there was checked for exactness. B234/S is not in its results.

## Isotropic rules

Isotropic (Hensel) rules answer alike on the 8 symmetries of a neighbourhood but distinguish
neighbourhoods of the same count (102 classes instead of 18): tlife, Just Friends, Salad and
Snowflakes as named on LifeWiki. p4m and p4 nets are invariant under the square's symmetries
(or its rotations), which every isotropic rule has, so their floor is 0.

{isotropic}

## Symmetry floors: what a group cannot represent

A GCNN with a 3×3 receptive field and group pooling answers alike on every neighbourhood of an
orbit of its group; where the rule does not, any such net is wrong on part of the orbit. Counting
orbit by orbit (`gzoo.verify.symmetry_floor`), the fewest wrong neighbourhoods any net of the
group can reach is its *floor*; such entries are not trained.

- **p8 and the von Neumann rules.** p8 rotates a 3×3 stencil by 45° with the square-ring
  rotation, which moves every orthogonal neighbour onto a diagonal one. Von Neumann rules count
  only the orthogonal neighbours, so the ring rotations of one neighbourhood can have different
  counts: the best possible p8 net still gets
  {", ".join(f"{n}/512 neighbourhoods wrong for {r}" for r, n in floors.items())}.
  p4 and p4m keep orthogonal and diagonal neighbours apart (floor 0).
- **p8 and isotropic rules.** The ring rotation is not a symmetry of the square, so an isotropic
  rule is p8-representable only if it happens to be ring-symmetric too:
  {", ".join(ring) or "none here"} is (the p8 entry above); the others are not, with floors
  {", ".join(f"{n}/512 for {r}" for r, n in iso_floors.items() if n)}.
- **p4m and chiral rules.** A rule invariant under the rotations but not the mirrors (the
  140-class rotational family, written as MAP) has a positive p4m floor and needs p4. All rules
  here are mirror-symmetric. (For every outer-totalistic Moore rule the floor is 0 for all
  three groups.)

## Baselines

The notes' plain CNNs, trained on random soups (their receptive field is 5×5, so the covering
torus does not decide them): `SimpleCNNSmall` (a 5×5 convolution, then 1×1 layers) and
`MultiScale` (3×3, 5×5 and dilated 3×3 branches, batch norm). Their exactness is evidence, not a
proof: each of the 512 neighbourhoods checked in 64 random contexts, plus the locality, boards
and determinism checks and the same 5×1000-step rollouts. They are shipped only where that found
no error.

## Reproduce

```bash
python benchmarks/train_zoo.py --overwrite --baselines   # retrain every entry, rewrite this file
python benchmarks/train_zoo.py --reproduce   # rerun each recorded recipe and compare
```

Each card's "Reproduce" command reruns what produced its weights with one torch thread
(`--threads 1`): for a patterns entry the whole run (its nets are trained together), for a soups
entry exactly the attempt that made it. The same weights, bit for bit, need the CPU model it was
trained on as well; on another CPU the last bits differ, and `--reproduce` then checks what
carries over: exactness and the 1000-step rollouts.
{chr(10) + images if images else ""}"""
    path = out_dir / "README.md"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "zoo")
    parser.add_argument("--only", nargs="*", default=None, help="entry names, e.g. b36s23_p8")
    parser.add_argument("--groups", nargs="*", default=list(GROUPS))
    parser.add_argument("--baselines", action="store_true", help="also train plain CNNs")
    parser.add_argument("--reproduce", action="store_true",
                        help="retrain shipped entries from their recipes and compare")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--report", type=Path,
                        default=ROOT / "benchmarks" / "records" / "zoo_train.json")
    parser.add_argument("--readme-only", action="store_true",
                        help="only rewrite zoo/README.md from the configs and the report")
    parser.add_argument("--cards-only", action="store_true",
                        help="only rewrite each shipped entry's model card from its config")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for training (default 1, as the zoo was "
                             "trained: bit-for-bit reproduction needs the same count)")
    parser.add_argument("--certify", action="store_true",
                        help="record verify_exact's certificate in every shipped entry")
    parser.add_argument("--isotropic", action="store_true",
                        help="also the isotropic rules (p4, p4m, p8)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.certify:
        for folder in sorted(p for p in args.out_dir.iterdir() if (p / "config.json").is_file()):
            r = certify(folder)
            print(f"  {r['name']:<24} {r['method']:<10} exact {r['exact']}")
        return 0

    if args.cards_only:
        for folder in sorted(p for p in args.out_dir.iterdir() if (p / "config.json").is_file()):
            card = model_card(read_config(folder), folder.name, folder=folder)
            (folder / README_FILE).write_text(card, encoding="utf-8")
            print(f"wrote {folder / README_FILE}")
        return 0
    if args.readme_only:
        report = json.loads(args.report.read_text()) if args.report.is_file() else {}
        print(f"wrote {write_readme(args.out_dir, report)}")
        return 0
    if args.reproduce:
        names = args.only or sorted(p.name for p in args.out_dir.iterdir()
                                    if (p / "config.json").is_file())
        print(f"this machine: {cpu_model()}, {torch.get_num_threads()} torch thread(s). The "
              "same weights bit for bit need the CPU model and thread count an entry was "
              "trained with (its config's train.cpu and train.torch_threads); exactness and "
              "the 1000-step rollouts must agree everywhere.", flush=True)
        results = []
        for n in names:
            r = reproduce(args.out_dir / n)
            weights = ("same" if r["same_weights"] else
                       "differ (expected: not the recorded CPU/threads)"
                       if not r["bit_for_bit_expected"] else "DIFFER")
            print(f"  {n:<20} weights {weights}; exact {r['exact']} "
                  f"({'as recorded' if r['exact_as_recorded'] else 'NOT as recorded'}); "
                  f"rollouts identical {r['rollout_identical']} "
                  f"({'as recorded' if r['rollout_as_recorded'] else 'NOT as recorded'}); "
                  f"{r['train_seconds']:.1f} s", flush=True)
            results.append(r)
        return 0 if all(reproduced(r) for r in results) else 1

    jobs = [(rule, g) for rule in RULES.values() for g in args.groups]
    if args.isotropic:
        jobs += [(Rule.parse(r), g) for r in ISOTROPIC for g in args.groups]
    if args.baselines:
        jobs += [(Rule.parse(r), m) for m, rules in BASELINES.items() for r in rules]
    if args.only is not None:
        jobs = [(r, m) for r, m in jobs if entry_name(r, m) in args.only]
    results = []
    for rule, model in jobs:
        results.append(train_entry(rule, model, args.out_dir, overwrite=args.overwrite))
    report = {
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "bar": {"verify_exact": "0/512", "rollout": ROLLOUT, "max_params": MAX_PARAMS},
        "entries": results,
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.report.read_text()) if args.report.is_file() else {"entries": []}
    keep = [e for e in old.get("entries", []) if e["name"] not in {r["name"] for r in results}]
    report["entries"] = keep + results
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    write_readme(args.out_dir, report)
    shipped = sum(r["shipped"] is not None for r in results)
    print(f"{shipped}/{len(results)} entries shipped; report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
