"""Argument checks shared by every room: one home for "a positive int", "a device that exists"
and "enough memory for this job"."""

from __future__ import annotations

import math

import torch

from gzoo._system import available_memory

__all__ = ["check_device", "check_float", "check_int", "check_memory", "format_bytes"]


def check_int(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) in ``[minimum, maximum]``.

    A value of another type is a :class:`TypeError`, one out of range a :class:`ValueError`;
    both messages name the argument, what was expected and the value received.
    """
    if minimum == 1 and maximum is None:
        want = "a positive int"
    elif maximum is None:
        want = f"an int ≥ {minimum}"
    else:
        want = f"an int in {minimum}..{maximum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {want}, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        shown = repr(value) if abs(value) < 10**30 else f"an int of {len(str(abs(value)))} digits"
        raise ValueError(f"{name} must be {want}, got {shown}")
    return value


def check_float(name: str, value: object, minimum: float = -math.inf, maximum: float = math.inf,
                *, open_min: bool = False) -> float:
    """``value`` as a finite ``float`` in ``[minimum, maximum]`` (``(minimum, maximum]`` with
    ``open_min``). Ints count as floats; bools, strings and other types are a
    :class:`TypeError`; NaN, ±inf and values out of range a :class:`ValueError` naming
    ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    x = float(value)
    if math.isfinite(maximum):
        want = f"a finite number in {'(' if open_min else '['}{minimum:g}, {maximum:g}]"
    elif math.isfinite(minimum):
        want = f"a finite number {'>' if open_min else '≥'} {minimum:g}"
    else:
        want = "a finite number"
    if not math.isfinite(x) or x < minimum or x > maximum or (open_min and x == minimum):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return x


def check_device(value: object, name: str = "device") -> torch.device:
    """The :class:`torch.device` named by ``value`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
    ``"mps"``, ``"auto"`` = CUDA when there is one, else CPU), checked to exist on this machine.

    A value that is not a string or device is a :class:`TypeError`; a device string torch does
    not know, or a device this machine lacks, a :class:`ValueError` naming it and what is here.
    """
    if isinstance(value, str) and value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(value, str | torch.device):
        raise TypeError(f"{name} must be a device string such as 'cpu', 'cuda', 'cuda:1' or "
                        f"'auto', got {type(value).__name__} {value!r}")
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name} must be cpu, cuda, cuda:N, mps or auto, got {value!r}") from None
    if dev.type == "cpu":
        return dev
    backend = getattr(torch, dev.type, None) if dev.type in ("cuda", "mps", "xpu") else None
    if backend is None or not backend.is_available():
        why = ("this torch is a CPU-only build" if dev.type == "cuda" and torch.version.cuda
               is None else "no such device is visible")
        raise ValueError(f"{name} {str(value)!r} requested but {dev.type.upper()} is not "
                         f"available ({why}); use --device cpu")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if dev.index is not None and dev.index >= count:
        raise ValueError(f"{name} {str(value)!r} requested but this machine has {count} "
                         f"{dev.type} device(s) (indices 0..{count - 1})")
    return dev


def format_bytes(n: float) -> str:
    """``3.2e9`` → ``"3.2 GB"`` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def check_memory(need: int, what: str, hint: str = "",
                 device: torch.device | None = None) -> None:
    """Refuse (:class:`ValueError`) a job whose estimated memory ``need`` (bytes) exceeds what
    is available (:func:`gzoo._system.available_memory`: main memory, or a CUDA ``device``'s);
    ``what`` says what the estimate is of, ``hint`` what to change. Nothing is checked where the
    available memory is unknown."""
    have = available_memory(device)
    if have is not None and need > have:
        where = f" on {device}" if device is not None and device.type != "cpu" else ""
        raise ValueError(f"{what} needs about {format_bytes(need)} of memory{where}, but only "
                         f"{format_bytes(have)} is available" + (f"; {hint}" if hint else ""))
