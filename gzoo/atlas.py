"""An atlas of the rule space: a seeded sample of rules × groups, each trained with one recipe,
one JSON record each.

**Sample** (:func:`sample_rules`). A rule of a family with ``C`` classes (:mod:`gzoo.ca.families`)
is ``C`` decisions; each is alive/dead with probability ½: one ``getrandbits(C)`` of
``random.Random(seed)`` per rule, bit ``c`` for class ``c``. For
the outer-totalistic family that is birth and survival sets drawn uniformly (``B0`` included),
for von Neumann the same over counts 0–4, for isotropic the 102 Hensel classes.

**Jobs.** Every (rule, group) pair is a job. A pair whose symmetry floor is positive
(:func:`gzoo.verify.symmetry_floor`: no net of that group can be exact, e.g. p8 on a von Neumann
rule) is recorded as ``"floor"`` without training — it is not a failure of the recipe. The others
are trained with the patterns recipe of :mod:`gzoo.population` and the recipe of a
:class:`gzoo.train.TrainConfig` (the CLI's defaults unless told otherwise): ``in_flight`` rules of
one group at once in one batched model (``in_flight = 1``: one rule at a time, which times a rule
as ``gzoo train`` trains it). Under ``torchrun`` rank ``r`` takes the jobs ``r, r + W, ...``.

**Records** (:data:`RECORD_KEYS`): ``<out>/records/<group>/<index>.json`` for the rule at position
``index`` of the sample, written atomically (a temporary file renamed into place) as soon as the
job ends. An interrupted atlas resumes where it stopped: jobs with a record are not run again
(``<out>/atlas.json`` holds the sample and the recipe; resuming with another one is an error).
:func:`summarize` reads the records back into a summary table, :func:`write_summary` writes it
with the plots.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gzoo._checks import check_device, check_int
from gzoo._version import __version__
from gzoo.ca import Rule, get_family
from gzoo.population import Outcome, PatternData, train_population
from gzoo.train import TrainConfig, resolve_data
from gzoo.verify import symmetry_floor, verify_exact

__all__ = [
    "ATLAS_FAMILIES",
    "GROUPS",
    "IN_FLIGHT",
    "MAX_NETS",
    "MAX_RULES",
    "RECORD_KEYS",
    "AtlasJob",
    "format_summary",
    "read_records",
    "run_atlas",
    "sample_rules",
    "summarize",
    "write_json",
    "write_summary",
]

GROUPS = ("p4", "p4m", "p8")
#: Families an atlas samples (``--family``).
ATLAS_FAMILIES = ("outer_totalistic", "von_neumann", "isotropic")
#: The fields of a record.
RECORD_KEYS = ("index", "rule", "family", "group", "status", "exact", "floor", "n_wrong",
               "wrong_classes", "hard_classes", "steps", "steps_run", "draws", "seed_used",
               "seconds", "cpu_seconds", "n_params", "in_flight", "gzoo_version")


def sample_rules(family: str, n: int, seed: int = 0) -> list[Rule]:
    """``n`` rules of ``family``, each class decided alive/dead with probability ½
    (module docstring); the same list for the same arguments."""
    if family not in ATLAS_FAMILIES:
        raise ValueError(f"family must be one of {ATLAS_FAMILIES}, got {family!r}")
    n = check_int("n", n, maximum=MAX_RULES)
    seed = check_int("seed", seed, minimum=0)
    fam = get_family(family)
    rng = random.Random(seed)
    rules = []
    for _ in range(n):
        bits = rng.getrandbits(fam.n_classes)  # one uniform bit per class
        rules.append(Rule.from_table(fam.table([(bits >> c) & 1 for c in range(fam.n_classes)])))
    return rules


@dataclass(frozen=True)
class AtlasJob:
    """One (rule, group) pair: ``index`` is the rule's position in the sample."""

    index: int
    rule: Rule
    group: str

    def path(self, out: Path) -> Path:
        return out / "records" / self.group / f"{self.index:04d}.json"


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically: a temporary file in the same folder, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


#: Rules trained at once by default. On the 2-core CPU, 16 rules × p4m in 3 interleaved rounds
#: (``benchmarks/atlas.py throughput``, record ``benchmarks/records/atlas_throughput.json``):
#: 4 in flight 4.4× the rules per hour of ``gzoo train`` one by one, 2 in flight 3.8×, 1 2.9×.
IN_FLIGHT = 4
#: The largest sample an atlas draws, and the most nets it trains at once.
MAX_RULES = 10**6
MAX_NETS = 4096


def _read_json(path: Path, what: str) -> Any:
    """The JSON in ``path``; unreadable or bad JSON is a ``ValueError`` naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"{path}: cannot read this atlas's {what} ({e}); move it away or "
                         "start a new atlas folder") from None


def _check_out(out: Path) -> None:
    """``out`` is a new or empty folder, or an atlas (it holds ``atlas.json``): an atlas
    never writes into, or resumes from, a folder of other files."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"atlas folder {out} exists and is not a folder")
    if not (out / "atlas.json").is_file() and any(out.iterdir()):
        raise ValueError(f"atlas folder {out} holds other files and no atlas.json: not an "
                         "atlas to resume; give a new or empty folder")


def _class_counts(rule: Rule, per_pattern: torch.Tensor) -> dict[str, int]:
    """Per-pattern counts summed over the classes of the rule's family, by class name
    (classes with a zero count left out)."""
    fam = get_family(rule.family)
    sums = torch.zeros(fam.n_classes, dtype=torch.int64).index_add_(
        0, fam.classes, per_pattern.to(torch.int64))
    return {fam.class_names[c]: int(v) for c, v in enumerate(sums.tolist()) if v}


def _record(job: AtlasJob, in_flight: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {k: None for k in RECORD_KEYS}
    base.update(index=job.index, rule=str(job.rule), family=job.rule.family, group=job.group,
                in_flight=in_flight, gzoo_version=__version__)
    base.update(fields)
    return base


def _manifest(family: str, n_rules: int, seed: int, groups: Sequence[str],
              cfg: TrainConfig) -> dict[str, Any]:
    recipe = {k: v for k, v in cfg.to_dict().items() if k not in ("rule", "model", "device")}
    return {"family": family, "n_rules": n_rules, "seed": seed, "groups": list(groups),
            "recipe": recipe}


def run_atlas(
    out: str | os.PathLike[str],
    *,
    family: str = "outer_totalistic",
    n_rules: int = 100,
    groups: Sequence[str] = GROUPS,
    seed: int = 0,
    config: TrainConfig | None = None,
    in_flight: int = IN_FLIGHT,
    rank: int = 0,
    world: int = 1,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) an atlas into ``out`` (module docstring); returns the records this rank
    wrote or found.

    Args:
        family, n_rules, seed: the sample (:func:`sample_rules`).
        groups: the GCNN groups to train.
        config: the recipe (``rule`` and ``model`` are set per job); the CLI's defaults when
            ``None``. Its model arguments (``width``, ``depth``, ...) apply to every group.
        in_flight: rules of one group trained at once in one batched model.
        rank, world: this process among ``world`` (``torchrun``).
        log: called with one line per finished job.
    """
    out = Path(out)
    cfg = config if config is not None else TrainConfig()
    in_flight = check_int("in_flight", in_flight, maximum=MAX_NETS)
    if in_flight * cfg.population > MAX_NETS:
        raise ValueError(f"in_flight × population = {in_flight} × {cfg.population} nets trained "
                         f"at once; at most {MAX_NETS}")
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        raise ValueError(f"groups must be among {GROUPS}, got {list(groups)}")
    manifest = _manifest(family, n_rules, seed, groups, cfg)
    rules = sample_rules(family, n_rules, seed)
    if rank == 0:  # the other ranks may find rank 0's files half-way (atlas.json not yet in)
        _check_out(out)
    path = out / "atlas.json"
    if path.exists():
        old = _read_json(path, "manifest")
        if not isinstance(old, dict):
            raise ValueError(f"{path} is not an atlas manifest (a JSON object)")
        if {k: old.get(k) for k in manifest} != manifest:
            diff = sorted(k for k in manifest if old.get(k) != manifest[k])
            raise ValueError(f"{out} holds an atlas with another sample or recipe (differs in "
                             f"{diff}); resume it with the same options or use a new folder")
    elif rank == 0:
        write_json(path, manifest | {"gzoo_version": __version__})
    jobs = [AtlasJob(i, r, g) for g in groups for i, r in enumerate(rules)][rank::world]
    records: list[dict[str, Any]] = []
    pending: dict[str, list[AtlasJob]] = {g: [] for g in groups}
    for job in jobs:
        p = job.path(out)
        if p.exists():
            rec = _read_json(p, "record")
            found = rec.get("rule") if isinstance(rec, dict) else rec
            if found != str(job.rule):
                raise ValueError(f"{p} records rule {found!r}, the sample has "
                                 f"{job.rule}: not this atlas")
            records.append(rec)
            continue
        floor = symmetry_floor(job.rule, job.group)
        if floor > 0:  # no net of this group can be exact: not a failure of the recipe
            rec = _record(job, in_flight, status="floor", floor=floor)
            write_json(p, rec)
            records.append(rec)
            continue
        pending[job.group].append(job)
    for group, todo in pending.items():
        if not todo:
            continue
        gcfg = TrainConfig.from_dict(cfg.to_dict() | {"rule": str(todo[0].rule),
                                                      "model": group})
        if resolve_data(gcfg) != "patterns":
            raise ValueError(f"the atlas trains with the patterns recipe; {group} "
                             f"{gcfg.model_kwargs} is not certified local on the torus")
        records += _train_group(out, todo, gcfg, in_flight, log)
    return records


def _train_group(out: Path, todo: list[AtlasJob], cfg: TrainConfig, in_flight: int,
                 log: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """Train the jobs of one group, ``in_flight`` at a time; each record written as its job
    ends."""
    from gzoo.models import build_model

    device = check_device(cfg.device)  # "auto": CUDA when there is one

    def build() -> torch.nn.Module:
        return build_model(cfg.model, **cfg.model_kwargs)

    n_params = sum(p.numel() for p in build().parameters())
    datas = [PatternData.build(j.rule, device=device) for j in todo]
    records: list[dict[str, Any]] = []

    def proved(i: int, net: torch.nn.Module) -> bool:
        res = verify_exact(net, todo[i].rule)
        return res.exact and res.method == "exhaustive"

    def done(o: Outcome) -> None:
        job = todo[o.job]
        wrong = torch.zeros(512, dtype=torch.int64)
        if not o.exact:  # the classes the best net still has wrong
            net = build().to(device)
            net.load_state_dict(o.state)
            wrong[[w.index for w in verify_exact(net, job.rule).wrong]] = 1
        rec = _record(
            job, in_flight, status="exact" if o.exact else "not exact", exact=o.exact,
            floor=0, n_wrong=o.n_wrong, wrong_classes=_class_counts(job.rule, wrong),
            hard_classes=_class_counts(job.rule, o.hard), steps=o.steps, steps_run=o.steps_run,
            draws=o.draws, seed_used=o.seed, seconds=round(o.seconds, 3),
            cpu_seconds=round(o.cpu_seconds, 3), n_params=n_params)
        write_json(job.path(out), rec)
        records.append(rec)
        if log is not None:
            log(f"{job.group:<4} {job.rule!s:<40} {rec['status']:<9} "
                f"{o.steps:>6} steps {o.seconds:7.1f} s ({o.cpu_seconds:.1f} s CPU), "
                f"{o.draws} nets")

    train_population(
        build, datas, population=cfg.population, steps=cfg.steps, restarts=cfg.restarts,
        patience=cfg.patience, seed=cfg.seed, lr=cfg.lr, l1=cfg.l1, margin=cfg.margin,
        hinge=cfg.hinge, check_every=cfg.check_every, verify=proved, in_flight=in_flight,
        device=device, on_done=done)
    return records


def _quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (linear interpolation), ``None`` for no values."""
    if not values:
        return None
    v = sorted(values)
    x = q * (len(v) - 1)
    lo = int(x)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (x - lo)


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (family, group): jobs, exact, not exact, floor, the success rate over the
    trainable ones, and the median and 95th percentile of seconds and CPU seconds of the
    exact ones."""
    rows = []
    keys = sorted({(r["family"], r["group"]) for r in records},
                  key=lambda k: (k[0], GROUPS.index(k[1]) if k[1] in GROUPS else 9, k[1]))
    for fam, group in keys:
        rs = [r for r in records if (r["family"], r["group"]) == (fam, group)]
        trained = [r for r in rs if r["status"] != "floor"]
        exact = [r for r in trained if r["exact"]]
        secs = [r["seconds"] for r in exact]
        cpus = [r["cpu_seconds"] for r in exact]
        rows.append({
            "family": fam, "group": group, "jobs": len(rs), "floor": len(rs) - len(trained),
            "trained": len(trained), "exact": len(exact), "not_exact": len(trained) - len(exact),
            "success": len(exact) / len(trained) if trained else None,
            "median_seconds": _quantile(secs, 0.5), "p95_seconds": _quantile(secs, 0.95),
            "median_cpu_seconds": _quantile(cpus, 0.5), "p95_cpu_seconds": _quantile(cpus, 0.95),
            "mean_draws": statistics.fmean(r["draws"] for r in trained) if trained else None,
        })
    return rows


def format_summary(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a Markdown table."""
    def num(x: float | None, fmt: str = ".1f") -> str:
        return "—" if x is None else format(x, fmt)

    head = ("family", "group", "rules", "floor > 0", "exact", "not exact", "success",
            "median s", "p95 s", "median CPU s", "p95 CPU s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        succ = "—" if r["success"] is None else f"{100 * r['success']:.1f} %"
        lines.append("| " + " | ".join((
            r["family"], r["group"], str(r["jobs"]), str(r["floor"]), str(r["exact"]),
            str(r["not_exact"]), succ, num(r["median_seconds"]), num(r["p95_seconds"]),
            num(r["median_cpu_seconds"]), num(r["p95_cpu_seconds"]))) + " |")
    return "\n".join(lines)


def read_records(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record under ``<out>/records``."""
    return [_read_json(p, "record") for p in sorted(Path(out).glob("records/*/*.json"))]


def write_summary(out: str | os.PathLike[str]) -> dict[str, Path]:
    """``summary.json``, ``summary.md`` and ``atlas.png`` (:func:`gzoo.plots.save_atlas_plots`)
    in ``out``, from its records."""
    from gzoo.plots import save_atlas_plots

    out = Path(out)
    records = read_records(out)
    rows = summarize(records)
    paths = {"json": out / "summary.json", "md": out / "summary.md", "png": out / "atlas.png"}
    write_json(paths["json"], {"summary": rows, "gzoo_version": __version__})
    paths["md"].write_text(format_summary(rows) + "\n", encoding="utf-8")
    save_atlas_plots(records, paths["png"], title=f"gzoo atlas: {out.name}")
    return paths
