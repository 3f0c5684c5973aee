r"""What gzoo itself can establish about a model, before calling a check a proof.

:func:`gzoo.verify.verify_exact` calls its verdict a proof (``method="exhaustive"``) only when
the 512 answers on 3×3 tori decide every board of every size. That holds when the model's
output at a cell is a fixed function of that cell's 3×3 window *on the torus*; this module
establishes it from the layers the model is built of — never from an attribute the model
declares — and then tests it empirically.

**Structure** (:func:`read_structure`). The model is read, not asked:

* its class is exactly one of gzoo's cellular-automaton classes (not a subclass), and every
  submodule's class is exactly one of a known set: the spatial layers ``nn.Conv2d``, the six
  hand-written group layers and their e2cnn twins; the pointwise ``nn.ReLU``,
  ``nn.LeakyReLU``, ``nn.BatchNorm2d`` (run in eval mode: a per-channel affine map),
  :class:`gzoo.layers.GroupPool`; the containers ``nn.Sequential``, ``nn.ModuleList``;
* nothing is replaced: no module has ``forward`` (or its call machinery, or any method) set on
  the instance, no method of these classes was swapped after their module defined it, and no
  forward hook is registered (on a module or globally);
* each spatial layer (kernel ``k``, dilation ``d``) has stride 1 and pads exactly
  ``p = d(k − 1)/2`` on every side, circularly when ``p > 0`` (as the layer will actually pad:
  for ``padding_mode != "zeros"`` the pad that ``forward`` applies is read);

The forwards of gzoo's classes apply only their submodules and pointwise operations, so the
receptive field is at most

    r ≤ 1 + Σ_layers d_l (k_l − 1)

— exact for a chain, an upper bound for parallel branches — and with circular padding of
``d(k−1)/2`` and stride 1 every layer is translation equivariant on the torus. If ``r ≤ 3`` the
answer at a cell is ``f(its 3×3 window)``: on a 3×3 torus the window of the centre is the
pattern itself, so the 512 answers are ``f`` (a proof of what the model computes on any board).

**Empirical checks** (:func:`locality_check`, :func:`boards_check`, :func:`determinism_check`),
run on every model, proof or not: changing the cells outside a cell's 3×3 window never changes
its answer; one step on random boards of several sizes (odd, even, non-square) equals the
lookup of the model's own 512 answers (for an exact model: the simulator); two identical runs
give the same logits. A failed check makes a model not exact, whatever its 512 answers.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gzoo._checks import check_int

__all__ = [
    "Check",
    "Structure",
    "boards_check",
    "determinism_check",
    "locality_check",
    "read_structure",
]

#: Boards of :func:`boards_check`: odd, even and non-square sides, (H, W).
BOARD_SIZES: tuple[tuple[int, int], ...] = ((5, 5), (6, 6), (7, 12), (13, 8), (32, 32))
#: Boards of :func:`locality_check` (large enough that a window and its outside both matter).
LOCALITY_SIZES: tuple[tuple[int, int], ...] = ((11, 11), (10, 13))
_OVERRIDES = ("forward", "_call_impl", "_wrapped_call_impl", "__call__")


@dataclass(frozen=True)
class Structure:
    """What :func:`read_structure` established about a model.

    Attributes:
        known: every module was read (known classes, nothing replaced, no hooks).
        receptive_field: the bound ``1 + Σ d(k − 1)`` over the spatial layers (``None`` when
            the model could not be read).
        torus: every spatial layer pads circularly by ``d(k−1)/2`` with stride 1.
        layers: the spatial layers read, e.g. ``"lift: P4MLiftConv k=3 d=1 pad=1 circular"``.
        problems: why the model is not certified local on the torus (empty when it is).
    """

    known: bool
    receptive_field: int | None
    torus: bool
    layers: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def local3(self) -> bool:
        """Established from the layers: a function of the 3×3 window on the torus."""
        return (self.known and self.torus and self.receptive_field is not None
                and self.receptive_field <= 3)

    def summary(self) -> str:
        """One sentence: what was read, or why not."""
        if self.local3:
            return (f"receptive field {self.receptive_field} and circular padding read from the "
                    f"layers ({'; '.join(self.layers)})")
        return "; ".join(self.problems)


@dataclass(frozen=True)
class Check:
    """One empirical check: its name, whether it passed, and what it found."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


# ---------------------------------------------------------------------------- structure
@dataclass(frozen=True)
class _Geometry:
    kernel: int
    dilation: int
    stride: int
    pads: tuple[int, ...]  # the pad forward applies on each side
    mode: str


def _square(value: object) -> int | None:
    """``n`` or ``(n, n)`` → n; anything else → ``None``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, tuple | list) and len(value) == 2 and value[0] == value[1] \
            and isinstance(value[0], int):
        return int(value[0])
    return None


def _pads(mode: str, padding: object, reversed_twice: object, k: int, d: int) -> tuple[int, ...]:
    """The pad (each side) that a conv's forward applies: ``padding`` for zeros, else the
    ``_reversed_padding_repeated_twice`` it hands to ``F.pad``."""
    if mode == "zeros":
        if padding == "same":
            return (d * (k - 1) // 2,) * 4
        if padding == "valid":
            return (0,) * 4
        p = _square(padding)
        return (-1,) * 4 if p is None else (p,) * 4
    if isinstance(reversed_twice, list | tuple):
        return tuple(int(v) for v in reversed_twice)
    return (-1,) * 4


def _conv2d_geometry(m: nn.Conv2d) -> _Geometry | str:
    k, d, s = _square(m.kernel_size), _square(m.dilation), _square(m.stride)
    if k is None or d is None or s is None:
        return (f"{type(m).__name__} with kernel {m.kernel_size}, dilation {m.dilation}, "
                f"stride {m.stride} (not square)")
    pads = _pads(m.padding_mode, m.padding, getattr(m, "_reversed_padding_repeated_twice", None),
                 k, d)
    return _Geometry(k, d, s, pads, m.padding_mode)


def _group_geometry(m: Any) -> _Geometry | str:
    """A hand-written group layer: its own attributes are what ``correlate`` uses."""
    k, d, s, p = (m.kernel_size, m.dilation, m.stride, m.padding)
    return _Geometry(k, d, s, (p,) * 4, m.padding_mode)


def _e2cnn_geometry(m: nn.Module) -> _Geometry | str:
    """An e2cnn twin: the inner ``R2Conv`` is what convolves; read its attributes."""
    from e2cnn import nn as enn

    conv: Any = getattr(m, "conv", None)
    if type(conv) is not enn.R2Conv:
        return f"{type(m).__name__}.conv is {type(conv).__name__}, not e2cnn's R2Conv"
    k, d, s = _square(conv.kernel_size), _square(conv.dilation), _square(conv.stride)
    if k is None or d is None or s is None:
        return f"{type(m).__name__}: R2Conv geometry not square"
    pads = _pads(conv.padding_mode, conv.padding,
                 getattr(conv, "_reversed_padding_repeated_twice", None), k, d)
    return _Geometry(k, d, s, pads, conv.padding_mode)


def _known_types() -> tuple[set[type], dict[type, Callable[[Any], _Geometry | str]], set[type]]:
    """(gzoo's CA model classes, spatial layer classes → geometry reader, pointwise classes)."""
    from gzoo.layers import LAYERS, GroupPool
    from gzoo.models import MODELS, CAModel

    models = {c for c in MODELS.values() if issubclass(c, CAModel)}
    spatial: dict[type, Callable[[Any], _Geometry | str]] = {nn.Conv2d: _conv2d_geometry}
    spatial.update({c: _group_geometry for c in LAYERS})
    pointwise: set[type] = {nn.ReLU, nn.LeakyReLU, nn.BatchNorm2d, GroupPool, nn.Sequential,
                            nn.ModuleList}
    return models, spatial, pointwise


def _e2cnn_types() -> dict[type, Callable[[Any], _Geometry | str]]:
    """The e2cnn twins, only if their module is already imported (it imports e2cnn)."""
    import sys

    ref = sys.modules.get("gzoo.layers.reference")
    if ref is None:
        return {}
    return {c: _e2cnn_geometry for c in ref.REFERENCE_LAYERS}


def _replaced(m: nn.Module) -> str | None:
    """Why ``m``'s behaviour is not its class's own code, or ``None``."""
    inst = vars(m)
    for name in _OVERRIDES:
        if name in inst:
            return f"{name} replaced on the instance"
    for name, value in inst.items():
        if callable(value) and not isinstance(value, nn.Module | Tensor) \
                and hasattr(type(m), name):
            return f"method {name!r} replaced on the instance"
    for klass in type(m).__mro__:
        if klass in (nn.Module, object):
            break
        for name, value in vars(klass).items():
            if isinstance(value, types.FunctionType) and value.__module__ != klass.__module__:
                return f"{klass.__name__}.{name} replaced (defined in {value.__module__})"
    if m._forward_hooks or m._forward_pre_hooks:
        return "a forward hook is registered"
    return None


def read_structure(model: nn.Module) -> Structure:
    """Read a model's receptive field and boundary handling from its layers (module
    docstring). Never raises for an unknown model: it says what it could not read."""
    from torch.nn.modules import module as torch_module

    models, spatial, pointwise = _known_types()
    spatial = spatial | _e2cnn_types()
    unread: list[str] = []  # what could not be read: no receptive field at all
    boundary: list[str] = []  # read, but not a torus
    layers: list[str] = []
    if type(model) not in models:
        unread.append(f"{type(model).__name__} is not one of gzoo's cellular-automaton model "
                      f"classes ({', '.join(sorted(c.__name__ for c in models))}); its layers "
                      "cannot be read")
        return Structure(False, None, False, (), tuple(unread))
    if getattr(torch_module, "_global_forward_hooks", None) or \
            getattr(torch_module, "_global_forward_pre_hooks", None):
        unread.append("a global forward hook is registered")
    rf = 1
    leaves: list[str] = []  # spatial layers whose children only build filters (e2cnn twins)
    for name, m in model.named_modules():
        if any(name.startswith(leaf + ".") for leaf in leaves):
            continue
        where = name or type(model).__name__
        why = _replaced(m)
        if why is not None:
            unread.append(f"{where}: {why}")
            continue
        t = type(m)
        if (t in models and m is model) or t in pointwise:
            continue
        if t not in spatial:
            unread.append(f"{where}: {t.__name__} is not a layer gzoo can read")
            continue
        if t.__module__ == "gzoo.layers.reference":
            leaves.append(name)
        g = spatial[t](m)
        if isinstance(g, str):
            unread.append(f"{where}: {g}")
            continue
        rf += g.dilation * (g.kernel - 1)  # r ≤ 1 + Σ d(k − 1)
        want = g.dilation * (g.kernel - 1) // 2
        pad = g.pads[0] if len(set(g.pads)) == 1 else None
        layers.append(f"{where}: {t.__name__} k={g.kernel} d={g.dilation} pad={pad}"
                      + (f" {g.mode}" if want else ""))
        if g.kernel % 2 == 0:
            boundary.append(f"{where}: even kernel {g.kernel} (not centred on the cell)")
        if g.stride != 1:
            boundary.append(f"{where}: stride {g.stride} (not one output cell per cell)")
        if pad != want:
            boundary.append(f"{where}: pads {list(g.pads)}, not d(k−1)/2 = {want} on each side")
        elif want and g.mode != "circular":
            boundary.append(f"{where}: padding_mode {g.mode!r}, not 'circular': the boundary "
                            "is not a torus")
    if unread:
        return Structure(False, None, False, tuple(layers), tuple(unread))
    problems = list(boundary)
    if rf > 3:
        problems.append(f"receptive field bound {rf} > 3 (read from the layers): the 512 "
                        "patterns do not decide every board")
    return Structure(True, rf, not boundary, tuple(layers), tuple(problems))


# ---------------------------------------------------------------------------- empirical checks
def _soups(sizes: Sequence[tuple[int, int]], n: int, g: torch.Generator) -> list[Tensor]:
    """``n`` uint8 soups per size, each with its own density ``~ U(0.1, 0.9)``."""
    out = []
    for h, w in sizes:
        density = 0.1 + 0.8 * torch.rand(n, 1, 1, generator=g)
        out.append((torch.rand(n, h, w, generator=g) < density).to(torch.uint8))
    return out


def locality_check(model: nn.Module, *, n_boards: int = 64, seed: int = 0,
                   sizes: Sequence[tuple[int, int]] = LOCALITY_SIZES) -> Check:
    """Changing every cell outside a cell's 3×3 window (on the torus) never changes the
    model's answer at that cell: pairs of random boards that share only the window of one
    random cell each, compared at that cell."""
    from gzoo.models import predict_next

    n_boards = check_int("n_boards", n_boards)
    g = torch.Generator().manual_seed(seed)
    changed = total = 0
    for (h, w), base in zip(sizes, _soups(sizes, n_boards, g), strict=True):
        other = _soups([(h, w)], n_boards, g)[0]
        i = torch.randint(h, (n_boards,), generator=g)
        j = torch.randint(w, (n_boards,), generator=g)
        b = torch.arange(n_boards)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):  # copy the window, wrapping around the torus
                r, c = (i + dr) % h, (j + dc) % w
                other[b, r, c] = base[b, r, c]
        pred = predict_next(model, torch.cat([base, other])).cpu()
        changed += int((pred[b, i, j] != pred[n_boards + b, i, j]).sum())
        total += n_boards
    shown = ", ".join(f"{h}×{w}" for h, w in sizes)
    if changed:
        return Check("locality", False, (
            f"the answer depends on cells outside the 3×3 window: re-drawing them changed "
            f"it at {changed} of {total} cells ({shown} boards)"))
    return Check("locality", True, (
        f"re-drawing every cell outside a cell's 3×3 window never changed its answer "
        f"({total} cells, {shown} boards)"))


def boards_check(model: nn.Module, answers: Tensor, *, n_boards: int = 4, seed: int = 0,
                 sizes: Sequence[tuple[int, int]] = BOARD_SIZES,
                 exact: bool = False) -> Check:
    """One step of the model on random boards equals ``answers[pattern index]`` at every
    cell — the lookup of its own 512 answers (``uint8 [512]``); for an exact model
    (``exact=True``) that lookup is the rule, i.e. the simulator."""
    from gzoo.ca import Rule, step
    from gzoo.models import predict_next

    n_boards = check_int("n_boards", n_boards)
    table = Rule.from_table(answers.to(torch.uint8).cpu())
    g = torch.Generator().manual_seed(seed + 1)
    found = []
    for (h, w), boards in zip(sizes, _soups(sizes, n_boards, g), strict=True):
        bad = predict_next(model, boards).cpu() != step(boards, table)
        if bool(bad.any()):
            rows, cols = bad.nonzero()[:, 1], bad.nonzero()[:, 2]
            edge = bool(((rows == 0) | (rows == h - 1) | (cols == 0) | (cols == w - 1)).all())
            found.append(f"{h}×{w}: {int(bad.sum())} cells" + (" (all on the border)" if edge
                                                                 else ""))
    against = "the simulator" if exact else "the lookup of its 512 answers"
    shown = ", ".join(f"{h}×{w}" for h, w in sizes)
    if found:
        return Check("boards", False, (
            f"one step on random boards differs from {against}: {'; '.join(found)}"
            + ("; the boundary is not a torus" if all("border" in f for f in found) else "")))
    return Check("boards", True, (
        f"one step on {n_boards} random boards each of {shown} equals {against}"))


def determinism_check(model: nn.Module, *, seed: int = 0,
                      sizes: Sequence[tuple[int, int]] = LOCALITY_SIZES,
                      n_boards: int = 16, tol: float = 1e-5) -> Check:
    """Two identical runs give the same logits (``max |Δ| ≤ tol·(1 + max |z|)``) on the 512
    patterns and on random boards; a stochastic model computes no rule."""
    from gzoo.ca import all_patterns
    from gzoo.models import model_device_dtype, predict_logits

    device, _ = model_device_dtype(model)
    boards = [all_patterns(device), *_soups(sizes, n_boards, torch.Generator().manual_seed(seed))]
    diff = scale = 0.0
    flips = 0
    for b in boards:
        z1, z2 = predict_logits(model, b), predict_logits(model, b)
        diff = max(diff, float((z1.double() - z2.double()).abs().max()))
        scale = max(scale, float(z1.double().abs().max()))
        flips += int((z1.argmax(1) != z2.argmax(1)).sum())
    if diff > tol * (1.0 + scale) or diff != diff:  # diff != diff: NaN logits
        return Check("determinism", False, (
            f"stochastic: two identical runs differ (logits by up to {diff:.3g}; {flips} "
            "answers flip)"))
    return Check("determinism", True, "two identical runs give the same logits")
