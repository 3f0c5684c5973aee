"""What this machine is and has: its CPU model and the memory left to this process."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

__all__ = ["available_memory", "cpu_model"]


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
