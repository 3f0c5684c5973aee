"""Rotated MNIST: gzoo's p4, p4m and p8 layers beside e2cnn's C4, D4 and C8 twins and a plain CNN.

    python benchmarks/rotmnist.py --data PATH              # run what is missing, print the table
    python benchmarks/rotmnist.py --data PATH --only p4 --seeds 0 1 2
    python benchmarks/rotmnist.py --table                  # the table from the records so far
    python benchmarks/rotmnist.py --data PATH --download   # torchvision fetches the files first
    python benchmarks/rotmnist.py --speed --threads 2      # s/epoch and img/s, interleaved
    python benchmarks/rotmnist.py --zoo                    # ship the seed-0 p4, p4m, p8 runs

``PATH``: the four standard MNIST IDX files (gzipped or not) or ``mnist.pkl.gz``, checked
against the standard checksums (:mod:`gzoo.mnist`). Protocol: 12,000 training digits, all
10,000 test digits, each turned by a seeded uniform angle (:class:`gzoo.mnist.RotMNISTProtocol`).
Every model has 22–25k parameters and the same architecture (:mod:`gzoo.models.image`), and
all train with one recipe (:class:`gzoo.images.Recipe`) on the 12,000 digits; ``--split val``
fits on 10,000 and scores the other 2,000 instead (for choices; those records go elsewhere).

Resumable: each (model, seed) run writes ``<records>/<model>_s<seed>.json`` when it ends, and
its weights and per-epoch state under ``<out>/runs/<model>_s<seed>/`` as it goes; a run with a
record is skipped, an interrupted one resumes from its last epoch. Runs go in :func:`plan`
order, most telling first for a CPU that may not finish: seed 0 of gzoo's p4, of e2cnn's C8
twin, of gzoo's p4m and p8 (with p4 the zoo entries) and of the plain CNN; then seeds 1 and 2
of gzoo's p4 and of the best e2cnn twin recorded so far; then seed 0 of harmonic p8 and of the
other e2cnn twins (D4, C4). Several processes may share the folders (each claims a run with a
lock file), e.g. two one-thread workers on two cores. The table aggregates every record found.

``--zoo`` writes the zoo entries ``rotmnist_p4``, ``rotmnist_p4m``, ``rotmnist_p8`` from the
seed-0 runs (weights checked against their records) and the "Images" section of the zoo README
(:func:`images_section`, also used by ``train_zoo.py`` when it rewrites that README).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import common
import torch

from gzoo.images import Recipe, error_rate, fit, invariance, throughput
from gzoo.mnist import RotMNISTProtocol, build_rotmnist, download_mnist, load_mnist
from gzoo.models import RotMNISTNet

#: Benchmark name → RotMNISTNet arguments; widths put every model at 22–25k parameters
#: (harmonic p8 has e2cnn's C8 basis, so the C8 twin's width and parameter count).
MODELS: dict[str, dict[str, Any]] = {
    "cnn": {"group": None, "width": 22},
    "p4": {"group": "p4", "width": 11},
    "p4m": {"group": "p4m", "width": 8},
    "p8": {"group": "p8", "width": 8},
    "p8-harmonic": {"group": "p8", "width": 10, "rotation": "harmonic"},
    "e2cnn-C4": {"group": "p4", "width": 14, "backend": "e2cnn"},
    "e2cnn-D4": {"group": "p4m", "width": 10, "backend": "e2cnn"},
    "e2cnn-C8": {"group": "p8", "width": 10, "backend": "e2cnn"},
}
E2CNN = tuple(m for m in MODELS if m.startswith("e2cnn"))
#: Seed 0 of these first, then the extra seeds, then seed 0 of :data:`LATER`.
FIRST = ("p4", "e2cnn-C8", "p4m", "p8", "cnn")
LATER = ("p8-harmonic", "e2cnn-D4", "e2cnn-C4")
EXTRA_SEEDS = (1, 2)
DEFAULT_RECORDS = common.REPO / "benchmarks" / "out" / "rotmnist" / "records"
DEFAULT_RUNS = common.DEFAULT_OUT / "rotmnist" / "runs"
N_INVARIANCE = 2000  # test digits used for the invariance columns
DROPOUT = 0.1
#: Zoo entry → the benchmark model whose seed-0 run it ships.
ZOO_ENTRIES = {"rotmnist_p4": "p4", "rotmnist_p4m": "p4m", "rotmnist_p8": "p8"}


def run_name(model: str, seed: int) -> str:
    return f"{model}_s{seed}"


def read_records(folder: Path) -> list[dict[str, Any]]:
    """Every run record in ``folder`` (``<model>_s<seed>.json``; not the speed records)."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*_s*.json"))]


def best_e2cnn(records: list[dict[str, Any]]) -> str:
    """The e2cnn twin with the lowest mean test error among the records (C8 if none)."""
    means = {}
    for m in E2CNN:
        errs = [r["test_error"] for r in records if r["model"] == m]
        if errs:
            means[m] = statistics.fmean(errs)
    return min(means, key=means.__getitem__) if means else "e2cnn-C8"


def plan(records: list[dict[str, Any]], only: list[str] | None,
         seeds: list[int] | None) -> list[tuple[str, int]]:
    """The (model, seed) runs in order; ``only``/``seeds`` override the default plan."""
    if only or seeds:
        models = only or [*FIRST, *LATER]
        return [(m, s) for s in (seeds or [0]) for m in models]
    extra = [(m, s) for s in EXTRA_SEEDS for m in ("p4", best_e2cnn(records))]
    return [(m, 0) for m in FIRST] + extra + [(m, 0) for m in LATER]


def build(model: str, seed: int) -> RotMNISTNet:
    torch.manual_seed(seed)
    return RotMNISTNet(**MODELS[model], dropout=DROPOUT)


def _claim(run_dir: Path) -> bool:
    """Take the run for this process (a ``lock`` file holding its pid), unless a live process
    holds it: several processes can share one record folder, each on its own run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / "lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(lock.read_text() or 0), 0)
                return False  # held by a live process
            except (ProcessLookupError, ValueError):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except PermissionError:
                return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def one_run(model: str, seed: int, data: Any, recipe: Recipe, args: argparse.Namespace,
            machine: dict[str, Any]) -> dict[str, Any]:
    name = run_name(model, seed)
    net = build(model, seed)
    run_dir = args.runs / name
    run_dir.mkdir(parents=True, exist_ok=True)
    fit_split, eval_split = ("fit", "val") if args.split == "val" else ("train", "test")
    x, y = data.split(fit_split)
    print(f"{name}: {net.n_params} parameters, fit on {x.shape[0]} digits, "
          f"{recipe.epochs} epochs", flush=True)

    def show(row: dict[str, Any]) -> None:
        print(f"  epoch {row['epoch']:>2}: loss {row['loss']:.4f}, train error "
              f"{100 * row['train_error']:.2f} %, {row['seconds']:.1f} s", flush=True)

    history = fit(net, x, y, recipe, seed=seed, state_path=run_dir / "state.pt", on_epoch=show)
    ex, ey = data.split(eval_split)
    err = error_rate(net, ex, ey)
    inv = invariance(net, ex[:N_INVARIANCE])
    ips = throughput(net, ex[:2000])
    from safetensors.torch import save_file

    weights = run_dir / "model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, weights)
    from gzoo.checkpoint import sha256_file

    walls = [h["seconds"] for h in history]
    cpus = [h["cpu_seconds"] for h in history]
    rec = {
        "model": model,
        "seed": seed,
        "kwargs": net.init_kwargs(),
        "n_params": net.n_params,
        "split": {"fit": fit_split, "eval": eval_split, "n_fit": int(x.shape[0]),
                  "n_eval": int(ex.shape[0])},
        "test_error": err,
        "seconds_per_epoch": statistics.median(walls),
        "cpu_seconds_per_epoch": statistics.median(cpus),
        "inference_images_per_s": ips,
        "invariance": inv,
        "invariance_digits": min(N_INVARIANCE, int(ex.shape[0])),
        "recipe": recipe.as_dict(),
        "dropout": DROPOUT,
        "history": history,
        "data": data.record,
        "weights": str(weights.relative_to(common.REPO)) if weights.is_relative_to(
            common.REPO) else str(weights),
        "weights_sha256": sha256_file(weights),
        "machine": machine,
        "finished_utc": common.machine_info()["time_utc"],
    }
    path = args.records / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    common.write_json(tmp, rec)
    os.replace(tmp, path)
    print(f"{name}: {args.split} error {100 * err:.2f} % → {path}", flush=True)
    return rec


def _cpu_per_epoch(rs: list[dict[str, Any]]) -> float:
    """Median process CPU seconds of the one-thread epochs of these runs (all epochs if none
    ran on one thread): the cost on one core, whatever else the machine was doing."""
    rows = [h for r in rs for h in r["history"]]
    one = [h["cpu_seconds"] for h in rows if h.get("threads") == 1]
    return statistics.median(one or [h["cpu_seconds"] for h in rows])


def _ratio(r: dict[str, float] | None) -> str:
    return "—" if r is None else f"{r['median']:.2f} [{r['q1']:.2f}, {r['q3']:.2f}]"


def _pct(values: list[float]) -> str:
    if not values:
        return "—"
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f} %"
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f} %"


def read_speed(records: Path) -> dict[str, Any] | None:
    """The newest interleaved speed record (``speed_<threads>t.json``) in the records folder."""
    found = sorted(records.glob("speed_*t.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text(encoding="utf-8")) if found else None


def table(records: list[dict[str, Any]], speeds: dict[str, Any] | None = None) -> str:
    """One row per model: error mean ± sd over seeds, parameters, timings, invariance.

    ``s/epoch`` and ``img/s`` come from the interleaved speed run (``--speed``) when there is
    one (``× p4``: its per-round ratio); ``CPU s/epoch in run`` is the median process CPU time
    of the training runs' own epochs (:func:`_cpu_per_epoch`).
    """
    sp = (speeds or {}).get("models", {})
    headers = ["model", "seeds", "test error", "params", "s/epoch", "× p4", "inference img/s",
               "CPU s/epoch in run", "Δlogits 90°", "Δlogits mirror", "Δlogits 45°",
               "class changes 45°"]
    rows = []
    for m in MODELS:
        rs = sorted((r for r in records if r["model"] == m), key=lambda r: r["seed"])
        if not rs:
            continue

        def inv(key: str, rs: list[dict[str, Any]] = rs) -> float:
            return statistics.median(r["invariance"][key] for r in rs)

        s = sp.get(m)
        rows.append([
            m, ",".join(str(r["seed"]) for r in rs), _pct([r["test_error"] for r in rs]),
            rs[0]["n_params"], f"{s['seconds_per_epoch']:.1f}" if s else "—",
            _ratio(s["epoch_time_vs_p4"]) if s else "—",
            f"{s['inference_images_per_s']:.0f}" if s else "—",
            f"{_cpu_per_epoch(rs):.1f}",
            f"{inv('rot90_rel'):.1e}", f"{inv('mirror_rel'):.1e}", f"{inv('rot45_rel'):.3f}",
            f"{100 * inv('rot45_flips'):.1f} %",
        ])
    return common.print_table(headers, rows)


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per training epoch and inference images/s of every model, timed interleaved
    (round-robin, :func:`common.bench`) in one run, so load on a shared machine hits all alike.

    A training step is one AdamW step on a batch of 128 (an epoch of 12,000 digits is 94);
    inference is ``no_grad`` eval on a batch of 500. Pixels are random: the cost does not
    depend on them.
    """
    torch.manual_seed(0)
    x = torch.rand(Recipe.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (Recipe.batch_size,))
    xi = torch.rand(500, 1, 28, 28)
    steps_per_epoch = -(-RotMNISTProtocol.n_train // Recipe.batch_size)
    train, infer, params = {}, {}, {}
    for m in args.only or MODELS:
        net = build(m, 0)
        params[m] = net.n_params
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        frozen = build(m, 0).eval()

        def step(net: RotMNISTNet = net, opt: torch.optim.Optimizer = opt) -> None:
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def forward(net: RotMNISTNet = frozen) -> None:
            with torch.no_grad():
                net(xi)

        train[m], infer[m] = step, forward
    t_train = common.bench(train, repeats=args.speed_repeats, warmup=2)
    t_infer = common.bench(infer, repeats=args.speed_repeats, warmup=2)
    rows = {m: {
        "n_params": params[m],
        "seconds_per_epoch": t_train[m].median * steps_per_epoch,
        "train_step": t_train[m].as_dict(),
        "inference_images_per_s": 500 / t_infer[m].median,
        "inference": t_infer[m].as_dict(),
        "epoch_time_vs_p4": common.paired_ratio(t_train[m], t_train["p4"]) if "p4" in train
        else None,
    } for m in train}
    payload = {"threads": args.threads, "batch_size": Recipe.batch_size,
               "steps_per_epoch": steps_per_epoch, "models": rows,
               "machine": common.machine_info()}
    common.print_table(
        ["model", "params", "s/epoch", "× p4 (per-round median [q1, q3])", "inference img/s"],
        [[m, r["n_params"], f"{r['seconds_per_epoch']:.1f}", _ratio(r["epoch_time_vs_p4"]),
          f"{r['inference_images_per_s']:.0f}"] for m, r in rows.items()])
    path = common.write_json(args.records / f"speed_{args.threads}t.json", payload)
    print(f"wrote {path}")
    return payload


def _pct1(x: object) -> str:
    return f"{100 * float(x):.2f} %" if isinstance(x, int | float) else "—"


def images_section(zoo_dir: Path) -> str:
    """The "Images" section of the zoo README: one row per rotated-MNIST entry in ``zoo_dir``
    (from its ``config.json``); ``""`` when there is none."""
    from gzoo.checkpoint import TASK_ROTMNIST, read_config

    rows = []
    for folder in sorted(p.parent for p in zoo_dir.glob("*/config.json")):
        cfg = read_config(folder)
        if cfg.get("task") != TASK_ROTMNIST:
            continue
        m, t = cfg.get("metrics") or {}, cfg.get("train") or {}
        inv = m.get("invariance") or {}
        rows.append(
            f"| `{folder.name}` | {cfg.get('group') or 'plain'} | {cfg['n_params']} | "
            f"{_pct1(m.get('test_error'))} | {t.get('seed', '?')} | "
            f"{inv.get('rot90_rel', float('nan')):.0e} | {inv.get('rot45_rel', float('nan')):.3f}"
            f" | {m.get('cpu_seconds_per_epoch', float('nan')):.1f} s |")
    if not rows:
        return ""
    return "\n".join([
        "## Images",
        "",
        "Rotated-MNIST digit classifiers (`RotMNISTNet`): `[B, 1, 28, 28]` float pixels in",
        "[0, 1] (white digit on black) → logits `[B, 10]`, invariant by construction to exact",
        "90° turns (and mirrors for p4m). Trained on 12,000 rotated digits, tested on all 10,000",
        "rotated test digits (protocol, data checksums and the reproducing command in each card;",
        "the comparison with e2cnn is in the top-level README, section \"Images\").",
        "`gzoo eval NAME --data PATH` recomputes the test error from your copy of MNIST.",
        "",
        "```python",
        "import torch",
        "",
        "import gzoo",
        "",
        "model = gzoo.load_pretrained(\"rotmnist_p4\")  # task 'rotmnist', no rule",
        "images = torch.rand(8, 1, 28, 28)            # float [B, 1, 28, 28] in [0, 1]",
        "logits = model(images)                       # [B, 10]",
        "turned = model(torch.rot90(images, 1, (-2, -1)))",
        "print((turned - logits).abs().max())         # ~1e-6: invariant to 90° turns",
        "```",
        "",
        "| entry | group | params | test error | seed | Δlogits 90° | Δlogits 45° | "
        "CPU s/epoch (1 thread) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])


def _with_section(readme: str, section: str) -> str:
    """``readme`` with its "## Images" section replaced by ``section`` (or inserted before the
    next-to-first "## " heading)."""
    start = readme.find("\n## Images\n")
    if start >= 0:
        end = readme.find("\n## ", start + 1)
        return readme[:start + 1] + section + ("\n" + readme[end + 1:] if end >= 0 else "")
    first = readme.find("\n## ")
    return readme + "\n" + section if first < 0 else \
        readme[:first + 1] + section + "\n" + readme[first + 1:]


def export_zoo(args: argparse.Namespace) -> int:
    """Write the zoo entries from the seed-0 runs and the zoo README's "Images" section."""
    from safetensors.torch import load_file

    from gzoo.checkpoint import save_checkpoint, sha256_file

    records = {(r["model"], r["seed"]): r for r in read_records(args.records)}
    for entry, model in ZOO_ENTRIES.items():
        rec = records.get((model, 0))
        if rec is None:
            print(f"{entry}: no finished run of {model} with seed 0 yet; not written")
            continue
        weights = Path(rec["weights"])
        weights = weights if weights.is_absolute() else common.REPO / weights
        if not weights.is_file() or sha256_file(weights) != rec["weights_sha256"]:
            print(f"{entry}: {weights} is missing or is not the recorded run's weights",
                  file=sys.stderr)
            return 2
        net = RotMNISTNet(**rec["kwargs"])
        net.load_state_dict(load_file(weights))
        m = rec["machine"]
        threads = m["torch_threads"]
        train = {
            "recipe": rec["recipe"], "seed": rec["seed"], "dropout": rec["dropout"],
            "torch_threads": threads, "commit": m["git"]["commit"],
            "threads_per_epoch": [h.get("threads") for h in rec["history"]],
            "machine": f"{m['cpu_model']}, {m['platform']}",
            "command": (f"python benchmarks/rotmnist.py --data PATH --only {model} --seeds 0 "
                        f"--threads {threads} && python benchmarks/rotmnist.py --zoo"),
        }
        metrics = {k: rec[k] for k in ("test_error", "invariance", "invariance_digits",
                                       "seconds_per_epoch", "inference_images_per_s")}
        metrics["cpu_seconds_per_epoch"] = _cpu_per_epoch([rec])
        folder = save_checkpoint(net.eval(), args.zoo_dir / entry, train_config=train,
                                 metrics=metrics, data=rec["data"], overwrite=True)
        print(f"{entry}: test error {100 * rec['test_error']:.2f} % → {folder}")
    readme = args.zoo_dir / "README.md"
    section = images_section(args.zoo_dir)
    if section and readme.is_file():
        readme.write_text(_with_section(readme.read_text(encoding="utf-8"), section),
                          encoding="utf-8")
        print(f"updated {readme}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="MNIST IDX folder or mnist.pkl.gz")
    p.add_argument("--download", action="store_true",
                   help="download into --data with torchvision first (needs the network)")
    p.add_argument("--unverified", action="store_true",
                   help="accept data that is not the standard MNIST (recorded as such)")
    p.add_argument("--only", nargs="+", choices=sorted(MODELS), help="models to run")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the plan)")
    p.add_argument("--epochs", type=int, default=Recipe.epochs)
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="test: fit on 12,000, score the 10,000 test digits; val: fit on "
                        "10,000, score the 2,000 validation digits")
    p.add_argument("--n-train", type=int, default=RotMNISTProtocol.n_train)
    p.add_argument("--n-val", type=int, default=RotMNISTProtocol.n_val)
    p.add_argument("--n-test", type=int, default=RotMNISTProtocol.n_test)
    p.add_argument("--records", type=Path, default=None,
                   help=f"record folder (default {DEFAULT_RECORDS}, val: …/records-val)")
    p.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="weights and state")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", action="store_true", help="only print the table of the records")
    p.add_argument("--zoo", action="store_true",
                   help=f"write the zoo entries {', '.join(ZOO_ENTRIES)} from the records")
    p.add_argument("--zoo-dir", type=Path, default=common.REPO / "zoo", help=argparse.SUPPRESS)
    p.add_argument("--speed", action="store_true",
                   help="only time a training step and inference of every model, interleaved")
    p.add_argument("--speed-repeats", type=int, default=7, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.records is None:
        args.records = DEFAULT_RECORDS.with_name("records-val") if args.split == "val" \
            else DEFAULT_RECORDS
    args.records.mkdir(parents=True, exist_ok=True)
    if args.table:
        table(read_records(args.records), read_speed(args.records))
        return 0
    if args.zoo:
        return export_zoo(args)
    if args.speed:
        torch.set_num_threads(args.threads)
        speed(args)
        return 0
    if args.data is None:
        p.error("--data PATH is needed (the MNIST IDX files or mnist.pkl.gz)")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        if args.download:
            download_mnist(args.data)
        mnist = load_mnist(args.data, verify=not args.unverified)
        protocol = RotMNISTProtocol(args.n_train, args.n_val, args.n_test)
    except (ValueError, TypeError) as e:  # MNISTError is a ValueError
        print(f"rotmnist: error: {e}", file=sys.stderr)
        return 2
    data = build_rotmnist(mnist, protocol)
    print(f"data: {mnist.source['format']} at {mnist.source['path']}, standard "
          f"{mnist.source['standard']}; rotated sha256 {data.record['rotated_sha256']}")
    recipe = Recipe(epochs=args.epochs)
    machine = common.machine_info()
    print(common.describe_machine(machine))
    tried: set[tuple[str, int]] = set()
    while True:  # re-plan after every run: the extra seeds follow the best e2cnn twin so far
        records = read_records(args.records)
        done = {(r["model"], r["seed"]) for r in records} | tried
        todo = [run for run in plan(records, args.only, args.seeds) if run not in done]
        claimed = next((run for run in todo if _claim(args.runs / run_name(*run))), None)
        if claimed is None:
            break
        tried.add(claimed)
        try:
            one_run(*claimed, data, recipe, args, machine)
        finally:
            (args.runs / run_name(*claimed) / "lock").unlink(missing_ok=True)
    table(read_records(args.records), read_speed(args.records))
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
