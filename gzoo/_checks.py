"""Argument checks shared by every room: one home for "a positive int" and friends."""

from __future__ import annotations

__all__ = ["check_int"]


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
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return value
