"""Training pairs ``(x_t, x_{t+1})`` from random soups, class coverage, safetensors save/load.

Recipe of :func:`make_dataset` (deterministic per ``seed``; all random numbers come from one CPU
``torch.Generator`` in a fixed order, so the data do not depend on the device):

1. ``n_boards`` soups ``s_0``; board ``b`` gets its own density ``p_b ~ U(lo, hi)`` and cells
   ``s_0[b, i, j] ~ Bernoulli(p_b)``.
2. Each soup is evolved on the torus, ``s_{t+1} = step(s_t)``. Pair ``k = 0..steps-1`` of a board
   is taken at ``t_k = burn_in + k``; with ``fresh=True`` the first pair is taken at ``t_0 = 0``
   instead, so every board contributes its fresh soup next to ``steps - 1`` evolved states.
3. Flip noise ``γ = noise``: every dead cell of every ``x`` is set alive with probability ``γ``
   (the notes' perturbation against the skew below). ``y = step(x)`` is computed after the noise,
   so every pair is an exact transition of the rule.

Why the mix: along trajectories the (state, live-neighbour count) distribution is badly skewed.
For ``B2/S`` (Seeds) and ``B234/S`` (Serviettes) every live cell dies each step, so a live cell
with 7 or 8 live neighbours never appears after burn-in; other rules thin out to sparse ash. The
wide default density range ``(0.05, 0.95)`` makes fresh soups hit every class
``(s, n) ∈ {0, 1} × {0..max_count}``; :func:`class_counts` and :func:`format_class_table` report it.
Rules of the richer families distinguish more classes (102 Hensel orbits for an isotropic rule,
all 512 patterns for a MAP rule); fresh soups of the default density range hit every one of them
too, and :func:`family_counts` (``CADataset.missing_family_classes()``) reports that coverage.

Files: :func:`save_dataset` writes ``x``/``y`` as ``uint8`` safetensors with metadata
``format`` = ``gzoo.ca.dataset/1``, ``rule`` (canonical string) and ``recipe`` (JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .families import Family, get_family
from .rule import Rule
from .simulate import as_uint8_boards, class_index, step
from .stencil import pattern_index

__all__ = [
    "CADataset",
    "class_counts",
    "family_counts",
    "format_class_table",
    "load_dataset",
    "make_dataset",
    "missing_classes",
    "save_dataset",
]

FORMAT = "gzoo.ca.dataset/1"


@dataclass(frozen=True, eq=False)
class CADataset:
    """Pairs ``y[i] = step(x[i], rule)``: ``uint8`` tensors ``[N, H, W]`` plus their recipe."""

    x: torch.Tensor
    y: torch.Tensor
    rule: Rule
    recipe: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", Rule.parse(self.rule))
        for name in ("x", "y"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dim() != 3 or t.dtype != torch.uint8:
                got = (
                    f"{t.dtype} tensor of shape {tuple(t.shape)}"
                    if isinstance(t, torch.Tensor)
                    else type(t).__name__
                )
                raise ValueError(f"CADataset.{name} must be a uint8 tensor [N, H, W], got {got}")
        if self.x.shape != self.y.shape:
            raise ValueError(
                f"CADataset.x and .y must have the same shape, got {tuple(self.x.shape)} "
                f"and {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def class_counts(self) -> torch.Tensor:
        """Occurrences of each (state, count) class in ``x``: int64 ``[2, max_count + 1]``."""
        return class_counts(self.x, self.rule)

    def missing_classes(self) -> list[tuple[int, int]]:
        """The (state, count) classes that never occur in ``x``."""
        return missing_classes(self.class_counts())

    def family_counts(self, family: str | Family | None = None) -> torch.Tensor:
        """Occurrences in ``x`` of each class of ``family`` (default: the rule's own family,
        e.g. the 102 Hensel classes of an isotropic rule)."""
        return family_counts(self.x, self.rule.family if family is None else family)

    def missing_family_classes(self, family: str | Family | None = None) -> list[str]:
        """Names of the classes of ``family`` (default: the rule's) that never occur in ``x``."""
        fam = get_family(self.rule.family if family is None else family)
        counts = family_counts(self.x, fam)
        return [fam.class_names[i] for i in (counts == 0).nonzero().flatten().tolist()]

    def to(self, device: torch.device | str) -> CADataset:
        """A copy with ``x`` and ``y`` on ``device``."""
        return CADataset(self.x.to(device), self.y.to(device), self.rule, dict(self.recipe))


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        h = w = size
    elif (
        isinstance(size, Sequence)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        h, w = size
    else:
        raise ValueError(f"size must be an int or a pair (H, W) of ints, got {size!r}")
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def make_dataset(
    rule: Rule | str,
    n_boards: int,
    size: int | Sequence[int],
    steps: int,
    *,
    density: tuple[float, float] = (0.05, 0.95),
    burn_in: int = 16,
    fresh: bool = True,
    noise: float = 0.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool | None = False,
) -> CADataset:
    """``n_boards · steps`` exact pairs ``(x, step(x))`` from random soups (module docstring).

    ``size`` is ``H`` (square) or ``(H, W)``; ``density = (lo, hi)`` bounds the per-board soup
    density; pair ``k`` of a board is taken at ``burn_in + k`` (the first at ``t = 0`` if
    ``fresh``); ``noise`` is the flip probability ``γ``. Pairs are board-major: board ``b`` owns
    rows ``b·steps … (b+1)·steps − 1``. ``make_dataset(**ds.recipe)`` rebuilds ``ds`` exactly.
    ``progress`` (``None`` or ``True``) reports the simulation steps on stderr (a bar on a
    terminal, a line every few seconds without one; see :mod:`gzoo._progress`).
    """
    from gzoo._progress import Progress

    rule = Rule.parse(rule)
    n_boards = _count("n_boards", n_boards, 1)
    steps = _count("steps", steps, 1)
    burn_in = _count("burn_in", burn_in, 0)
    seed = _count("seed", seed, 0)
    h, w = _size(size)
    try:
        lo, hi = (float(d) for d in density)
    except (TypeError, ValueError):
        raise ValueError(f"density must be a pair (lo, hi), got {density!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"density must satisfy 0 <= lo <= hi <= 1, got {density!r}")
    noise = float(noise)
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be a probability in [0, 1], got {noise!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")

    g = torch.Generator().manual_seed(seed)
    p = lo + (hi - lo) * torch.rand(n_boards, generator=g, dtype=torch.float64)
    soup = torch.rand(n_boards, h, w, generator=g, dtype=torch.float64) < p[:, None, None]

    times = [burn_in + k for k in range(steps)]
    if fresh:
        times[0] = 0
    wanted = set(times)
    state = soup.to(device=device, dtype=torch.uint8)
    snaps: dict[int, torch.Tensor] = {}
    with Progress(f"data {rule}", max(times), enabled=progress) as bar:
        for t in range(max(times) + 1):
            if t in wanted:
                snaps[t] = state
            if t < max(times):
                state = step(state, rule)
                bar.update(t + 1, f"steps of {n_boards} boards {h}×{w}")
    x = torch.stack([snaps[t] for t in times], dim=1).reshape(n_boards * steps, h, w)
    if noise > 0.0:
        flips = torch.rand(x.shape, generator=g, dtype=torch.float64) < noise
        x = x | flips.to(device=device, dtype=torch.uint8)
    y = step(x, rule)
    recipe = {
        "rule": str(rule),
        "n_boards": n_boards,
        "size": [h, w],
        "steps": steps,
        "density": [lo, hi],
        "burn_in": burn_in,
        "fresh": bool(fresh),
        "noise": noise,
        "seed": seed,
    }
    return CADataset(x.contiguous(), y.contiguous(), rule, recipe)


def class_counts(
    boards: torch.Tensor | CADataset, rule: Rule | str | None = None, *, chunk: int = 4096
) -> torch.Tensor:
    """Occurrences of each (state, live-neighbour count) class on the torus.

    ``boards`` is a binary tensor ``[H, W]``/``[N, H, W]`` (``rule`` gives the neighbourhood) or a
    :class:`CADataset` (its ``x`` and rule). Returns int64 ``[2, max_count + 1]`` with
    ``out[s, n] = #{cells with state s and n live neighbours}``.
    """
    if isinstance(boards, CADataset):
        if rule is not None and Rule.parse(rule) != boards.rule:
            raise ValueError(f"rule {str(rule)!r} differs from the dataset's rule {boards.rule}")
        rule, boards = boards.rule, boards.x
    if rule is None:
        raise ValueError("class_counts needs a rule (for its neighbourhood) when given boards")
    rule = Rule.parse(rule)
    x = as_uint8_boards(boards)
    if x.dim() == 2:
        x = x[None]
    width = rule.max_count + 1
    out = torch.zeros(2 * width, dtype=torch.int64, device=x.device)
    for part in x.split(chunk):
        k = class_index(part, rule.neighbourhood)
        out += torch.bincount(k.flatten().long(), minlength=2 * width)
    return out.view(2, width).cpu()


def family_counts(
    boards: torch.Tensor, family: str | Family, *, chunk: int = 4096
) -> torch.Tensor:
    """Occurrences of each class of a rule family (:mod:`gzoo.ca.families`) on the torus:
    int64 ``[n_classes]``, ``out[c] = #{cells whose 3×3 pattern lies in class c}``."""
    fam = get_family(family)
    x = as_uint8_boards(boards)
    x = x[None] if x.dim() == 2 else x
    per_pattern = torch.zeros(512, dtype=torch.int64, device=x.device)
    for part in x.split(chunk):
        per_pattern += torch.bincount(pattern_index(part).flatten(), minlength=512)
    out = torch.zeros(fam.n_classes, dtype=torch.int64)
    return out.index_add_(0, fam.classes, per_pattern.cpu())


def missing_classes(counts: torch.Tensor) -> list[tuple[int, int]]:
    """The ``(state, count)`` pairs with zero occurrences in a :func:`class_counts` table."""
    return [(int(s), int(n)) for s, n in (counts == 0).nonzero().tolist()]


def format_class_table(
    counts: torch.Tensor | CADataset, rule: Rule | str | None = None, *, title: str | None = None
) -> str:
    """A readable table of a :func:`class_counts` result (or of a dataset), with missing classes.

    Example (``B2/S`` trajectories after burn-in)::

        B2/S (Seeds): 2 097 152 cells
        count        0       1  ...       8
        dead    ...
        alive   ...     ...         0
        missing: alive·7, alive·8
    """
    if isinstance(counts, CADataset):
        rule = counts.rule if rule is None else rule
        counts = counts.class_counts()
    counts = torch.as_tensor(counts)
    if counts.dim() != 2 or counts.shape[0] != 2:
        raise ValueError(f"counts must have shape [2, max_count + 1], got {tuple(counts.shape)}")
    if title is None:
        if rule is not None:
            r = Rule.parse(rule)
            title = f"{r}" + (f" ({r.name})" if r.name else "")
        else:
            title = "classes"
    total = int(counts.sum())
    cw = max(8, len(f"{int(counts.max()):,}") + 2) if counts.numel() else 8
    lines = [f"{title}: {total:,} cells"]
    lines.append("count".ljust(6) + "".join(str(n).rjust(cw) for n in range(counts.shape[1])))
    for s, label in enumerate(("dead", "alive")):
        lines.append(label.ljust(6) + "".join(f"{int(v):,}".rjust(cw) for v in counts[s]))
    missing = missing_classes(counts)
    names = ("dead", "alive")
    lines.append(
        "missing: " + ", ".join(f"{names[s]}·{n}" for s, n in missing)
        if missing
        else "missing: none"
    )
    return "\n".join(lines)


def save_dataset(ds: CADataset, path: str | os.PathLike[str]) -> None:
    """Write ``ds`` to a safetensors file with its rule and recipe (JSON) in the metadata."""
    from safetensors.torch import save_file

    metadata = {"format": FORMAT, "rule": str(ds.rule), "recipe": json.dumps(ds.recipe)}
    tensors = {"x": ds.x.detach().cpu().contiguous(), "y": ds.y.detach().cpu().contiguous()}
    save_file(tensors, os.fspath(path), metadata=metadata)


def load_dataset(path: str | os.PathLike[str]) -> CADataset:
    """Read a file written by :func:`save_dataset`; malformed files raise ``ValueError``."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no dataset file at {path!r}")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata()
            keys = set(f.keys())
            tensors = {k: f.get_tensor(k) for k in keys & {"x", "y"}}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path!r} is not a readable safetensors file: {e}") from e
    if not metadata:
        raise ValueError(f"{path!r} is not a gzoo CA dataset: the file has no metadata")
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{path!r} is not a gzoo CA dataset: metadata 'format' is "
            f"{metadata.get('format')!r}, expected {FORMAT!r}"
        )
    for key in ("rule", "recipe"):
        if key not in metadata:
            raise ValueError(f"{path!r}: dataset metadata lacks {key!r}")
    try:
        rule = Rule.parse(metadata["rule"])
    except ValueError as e:
        raise ValueError(f"{path!r}: bad rule in dataset metadata: {e}") from e
    try:
        recipe = json.loads(metadata["recipe"])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r}: dataset metadata 'recipe' is not valid JSON: {e}") from e
    if not isinstance(recipe, dict):
        raise ValueError(f"{path!r}: dataset metadata 'recipe' must be a JSON object")
    if set(tensors) != {"x", "y"}:
        raise ValueError(f"{path!r}: dataset needs tensors 'x' and 'y', found {sorted(keys)}")
    try:
        return CADataset(tensors["x"], tensors["y"], rule, recipe)
    except ValueError as e:
        raise ValueError(f"{path!r}: {e}") from e
