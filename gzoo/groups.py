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

C8 on the square grid: an eighth turn is the *square-ring rotation* — each Chebyshev ring of
radius ``ρ`` (``8ρ`` cells) is shifted ``ρ`` places counter-clockwise. It is an exact
permutation of an odd square array, its square is exactly ``rot90``, and on a 3×3 stencil it
permutes the Moore neighbourhood. A C8 layer is therefore exactly equivariant under the 90°
subgroup on any image, and under ring rotation of a single kernel-sized stencil; under 45°
rotations of whole images it is only approximately equivariant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import torch
from torch import Tensor

__all__ = ["C4", "C8", "D4", "GROUPS", "Group", "get_group", "ring_rotation_index"]


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


@dataclass(frozen=True, eq=False)
class Group:
    """A finite rotation/reflection group acting on the square grid.

    Attributes:
        name: the plane group it generates with translations (``"p4"``, ``"p4m"``, ``"p8"``).
        rotations: number of rotations ``n`` (the rotation step is 360°/n).
        reflections: whether the mirror ``f`` is included (dihedral group).
    """

    name: str
    rotations: int
    reflections: bool
    elements: tuple[tuple[int, int], ...] = field(init=False)
    table: tuple[tuple[int, ...], ...] = field(init=False)
    inverse: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        n = self.rotations
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

    @property
    def exact_image_elements(self) -> tuple[int, ...]:
        """Elements that act exactly on images of any shape (all but C8's odd rotations)."""
        step = 2 if self.rotations == 8 else 1
        return tuple(i for i, (k, _) in enumerate(self.elements) if k % step == 0)

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
        """``[L_g x](y) = x(g⁻¹y)`` on the last two (spatial) axes of ``x``.

        For C8's odd elements the array must be square with odd size (ring rotation).
        """
        k, m = self.elements[g]
        if m:
            x = torch.flip(x, (-1,))
        if self.rotations == 8:
            if k % 2:
                h, w = x.shape[-2], x.shape[-1]
                if h != w or h % 2 == 0:
                    raise ValueError(
                        f"a 45° ring rotation needs an odd square map, got spatial shape {h}×{w}"
                    )
                idx = torch.tensor(ring_rotation_index(h), device=x.device)
                x = x.flatten(-2)[..., idx].unflatten(-1, (h, w))
            k //= 2  # remaining quarter turns
        return torch.rot90(x, k, (-2, -1)) if k % 4 else x

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

        Lifting, eq. 14: bank[g, p] = ψ(g⁻¹p), as ``ψ.flatten(-2)[..., idx[g, p]]``;
        ``idx`` is ``[|G|, n²]``.

        Group correlation, eq. 15: bank[g, (h, p)] = ψ(g⁻¹h, g⁻¹p), as
        ``ψ.flatten(-3)[..., idx[g, h·n² + p]]``; ``idx`` is ``[|G|, |G|·n²]``.
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
        return f"Group({self.name}, order={self.order})"


C4 = Group("p4", 4, False)
D4 = Group("p4m", 4, True)
C8 = Group("p8", 8, False)
GROUPS: dict[str, Group] = {g.name: g for g in (C4, D4, C8)}


def get_group(name: str | Group) -> Group:
    """Look a group up by its plane-group name (``"p4"``, ``"p4m"``, ``"p8"``)."""
    if isinstance(name, Group):
        return name
    try:
        return GROUPS[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown group {name!r}; expected one of {sorted(GROUPS)}") from None
