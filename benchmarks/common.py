"""Shared helpers for the scripts in ``benchmarks/``: machine info, an interleaved timer, output.

Each benchmark script imports this module as ``common`` (the scripts are run as
``python benchmarks/<name>.py``, which puts this folder first on ``sys.path``; the smoke test
does the same).

The timer (:func:`bench`) runs its candidates *round-robin*: every round times each candidate
once (in a rotated order), so slow drift of the machine — other processes, thermal or frequency
changes — lands on all candidates alike, and ratios taken per round (:func:`paired_ratio`) are
steadier than ratios of separately measured medians.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from gzoo._system import cpu_model

__all__ = [
    "DEFAULT_OUT",
    "REPO",
    "Timing",
    "add_common_args",
    "bench",
    "describe_machine",
    "fmt_time",
    "git_info",
    "keep_freed_memory",
    "machine_info",
    "paired_ratio",
    "print_table",
    "pyplot",
    "setup_run",
    "summarize",
    "sync",
    "write_json",
]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "out"


# ---------------------------------------------------------------------- machine
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_info(repo: Path = REPO) -> dict[str, Any]:
    """``{"commit": short hash or None, "dirty": bool or None, "dirty_files": [...]}``.

    ``dirty`` means the working tree differs from the commit (tracked changes or untracked files
    git does not ignore); the figures then belong to the commit *plus* those changes.
    """

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.rstrip()  # porcelain lines start with a status column: keep it

    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain")
    files = [line[3:] for line in status.splitlines()] if status else []
    return {
        "commit": commit,
        "dirty": None if status is None else bool(files),
        "dirty_files": files[:50],
    }


def machine_info(device: str | Sequence[str] = "cpu") -> dict[str, Any]:
    """Where and with what a run was measured (recorded in every JSON file)."""
    devices = [device] if isinstance(device, str) else list(device)
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    info: dict[str, Any] = {
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "e2cnn": _version("e2cnn"),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "cuda_available": torch.cuda.is_available(),
        "cuda_device": None,
        "cuda_version": torch.version.cuda,
        "cudnn": None,
        "git": git_info(),
    }
    try:
        info["loadavg"] = list(os.getloadavg())
    except (AttributeError, OSError):
        info["loadavg"] = None
    if torch.cuda.is_available() and any(d.startswith("cuda") for d in devices):
        info["cuda_device"] = torch.cuda.get_device_name()
        info["cudnn"] = torch.backends.cudnn.version()
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
    return info


def describe_machine(info: dict[str, Any]) -> str:
    """One line for the top of a printed table."""
    git = info["git"]
    commit = f"{git['commit']}{' (dirty)' if git['dirty'] else ''}"
    s = (f"{info['cpu_model']}, {info['torch_threads']} threads of {info['cpu_count']} cores; "
         f"torch {info['torch']}, e2cnn {info['e2cnn']}, numpy {info['numpy']}; commit {commit}")
    if info.get("cuda_device"):
        s += f"; CUDA {info['cuda_device']} (CUDA {info['cuda_version']})"
    if info.get("loadavg"):
        s += "; load avg " + " ".join(f"{v:.2f}" for v in info["loadavg"])
    return s


# ---------------------------------------------------------------------- arguments
def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--out``, ``--threads``, ``--seed``, ``--no-plot``."""
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder for JSON and PNG (default {DEFAULT_OUT})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: every core this process may use)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")


def setup_run(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (recorded as ``args.threads``) and ``--seed``; create ``--out``."""
    if args.threads is None:
        try:
            args.threads = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            args.threads = os.cpu_count() or 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------- allocator
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> dict[str, Any]:
    """Stop glibc's ``malloc`` from giving freed memory back to the OS (in this process).

    By default glibc serves large blocks (every activation of a 64×64 batch) with ``mmap`` and
    unmaps them when freed, so the next forward page-faults its buffers in again. That costs
    more than the convolution at CA sizes (measured on 2 cores: P8Conv 64×4f×64² fwd+bwd 210 ms
    → 93 ms with this, system time 8 s → 0.4 s per run) and, depending on the allocation
    history, hits one candidate and not another (P4Conv: 30 or 70 ms per call, bimodal).
    With ``mmap`` off and no trimming, buffers are reused from the heap, as a caching
    allocator (or jemalloc/tcmalloc) would. Returns what was set (recorded in the JSON); does
    nothing off glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or not name:
        return {"applied": False, "reason": "not glibc/Linux"}
    try:
        libc = ctypes.CDLL(name)
        ok = [
            bool(libc.mallopt(_M_MMAP_MAX, 0)),
            bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)),
            bool(libc.mallopt(_M_TOP_PAD, 64 << 20)),
        ]
    except (OSError, AttributeError) as e:
        return {"applied": False, "reason": repr(e)}
    return {"applied": all(ok), "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1,
            "M_TOP_PAD": 64 << 20}


# ---------------------------------------------------------------------- timing
def sync(device: str | torch.device) -> None:
    """Wait for queued kernels on ``device`` (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Seconds per call of one candidate: every sample, and their median and quartiles."""

    times: list[float]
    number: int  # calls averaged into one sample
    # process CPU seconds per call, same samples: on a shared machine, time spent descheduled
    # does not count (with several threads it sums them, spin-waits included)
    cpu_times: list[float] = field(default_factory=list)
    median: float = field(init=False)
    q1: float = field(init=False)
    q3: float = field(init=False)
    iqr: float = field(init=False)
    min: float = field(init=False)

    def __post_init__(self) -> None:
        self.median, self.q1, self.q3 = summarize(self.times)
        self.iqr = self.q3 - self.q1
        self.min = min(self.times)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, first and third quartile (inclusive method; all equal for one value)."""
    v = sorted(values)
    if len(v) == 1:
        return v[0], v[0], v[0]
    q1, med, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return med, q1, q3


def _run(
    fn: Callable[[], Any], number: int, device: str | torch.device
) -> tuple[float, float]:
    """Wall and process-CPU seconds per call over ``number`` calls."""
    sync(device)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    sync(device)
    t1 = time.perf_counter()
    return (t1 - t0) / number, (time.process_time() - c0) / number


def bench(
    candidates: dict[str, Callable[[], Any]],
    *,
    device: str | torch.device = "cpu",
    repeats: int = 5,
    warmup: int = 1,
    min_sample: float = 0.0,
) -> dict[str, Timing]:
    """Time each candidate ``repeats`` times, interleaved round-robin; seconds per call.

    Args:
        candidates: name → zero-argument callable (one call = one forward, or one
            forward+backward, …).
        device: synchronised before and after every sample (CUDA); CPU needs nothing.
        repeats: timed rounds; each round times every candidate once, in an order rotated by
            one each round so no candidate always runs first (right after another's cleanup).
        warmup: untimed rounds first (also round-robin), for allocator, caches, cuDNN/oneDNN
            algorithm choice and lazy initialisation.
        min_sample: seconds; a candidate faster than this is called ``number`` times per
            sample (``number`` fixed after warm-up) so timer resolution and launch jitter
            average out. 0 = one call per sample.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    names = list(candidates)
    last = dict.fromkeys(names, math.inf)
    for _ in range(max(warmup, 1 if min_sample > 0 else 0)):
        for name in names:
            last[name] = _run(candidates[name], 1, device)[0]
    number = {
        n: max(1, math.ceil(min_sample / last[n])) if min_sample > 0 and last[n] > 0 else 1
        for n in names
    }
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            wall, proc = _run(candidates[name], number[name], device)
            times[name].append(wall)
            cpu[name].append(proc)
    return {n: Timing(times[n], number[n], cpu[n]) for n in names}


def paired_ratio(a: Timing, b: Timing) -> dict[str, float]:
    """``a/b`` per round (same round = same machine state): median and quartiles; for reference
    the ratio of medians, of minima and the median per-round ratio of process CPU times."""
    per_round = [x / y for x, y in zip(a.times, b.times, strict=True)]
    med, q1, q3 = summarize(per_round)
    out = {"median": med, "q1": q1, "q3": q3, "of_medians": a.median / b.median,
           "of_mins": a.min / b.min}
    if a.cpu_times and b.cpu_times and min(b.cpu_times) > 0:
        out["cpu_time_median"] = summarize(
            [x / y for x, y in zip(a.cpu_times, b.cpu_times, strict=True)])[0]
    return out


# ---------------------------------------------------------------------- output
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if isinstance(obj, argparse.Namespace):
        return vars(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (non-finite floats as ``null``); return the path."""

    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (str, int, bool)) or v is None:
            return v
        return clean(_jsonable(v))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(payload), indent=1) + "\n", encoding="utf-8")
    return path


def finish(payload: dict[str, Any], args: argparse.Namespace, name: str,
           plot: Any) -> dict[str, Any]:
    """The common end of a benchmark: write ``<name>.json`` and (unless ``--no-plot``) the PNG
    drawn by ``plot(payload, path)`` into ``args.out``, and say where and how long."""
    print(f"\nwrote {write_json(args.out / f'{name}.json', payload)}")
    if not args.no_plot:
        print(f"wrote {plot(payload, args.out / f'{name}.png')}")
    print(f"({payload['seconds']:.1f} s)")
    return payload


def fmt_time(seconds: float | None) -> str:
    """``1.23 ms`` style, three significant digits."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print (and return) a Markdown table, columns padded to width."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    width = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in width) + "|"]
    out += [line(r) for r in cells[1:]]
    text = "\n".join(out)
    print(text)
    return text


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
