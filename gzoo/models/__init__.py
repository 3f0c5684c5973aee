"""gzoo.models: the networks of the zoo.

Cellular automata (:class:`CAModel`: one-hot boards ``[B, 2, H, W]`` → next-state logits):

* :class:`GCNN` — p4 / p4m / p8 group-equivariant CNNs with a 3×3 receptive field;
* :class:`SimpleCNNTiny`, :class:`SimpleCNNSmall`, :class:`MultiScale` — the notes' plain CNNs.

Images: :class:`RotMNISTNet` — rotation-invariant digit classifiers (plain, p4, p4m, p8 and
the e2cnn twins), ``[B, 1, 28, 28]`` pixels → logits ``[B, 10]``.

:data:`MODELS` maps class names to classes (a checkpoint names its class); :data:`PRESETS` maps
the short names of the command line's ``--model`` (``"p8"``, ``"tiny"``, ...) to a class with
some arguments fixed; :func:`build_model` accepts either name. :func:`predict_logits` and
:func:`predict_next` are the one prediction path (see :mod:`gzoo.models.base`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, NamedTuple

from .base import (
    MAX_DEPTH,
    MAX_PARAMS,
    CAModel,
    ZooModel,
    activation_bytes,
    activation_bytes_per_cell,
    boards_to_onehot,
    check_param_budget,
    eval_mode,
    model_device_dtype,
    predict_logits,
    predict_next,
)
from .cnn import MultiScale, SimpleCNN, SimpleCNNSmall, SimpleCNNTiny
from .gcnn import BACKENDS, GCNN
from .image import RotMNISTNet

__all__ = [
    "BACKENDS",
    "GCNN",
    "MAX_DEPTH",
    "MAX_PARAMS",
    "MODELS",
    "PRESETS",
    "CAModel",
    "MultiScale",
    "Preset",
    "RotMNISTNet",
    "SimpleCNN",
    "SimpleCNNSmall",
    "SimpleCNNTiny",
    "ZooModel",
    "activation_bytes",
    "activation_bytes_per_cell",
    "boards_to_onehot",
    "build_model",
    "check_model_arguments",
    "check_param_budget",
    "eval_mode",
    "model_device_dtype",
    "predict_logits",
    "predict_next",
    "preset_name",
    "preset_of",
    "resolve_model",
]

#: Model classes by class name (what a checkpoint's ``config.json`` records).
MODELS: dict[str, type[ZooModel]] = {
    c.__name__: c for c in (GCNN, SimpleCNN, SimpleCNNTiny, SimpleCNNSmall, MultiScale,
                            RotMNISTNet)
}


class Preset(NamedTuple):
    """A model class with some constructor arguments fixed, under a short name."""

    cls: type[ZooModel]
    fixed: dict[str, Any]


#: Short names (the command line's ``--model``) → :class:`Preset`.
PRESETS: dict[str, Preset] = {
    "p4": Preset(GCNN, {"group": "p4"}),
    "p4m": Preset(GCNN, {"group": "p4m"}),
    "p8": Preset(GCNN, {"group": "p8"}),
    "tiny": Preset(SimpleCNNTiny, {}),
    "small": Preset(SimpleCNNSmall, {}),
    "multiscale": Preset(MultiScale, {}),
}


def resolve_model(name: str) -> tuple[type[ZooModel], dict[str, Any]]:
    """``"p8"`` → ``(GCNN, {"group": "p8"})``; ``"MultiScale"`` → ``(MultiScale, {})``."""
    if name in MODELS:
        return MODELS[name], {}
    key = str(name).lower()
    if key in PRESETS:
        cls, fixed = PRESETS[key]
        return cls, dict(fixed)
    raise ValueError(
        f"unknown model {name!r}; expected one of {sorted(PRESETS)} "
        f"or a class name {sorted(MODELS)}"
    )


def _init_parameters(cls: type[ZooModel]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in params.items() if k != "self"}


def check_model_arguments(
    name: str, kwargs: Mapping[str, Any]
) -> tuple[type[ZooModel], dict[str, Any]]:
    """The class and fixed arguments of model ``name`` (:func:`resolve_model`), after checking
    that it takes every argument in ``kwargs`` and that none contradicts the preset: else a
    ``ValueError`` naming the arguments it accepts. Values are checked by the constructor."""
    cls, fixed = resolve_model(name)
    accepted = list(_init_parameters(cls))
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"model {name!r} ({cls.__name__}) takes no argument(s) {unknown}; "
            f"it accepts {accepted or 'no arguments'}"
        )
    clash = {k for k in kwargs if k in fixed and kwargs[k] != fixed[k]}
    if clash:
        raise ValueError(
            f"model {name!r} fixes {', '.join(f'{k}={fixed[k]!r}' for k in sorted(clash))}"
        )
    return cls, fixed


def build_model(name: str, **kwargs: Any) -> ZooModel:
    """Build a model by class name (``"GCNN"``) or preset name (``"p8"``, ``"tiny"``, ...).

    ``kwargs`` go to the constructor; an argument the class does not take is a ``ValueError``
    naming the ones it does (:func:`check_model_arguments`).
    """
    cls, fixed = check_model_arguments(name, kwargs)
    return cls(**{**fixed, **kwargs})


def preset_of(
    cls: type[ZooModel], kwargs: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """The preset that builds ``cls(**kwargs)`` and the arguments left to give it:
    ``(GCNN, {"group": "p4", "width": 5})`` → ``("p4", {"width": 5})``; ``None`` if no preset
    builds that class with those arguments (constructor defaults count)."""
    defaults = {k: p.default for k, p in _init_parameters(cls).items()
                if p.default is not inspect.Parameter.empty}
    given = defaults | dict(kwargs)
    for name, preset in PRESETS.items():
        if preset.cls is cls and all(given.get(k) == v for k, v in preset.fixed.items()):
            return name, {k: v for k, v in kwargs.items() if k not in preset.fixed}
    return None


def preset_name(model: ZooModel) -> str | None:
    """The ``--model`` name of a model: ``"p8"`` for a p8 :class:`GCNN`, ``"tiny"`` for a
    :class:`SimpleCNNTiny`, ...; ``None`` when no preset builds it."""
    found = preset_of(type(model), model.init_kwargs())
    return None if found is None else found[0]
