"""gzoo.models: networks that map one-hot boards ``[B, 2, H, W]`` to next-state logits.

* :class:`GCNN` — p4 / p4m / p8 group-equivariant CNNs with a 3×3 receptive field;
* :class:`SimpleCNNTiny`, :class:`SimpleCNNSmall`, :class:`MultiScale` — the notes' plain CNNs.

:data:`MODELS` maps class names to classes (a checkpoint names its class); :data:`KINDS` maps
the short names of the command line's ``--model`` to a class and fixed arguments;
:func:`build_model` accepts either.
"""

from __future__ import annotations

import inspect
from typing import Any

from .base import CAModel, boards_to_onehot
from .cnn import MultiScale, SimpleCNN, SimpleCNNSmall, SimpleCNNTiny
from .gcnn import BACKENDS, GCNN

__all__ = [
    "BACKENDS",
    "GCNN",
    "KINDS",
    "MODELS",
    "CAModel",
    "MultiScale",
    "SimpleCNN",
    "SimpleCNNSmall",
    "SimpleCNNTiny",
    "boards_to_onehot",
    "build_model",
]

#: Model classes by class name (what a checkpoint's ``config.json`` records).
MODELS: dict[str, type[CAModel]] = {
    c.__name__: c for c in (GCNN, SimpleCNN, SimpleCNNTiny, SimpleCNNSmall, MultiScale)
}

#: Short names (``--model``) → (class, fixed keyword arguments).
KINDS: dict[str, tuple[type[CAModel], dict[str, Any]]] = {
    "p4": (GCNN, {"group": "p4"}),
    "p4m": (GCNN, {"group": "p4m"}),
    "p8": (GCNN, {"group": "p8"}),
    "tiny": (SimpleCNNTiny, {}),
    "small": (SimpleCNNSmall, {}),
    "multiscale": (MultiScale, {}),
}


def resolve_model(name_or_kind: str) -> tuple[type[CAModel], dict[str, Any]]:
    """``"p8"`` → ``(GCNN, {"group": "p8"})``; ``"MultiScale"`` → ``(MultiScale, {})``."""
    if name_or_kind in MODELS:
        return MODELS[name_or_kind], {}
    key = str(name_or_kind).lower()
    if key in KINDS:
        cls, fixed = KINDS[key]
        return cls, dict(fixed)
    raise ValueError(
        f"unknown model {name_or_kind!r}; expected one of {sorted(KINDS)} "
        f"or a class name {sorted(MODELS)}"
    )


def build_model(name_or_kind: str, **kwargs: Any) -> CAModel:
    """Build a model by class name (``"GCNN"``) or short name (``"p8"``, ``"tiny"``, ...).

    ``kwargs`` go to the constructor; an argument the class does not take is a ``ValueError``
    naming the ones it does.
    """
    cls, fixed = resolve_model(name_or_kind)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"model {name_or_kind!r} ({cls.__name__}) takes no argument(s) {unknown}; "
            f"it accepts {accepted or 'no arguments'}"
        )
    clash = {k for k in kwargs if k in fixed and kwargs[k] != fixed[k]}
    if clash:
        raise ValueError(
            f"model {name_or_kind!r} fixes {', '.join(f'{k}={fixed[k]!r}' for k in sorted(clash))}"
        )
    return cls(**{**fixed, **kwargs})
