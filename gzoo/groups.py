"""The point groups of p4, p4m and p8 as plain data.

A group here is the rotation/reflection part H of a plane group G = Z² ⋊ H. Each group
is a small table: its elements, their multiplication (Cayley) table, inverses, and how
an element acts on a kernel, on a Z² map ``[B, C, H, W]`` and on a group map
``[B, C, |H|, H, W]``. Nothing here knows about layers.

Conventions (e2cnn's, so tensors convert by ``reshape`` alone):

* element ``(k, m)`` is ``r^k f^m``: ``f`` (the column mirror ``flip(-1)``) acts first, then
  ``k`` quarter turns (``k`` eighth turns for C8) counter-clockwise as displayed;
* element index: C4 ``k``; C8 ``k``; D4 ``k`` for ``r^k`` and ``4 + k`` for ``r^k f``;
* ``[L_g x](y) = x(g⁻¹y)``: on arrays, ``L_{r^k} x = rot90(x, k, (-2, -1))``;
* a regular (group) map transforms by the spatial action plus the left-regular permutation
  of the group axis: ``[L_g F](h, y) = F(g⁻¹h, g⁻¹y)``; for C4 that is a roll by ``+k``.

The spatial action is part of each group's data (:class:`SpatialAction`): C4 and D4 turn by
:data:`QUARTER_TURNS`; C8 by :data:`RING_ROTATION`, where an eighth turn is the *square-ring
rotation* — each Chebyshev ring of radius ``ρ`` (``8ρ`` cells) is shifted ``ρ`` places
counter-clockwise. It is an exact permutation of an odd square array, its square is exactly
``rot90``, and on a 3×3 stencil it permutes the Moore neighbourhood. A C8 layer is therefore
exactly equivariant under the 90° subgroup on any image, and under ring rotation of a single
kernel-sized stencil; under 45° rotations of whole images it is only approximately equivariant.
The constructor checks that the table and the action agree (the generator's order), so a group
cannot claim six rotations that the grid turns through four.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import torch
from torch import Tensor

from gzoo._checks import check_int

__all__ = [
    "C4", "C8", "D4", "GROUPS", "QUARTER_TURNS", "RING_ROTATION", "Group", "SpatialAction",
    "get_group", "ring_rotation_index",
]


@cache
def ring_rotation_index(n: int) -> tuple[int, ...]:
    """Source index of one counter-clockwise 45° square-ring rotation of an ``n×n`` array.

    ``rotated.flatten()[p] = x.flatten()[idx[p]]``. ``n`` must be odd.
    """
    if n % 2 != 1:
        raise ValueError(f"ring rotation needs an odd square size, got {n}")
    c = n // 2
    idx = list(range(n * n))
    for rho in range(1, c + 1):
        # The ring of radius rho, counter-clockwise as displayed (row index grows downwards),
        # starting at the top-right corner and moving left along the top row.
        ring: list[tuple[int, int]] = []
        ring += [(c - rho, c + rho - j) for j in range(2 * rho)]  # top row, right → left
        ring += [(c - rho + j, c - rho) for j in range(2 * rho)]  # left column, down
        ring += [(c + rho, c - rho + j) for j in range(2 * rho)]  # bottom row, left → right
        ring += [(c + rho - j, c + rho) for j in range(2 * rho)]  # right column, up
        m = len(ring)
        for j, (row, col) in enumerate(ring):
            # the value at ring position j moves to position j + rho
            dst = ring[(j + rho) % m]
            idx[dst[0] * n + dst[1]] = row * n + col
    return tuple(idx)


@dataclass(frozen=True)
class SpatialAction:
    """How the rotation generator of a group moves the cells of a square grid.

    One elementary *step* turns the grid by ``step_degrees`` counter-clockwise (as displayed):

    * ``QUARTER_TURNS`` (90°): a step is ``rot90``; exact on any 2-D array.
    * ``RING_ROTATION`` (45°): a step is the square-ring rotation (:func:`ring_rotation_index`),
      exact on odd square arrays only; two steps are exactly one ``rot90``.

    The step has order ``cycle = 360 / step_degrees`` (4 or 8), so a cyclic group of ``n``
    rotations can act through it only when ``n`` divides ``cycle``: its generator ``r`` is then
    ``cycle / n`` steps (:attr:`rotation_counts` lists the allowed ``n``). The column mirror
    ``flip(-1)`` conjugates a step to its inverse for both actions, so dihedral groups act too.
    """

    name: str
    step_degrees: int

    def __post_init__(self) -> None:
        if self.step_degrees not in (90, 45):
            raise ValueError(
                f"step_degrees must be 90 (quarter turns) or 45 (square-ring rotation): the only "
                f"exact turns of the square grid; got {self.step_degrees!r}"
            )

    @property
    def cycle(self) -> int:
        """Order of one step: steps that make a full turn (4 or 8)."""
        return 360 // self.step_degrees

    @property
    def rotation_counts(self) -> tuple[int, ...]:
        """Numbers of rotations ``n`` a cyclic group acting through these steps may have."""
        return tuple(n for n in range(1, self.cycle + 1) if self.cycle % n == 0)

    def exact_on_any_image(self, steps: int) -> bool:
        """Whether ``steps`` steps are whole quarter turns (``rot90`` acts on any array)."""
        return steps * self.step_degrees % 90 == 0

    def turn(self, x: Tensor, steps: int) -> Tensor:
        """``steps`` steps counter-clockwise on the last two (spatial) axes of ``x``."""
        steps %= self.cycle
        if not self.exact_on_any_image(steps):  # an odd number of 45° steps: one ring rotation
            h, w = x.shape[-2], x.shape[-1]
            if h != w or h % 2 == 0:
                raise ValueError(
                    f"a 45° ring rotation needs an odd square map, got spatial shape {h}×{w}"
                )
            idx = torch.tensor(ring_rotation_index(h), device=x.device)
            x = x.flatten(-2)[..., idx].unflatten(-1, (h, w))
            steps -= 1
        quarter_turns = steps * self.step_degrees // 90
        return torch.rot90(x, quarter_turns, (-2, -1)) if quarter_turns % 4 else x


QUARTER_TURNS = SpatialAction("quarter turns", 90)
RING_ROTATION = SpatialAction("square-ring rotation", 45)


@dataclass(frozen=True, eq=False)
class Group:
    """A finite rotation/reflection group acting on the square grid.

    Attributes:
        name: the plane group it generates with translations (``"p4"``, ``"p4m"``, ``"p8"``).
        rotations: number of rotations ``n`` (the rotation step is 360°/n).
        reflections: whether the mirror ``f`` is included (dihedral group).
        action: how its rotations move grid cells (:data:`QUARTER_TURNS` or
            :data:`RING_ROTATION`); ``n`` must be one of ``action.rotation_counts``, so that
            the generator ``r`` (``action.cycle / n`` steps) has order exactly ``n``, as the
            Cayley table says.

    Raises:
        TypeError / ValueError: naming the bad value, when the data cannot describe a group
            acting on the grid (e.g. ``Group("p6", 6, False)``: quarter turns have order 4).
    """

    name: str
    rotations: int
    reflections: bool
    action: SpatialAction = QUARTER_TURNS
    elements: tuple[tuple[int, int], ...] = field(init=False)
    table: tuple[tuple[int, ...], ...] = field(init=False)
    inverse: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {type(self.name).__name__} {self.name!r}")
        if not self.name:
            raise ValueError("name must be a non-empty str (the plane group's name), got ''")
        n = check_int("rotations", self.rotations)
        if not isinstance(self.reflections, bool):
            raise TypeError(f"reflections must be a bool, got {self.reflections!r}")
        if not isinstance(self.action, SpatialAction):
            raise TypeError(
                f"action must be a SpatialAction (QUARTER_TURNS or RING_ROTATION), "
                f"got {self.action!r}"
            )
        if n not in self.action.rotation_counts:
            hint = ("; 45° steps on the square grid need action=RING_ROTATION"
                    if n in RING_ROTATION.rotation_counts else "")
            raise ValueError(
                f"{self.name}: rotations={n} cannot act through {self.action.name} "
                f"({self.action.step_degrees}° steps, order {self.action.cycle}): its generator "
                f"would not have order {n}; expected one of {self.action.rotation_counts}{hint}"
            )
        elements = tuple((k, m) for m in ((0, 1) if self.reflections else (0,)) for k in range(n))
        index = {e: i for i, e in enumerate(elements)}

        def mul(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
            # (r^a f^m)(r^b f^n) = r^(a + (-1)^m b) f^(m+n)
            (ka, ma), (kb, mb) = a, b
            return ((ka + (-kb if ma else kb)) % n, (ma + mb) % 2)

        table = tuple(tuple(index[mul(a, b)] for b in elements) for a in elements)
        inverse = tuple(row.index(0) for row in table)
        object.__setattr__(self, "elements", elements)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "inverse", inverse)

    # ------------------------------------------------------------------ algebra
    @property
    def order(self) -> int:
        return len(self.elements)

    @property
    def identity(self) -> int:
        return 0

    def mul(self, g: int, h: int) -> int:
        """Index of the product ``g·h`` (apply ``h`` first)."""
        return self.table[g][h]

    def element_name(self, g: int) -> str:
        k, m = self.elements[g]
        rot = "e" if k == 0 else ("r" if k == 1 else f"r{k}")
        return (rot if rot != "e" else "") + "f" if m else rot

    def steps(self, g: int) -> int:
        """Steps of :attr:`action` that element ``g = r^k f^m`` turns by: ``k · cycle / n``."""
        return self.elements[g][0] * (self.action.cycle // self.rotations)

    @property
    def exact_image_elements(self) -> tuple[int, ...]:
        """Elements that act exactly on images of any shape: those turning by whole quarter
        turns (all of them for quarter-turn groups; p8's even rotations and their mirrors)."""
        return tuple(g for g in range(self.order) if self.action.exact_on_any_image(self.steps(g)))

    def regular_index(self, g: int) -> tuple[int, ...]:
        """Left-regular permutation of the group axis: ``out[h] = in[g⁻¹h]``."""
        gi = self.inverse[g]
        return tuple(self.table[gi][h] for h in range(self.order))

    # ------------------------------------------------------------------ spatial action
    def spatial_index(self, g: int, n: int) -> tuple[int, ...]:
        """Source index of ``L_g`` on an ``n×n`` array.

        ``(L_g x).flatten()[p] = x.flatten()[idx[p]]``.
        """
        base = torch.arange(n * n).view(n, n)
        return tuple(self.act_z2(base, g).flatten().tolist())

    def act_z2(self, x: Tensor, g: int) -> Tensor:
        """``[L_g x](y) = x(g⁻¹y)`` on the last two (spatial) axes of ``x``: the mirror
        ``flip(-1)`` first (if ``g`` has one), then :meth:`steps` steps of :attr:`action`.

        For a ring-rotation step the array must be square with odd size.
        """
        if self.elements[g][1]:
            x = torch.flip(x, (-1,))
        return self.action.turn(x, self.steps(g))
    def act_group(self, x: Tensor, g: int) -> Tensor:
        """``[L_g F](h, y) = F(g⁻¹h, g⁻¹y)`` on a group map ``[..., |G|, H, W]``."""
        if x.dim() < 3 or x.shape[-3] != self.order:
            raise ValueError(
                f"{self.name} group map needs a group axis of size {self.order} at dim -3, "
                f"got shape {tuple(x.shape)}"
            )
        perm = torch.tensor(self.regular_index(g), device=x.device)
        return self.act_z2(x.index_select(-3, perm), g)

    # ------------------------------------------------------------------ filter-bank index tables
    def kernel_index(self, n: int, lifting: bool) -> Tensor:
        """Index table that turns a base kernel into the filter bank by one gather.

        Lifting (the notes' eq. 14; Cohen & Welling 2016, eq. 10): bank[g, p] = ψ(g⁻¹p), as
        ``ψ.flatten(-2)[..., idx[g, p]]``; ``idx`` is ``[|G|, n²]``.

        Group correlation (the notes' eq. 15; Cohen & Welling 2016, eq. 11):
        bank[g, (h, p)] = ψ(g⁻¹h, g⁻¹p), as ``ψ.flatten(-3)[..., idx[g, h·n² + p]]``; ``idx`` is
        ``[|G|, |G|·n²]``.
        """
        rows = []
        for g in range(self.order):
            sp = torch.tensor(self.spatial_index(g, n))
            if lifting:
                rows.append(sp)
            else:
                src_h = torch.tensor(self.regular_index(g))
                rows.append((src_h[:, None] * n * n + sp[None, :]).flatten())
        return torch.stack(rows)

    def __repr__(self) -> str:
        return f"Group({self.name}, order={self.order}, {self.action.name})"


C4 = Group("p4", 4, False)
D4 = Group("p4m", 4, True)
C8 = Group("p8", 8, False, RING_ROTATION)
GROUPS: dict[str, Group] = {g.name: g for g in (C4, D4, C8)}


def get_group(name: str | Group) -> Group:
    """Look a group up by its plane-group name (``"p4"``, ``"p4m"``, ``"p8"``)."""
    if isinstance(name, Group):
        return name
    try:
        return GROUPS[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown group {name!r}; expected one of {sorted(GROUPS)}") from None
