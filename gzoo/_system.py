"""What this machine is and has: its CPU model and the memory left to this process; and a
hint to its kernel (huge pages for large fresh buffers)."""

from __future__ import annotations

import ctypes
import functools
import platform
import sys
from pathlib import Path

import torch

__all__ = ["advise_huge_pages", "available_memory", "cpu_model"]

_HUGE = 1 << 21  # a 2 MiB transparent huge page (x86-64, arm64 with 4 KiB pages)
_MADV_HUGEPAGE = 14


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory(device: torch.device | None = None) -> int | None:
    """Bytes this process can still allocate in main memory: ``MemAvailable`` of
    ``/proc/meminfo``, lowered by a cgroup memory limit (containers, CI); ``None`` where neither
    can be read. On a CUDA ``device``: the free memory of that GPU."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    cgroup = Path("/sys/fs/cgroup")
    for limit, used in ((cgroup / "memory.max", cgroup / "memory.current"),  # cgroup v2
                        (cgroup / "memory/memory.limit_in_bytes",
                         cgroup / "memory/memory.usage_in_bytes")):  # cgroup v1
        cap, now = _read_int(limit), _read_int(used)
        if cap is not None and now is not None and cap < 1 << 60:
            found.append(max(cap - now, 0))
            break
    return min(found) if found else None


@functools.lru_cache(maxsize=1)
def _madvise() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def advise_huge_pages(t: torch.Tensor) -> bool:
    """Ask Linux to back a fresh, large CPU tensor with transparent huge pages
    (``madvise(MADV_HUGEPAGE)`` on its whole 2 MiB blocks), before anything is written to it.

    Large allocations are fresh mappings, and touching each 4 KiB page for the first time can
    cost several times the write itself (it did for ``simulate`` histories on the dev VM, where
    the kernel hands out huge pages only when asked). A hint only: the contents are unchanged,
    and where it is not supported nothing happens. Returns whether the kernel took the hint."""
    if t.device.type != "cpu" or t.numel() * t.element_size() < 2 * _HUGE:
        return False
    fn = _madvise()
    if fn is None:
        return False
    start = -(-t.data_ptr() // _HUGE) * _HUGE
    end = (t.data_ptr() + t.numel() * t.element_size()) // _HUGE * _HUGE
    return end > start and fn(start, end - start, _MADV_HUGEPAGE) == 0  # type: ignore[operator]
