"""Measure equivariance: ‖Φ(L_g x) − L'_g Φ(x)‖ / ‖Φ(x)‖ for each group element g."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from gzoo.groups import Group, get_group

__all__ = ["equivariance_errors", "transform"]


def transform(x: Tensor, group: Group, g: int, kind: str) -> Tensor:
    """``L_g x`` for a Z² map (``kind="z2"``, ``[..., H, W]``) or a group map (``kind="group"``)."""
    if kind == "z2":
        return group.act_z2(x, g)
    if kind == "group":
        return group.act_group(x, g)
    raise ValueError(f"kind must be 'z2' or 'group', got {kind!r}")


@torch.no_grad()
def equivariance_errors(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    group: Group | str,
    in_kind: str,
    out_kind: str,
    elements: Iterable[int] | None = None,
) -> dict[int, float]:
    """Relative equivariance error of ``fn`` on input ``x`` for each element.

    ``in_kind``/``out_kind`` say how the group acts on input and output: ``"z2"`` (spatial
    action only) or ``"group"`` (spatial action plus left-regular permutation of dim -3).
    ``elements`` defaults to every element that acts exactly on images of any shape (for p8 the
    90° subgroup; 45° ring rotations need odd square maps).
    """
    group = get_group(group)
    y = fn(x)
    scale = y.norm()
    if scale == 0:
        raise ValueError("fn(x) is identically zero; the relative error is undefined")
    todo = group.exact_image_elements if elements is None else tuple(elements)
    errors: dict[int, float] = {}
    for g in todo:
        lhs = fn(transform(x, group, g, in_kind))
        rhs = transform(y, group, g, out_kind)
        errors[g] = float((lhs - rhs).norm() / scale)
    return errors
