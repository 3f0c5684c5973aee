"""Compatibility patch for e2cnn 0.2.3 (unmaintained) on numpy 2 and recent torch.

e2cnn 0.2.3 was written for numpy 1 and torch 1.x. On numpy 2 every ``FlipRot2dOnR2`` (p4m)
convolution fails to build; on recent torch every ``R2Conv`` prints a deprecation warning and
1×1 lifting convolutions fail. Rather than pin ``numpy < 2``, gzoo patches the few offending
spots in memory when it imports e2cnn (:func:`patch_e2cnn`, run once when this module is
imported, i.e. by ``import gzoo.layers.reference``). Each patch restores exactly the behaviour
e2cnn was written for; nothing is patched in numpy or torch themselves.

What is patched, and why:

1. ``ndarray.tostring`` (removed in numpy 2; an alias of ``tobytes`` since numpy 1.9).
   ``__hash__`` of ``R2FlipsSolution``, ``R2ContinuousRotationsSolution``,
   ``R2FlipsDiscreteRotationsSolution`` and ``R2FlipsContinuousRotationsSolution`` (in
   ``e2cnn.kernels.irreps_basis``) hash ``self.mu.tostring()``; the kernel bases are hashed as
   cache keys whenever a layer is built, so every layer with reflections fails with
   ``AttributeError: 'numpy.ndarray' object has no attribute 'tostring'``. They are replaced by
   the same hash computed with ``tobytes()`` (identical bytes, identical hash values).
2. ``np.array(x, copy=False)`` (numpy 2 raises ``ValueError`` when a copy is needed, e.g. for a
   Python int; in numpy 1 it meant "copy only if needed", which is numpy 2's ``copy=None``).
   Used by ``psi``, ``chi`` and ``psichi`` in ``e2cnn.kernels.utils``, which build the
   reflection-group kernel bases. That module's global ``np`` is replaced by a read-through
   proxy of numpy (:class:`_ModuleProxy`) whose ``array`` maps ``copy=False`` to ``copy=None``.
3. ``np.float`` (removed in numpy 1.24) in ``e2cnn.group.groups.o2group`` (O(2) induced
   representations; not reached by gzoo's groups): the same proxy, with ``float`` the builtin
   it aliased.
4. ``uint8`` masks in ``SingleBlockBasisExpansion.__init__`` (a ``ByteTensor`` workaround for
   torch < 1.2, as its comment says). Recent torch warns ``indexing with dtype torch.uint8 is
   now deprecated`` once per layer built, and raises ``RuntimeError: masked_fill_ only supports
   boolean masks`` when the basis has a single element (e.g. any 1×1 lifting layer). That
   module's ``np`` and ``torch`` are replaced by proxies with ``uint8`` mapped to ``bool``, so
   the masks are the boolean masks e2cnn meant: same values, no warning, 1×1 layers build.

No warnings filter is installed: the fixes remove the causes. The patch is idempotent and
only touches modules whose globals still point at the real numpy/torch, so a fixed e2cnn
release (or a second call) is left alone. e2cnn is pinned to 0.2.3 in pyproject.toml.
"""

from __future__ import annotations

import builtins
import types
from typing import Any

import numpy as np
import torch

__all__ = ["E2CNN_PATCHES", "patch_e2cnn"]

_NUMPY2 = int(np.__version__.split(".")[0]) >= 2

#: Descriptions of the patches in effect (for tests and bug reports).
E2CNN_PATCHES: list[str] = []


class _ModuleProxy(types.ModuleType):
    """Read-through proxy of a module with a few attributes overridden."""

    def __init__(self, target: types.ModuleType, **overrides: Any) -> None:
        super().__init__(target.__name__, target.__doc__)
        self.__dict__.update(overrides, _gzoo_target=target)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_gzoo_target"], name)

    def __repr__(self) -> str:
        names = sorted(k for k in self.__dict__ if not k.startswith("_"))
        return f"<gzoo e2cnn-compat proxy of module {self.__name__!r}, overriding {names}>"


def _array(obj: Any, *args: Any, copy: bool | None = True, **kwargs: Any) -> np.ndarray:
    """``np.array`` where ``copy=False`` keeps its numpy-1 meaning, "copy only if needed"."""
    if copy is False and _NUMPY2:
        copy = None
    return np.array(obj, *args, copy=copy, **kwargs)


def _basis_hash(self: Any) -> int:
    """``IrrepBasis.__hash__`` of e2cnn 0.2.3 with ``tostring()`` spelled ``tobytes()``."""

    def h(v: Any) -> int:
        return hash(v.tobytes()) if isinstance(v, np.ndarray) else hash(v)

    return hash(self.in_irrep) + hash(self.out_irrep) + h(self.mu) + h(self.gamma)


def _proxy_global(module: types.ModuleType, name: str, real: Any, **overrides: Any) -> bool:
    """Replace ``module.<name>`` (the real module ``real``) by a proxy; True if in effect."""
    current = getattr(module, name, None)
    if current is real and real is not None:
        setattr(module, name, _ModuleProxy(real, **overrides))
        return True
    return isinstance(current, _ModuleProxy)


def patch_e2cnn() -> list[str]:
    """Apply the numpy-2/torch compatibility patches to e2cnn (idempotent).

    Returns descriptions of the patches in effect.
    """
    import e2cnn.group.groups.o2group as o2group
    import e2cnn.kernels.irreps_basis as irreps_basis
    import e2cnn.kernels.utils as kernel_utils
    from e2cnn.nn.modules.r2_conv import basisexpansion_singleblock as singleblock

    done: list[str] = []
    for name in ("R2FlipsSolution", "R2ContinuousRotationsSolution",
                 "R2FlipsDiscreteRotationsSolution", "R2FlipsContinuousRotationsSolution"):
        cls = getattr(irreps_basis, name, None)
        if cls is not None:
            cls.__hash__ = _basis_hash
            done.append(f"{name}.__hash__: tostring() -> tobytes()")
    if _proxy_global(kernel_utils, "np", np, array=_array):
        done.append("e2cnn.kernels.utils: np.array(copy=False) -> copy if needed")
    if _proxy_global(o2group, "np", np, float=builtins.float):
        done.append("e2cnn.group.groups.o2group: np.float -> float")
    if (_proxy_global(singleblock, "np", np, uint8=np.bool_)
            & _proxy_global(singleblock, "torch", torch, uint8=torch.bool)):
        done.append("SingleBlockBasisExpansion: uint8 masks -> bool masks")
    E2CNN_PATCHES[:] = done
    return list(done)


patch_e2cnn()
