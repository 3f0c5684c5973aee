"""Measure equivariance: ‖Φ(L_g x) − L'_g Φ(x)‖ / ‖Φ(x)‖ for each group element g.

:func:`equivariance_errors` measures any function; the probes below measure a model, each for
any model it applies to, and say why when it does not (a :class:`Probe` with ``reason`` set):

* :func:`probe_lifting` — the model's first lifting group correlation (eq. 14 of the notes:
  the first-layer G-correlation of Cohen & Welling, "Group Equivariant Convolutional
  Networks", ICML 2016) on random images, for the elements that act exactly on images of any
  shape;
* :func:`probe_stencil` — the same layer on one kernel-sized stencil, for the elements that act
  exactly only on odd square maps (p8's 45° square-ring rotations);
* :func:`probe_invariance` — the whole model: ``f(L_g x) = L_g f(x)`` (or ``f(L_g x) = f(x)``
  for invariant outputs) under the model's group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gzoo.groups import Group, get_group
from gzoo.layers.engine import GroupConvBase
from gzoo.models.base import eval_mode

__all__ = [
    "MAP_KINDS",
    "Probe",
    "equivariance_errors",
    "lifting_layer",
    "probe_invariance",
    "probe_lifting",
    "probe_model",
    "probe_stencil",
    "transform",
]

#: How a group acts on a map: spatially (Z² maps), spatially and by permuting the group axis
#: (group maps ``[..., |G|, H, W]``), or not at all (invariant outputs such as class logits).
MAP_KINDS = ("z2", "group", "invariant")


def transform(x: Tensor, group: Group, g: int, kind: str) -> Tensor:
    """``L_g x`` for a Z² map (``kind="z2"``, ``[..., H, W]``), a group map (``"group"``) or an
    invariant quantity (``"invariant"``: ``x`` unchanged)."""
    if kind == "z2":
        return group.act_z2(x, g)
    if kind == "group":
        return group.act_group(x, g)
    if kind == "invariant":
        return x
    raise ValueError(f"kind must be one of {MAP_KINDS}, got {kind!r}")


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

    ``in_kind``/``out_kind`` say how the group acts on input and output (:data:`MAP_KINDS`).
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


@dataclass(frozen=True)
class Probe:
    """One equivariance probe of a model.

    Attributes:
        what: what was measured, in words.
        group: the group's name (``None`` when the model has none).
        errors: relative error per group element; empty when the probe does not apply.
        reason: why the probe does not apply to this model (``""`` when it does).
    """

    what: str
    group: str | None
    errors: dict[int, float]
    reason: str = ""

    @property
    def applies(self) -> bool:
        return not self.reason

    @property
    def max_error(self) -> float:
        """The largest error over the elements (``nan`` when the probe does not apply)."""
        return max(self.errors.values(), default=float("nan"))

    def summary(self) -> str:
        """One line: the errors per element, or why the probe does not apply."""
        if not self.applies:
            return f"{self.what}: does not apply ({self.reason})"
        errs = ", ".join(f"g={g}: {e:.1e}" for g, e in self.errors.items())
        return f"{self.what} ({self.group}): {errs}"


def lifting_layer(model: nn.Module) -> GroupConvBase | None:
    """The model's first lifting group correlation (hand-written or e2cnn), or ``None``."""
    return next((m for m in model.modules()
                 if isinstance(m, GroupConvBase) and m.lifting), None)


def _no_lifting(model: nn.Module) -> str:
    return f"{type(model).__name__} has no lifting group-correlation layer"


def probe_lifting(model: nn.Module, x: Tensor | None = None) -> Probe:
    """The first lifting layer's error ‖Φ(L_g x) − L_g Φ(x)‖/‖Φ(x)‖ on ``x`` (random 15×15
    images by default) for every element that acts exactly on images."""
    what = "lifting layer"
    layer = lifting_layer(model)
    if layer is None:
        return Probe(what, None, {}, _no_lifting(model))
    return Probe(what, layer.group.name, layer.check_equivariance(x))


def probe_stencil(model: nn.Module, seed: int = 0) -> Probe:
    """The first lifting layer on one random ``k×k`` stencil (``k`` its kernel size), read at
    the centre, for the elements that act exactly only on odd square maps (p8's 45° ring
    rotations): ‖Φ(L_g s)(c) − P_g Φ(s)(c)‖/‖Φ(s)(c)‖ with ``P_g`` the regular permutation of
    the group axis. This is all a ``k×k`` receptive field sees of a 45° turn."""
    layer = lifting_layer(model)
    if layer is None:
        return Probe("stencil", None, {}, _no_lifting(model))
    group, k = layer.group, layer.kernel_size
    what = f"45° ring rotation of a {k}×{k} stencil"
    ring = [g for g in range(group.order) if g not in group.exact_image_elements]
    if not ring:
        return Probe(what, group.name, {}, (
            f"every element of {group.name} acts exactly on whole images; see the lifting "
            "layer's errors"))
    p = next(layer.parameters())
    g = torch.Generator().manual_seed(seed)
    stencil = torch.randn(2, layer.in_channels, k, k, generator=g).to(p.device, p.dtype)

    def centre(s: Tensor) -> Tensor:
        y = layer(s)  # [2, C, |G|, h, w]
        h, w = y.shape[-2] // 2, y.shape[-1] // 2
        return y[..., h:h + 1, w:w + 1]

    return Probe(what, group.name, equivariance_errors(centre, stencil, group, "z2", "group",
                                                      ring))


def probe_invariance(model: nn.Module, x: Tensor | None = None, *,
                     group: Group | str | None = None, out_kind: str = "z2") -> Probe:
    """The whole model: ‖f(L_g x) − L_g f(x)‖/‖f(x)‖ for every element of ``group`` (default:
    the model's own ``group`` attribute) that acts exactly on images.

    ``x`` defaults to random 15×15 inputs with the channels of the model's lifting layer;
    ``out_kind`` is how the group acts on the output (``"z2"`` for next-state logits,
    ``"invariant"`` for class logits).
    """
    name = group if group is not None else getattr(model, "group", None)
    what = "whole network"
    if name is None:
        return Probe(what, None, {}, (
            f"{type(model).__name__} declares no symmetry group (pass group= to measure one)"))
    grp = get_group(name)
    if x is None:
        layer = lifting_layer(model)
        if layer is None:
            return Probe(what, grp.name, {}, f"{_no_lifting(model)}; pass an input x")
        p = next(layer.parameters())
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, layer.in_channels, 15, 15, generator=g).to(p.device, p.dtype)
    with eval_mode(model):  # batch norm: running statistics, left untouched
        errors = equivariance_errors(model, x, grp, "z2", out_kind)
    return Probe(what, grp.name, errors)


def probe_model(model: nn.Module) -> list[Probe]:
    """Every probe above on ``model`` (each says whether it applies)."""
    return [probe_lifting(model), probe_stencil(model), probe_invariance(model)]
