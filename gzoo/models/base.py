"""The base of every gzoo model, and the one prediction path of cellular-automaton models.

A CA model maps a one-hot board ``x ∈ {0,1}^{B×2×H×W}`` (channel 0 = dead, channel 1 = alive)
to logits ``[B, 2, H, W]``; the predicted next state of a cell is ``argmax`` over the channel
axis. All convolutions pad circularly, so a board is a torus, as in :func:`gzoo.ca.step`.

The *receptive field* ``r`` (odd) is the side of the square window a cell's output depends on:
``r = 1 + Σ_l d_l (k_l − 1)`` over the layers of a chain (kernel ``k_l``, dilation ``d_l``), the
largest branch for parallel paths. A model with ``r = 3`` sees exactly what a Life-like rule sees.

**Prediction.** :func:`predict_logits` and :func:`predict_next` are the one path from 0/1 boards
to a model's answer, for a :class:`CAModel` or any ``nn.Module`` with the same contract (tests
use hand-built oracles): boards checked by :func:`gzoo.ca.as_uint8_boards`, one-hot encoded
(:func:`boards_to_onehot`) on the model's device and dtype, run in eval mode without gradients
(the train/eval flags restored after), in batches of ``batch_size`` boards.
:meth:`CAModel.step` and every check in :mod:`gzoo.verify` and :mod:`gzoo.infer` use them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo._checks import check_int
from gzoo.ca import as_uint8_boards

if TYPE_CHECKING:
    from gzoo.checkpoint import CheckpointInfo

__all__ = [
    "MAX_DEPTH",
    "MAX_PARAMS",
    "CAModel",
    "ZooModel",
    "activation_bytes",
    "activation_bytes_per_cell",
    "boards_to_onehot",
    "check_param_budget",
    "eval_mode",
    "model_device_dtype",
    "predict_logits",
    "predict_next",
]


#: The most trainable scalars a gzoo model may have (40 MB of float32): the zoo's models have a
#: few hundred. Constructors check it *before* allocating, from the arguments alone, so a
#: checkpoint config asking for ``width: 1000000`` fails at once instead of allocating terabytes.
MAX_PARAMS = 10_000_000
#: The most hidden layers (``depth``) a gzoo model may have (the zoo's have 0 to 2).
MAX_DEPTH = 64


def check_param_budget(model: str, kwargs: dict[str, Any], n_params: int) -> None:
    """``ValueError`` if a model of ``n_params`` parameters (counted from its arguments,
    before anything is allocated) exceeds :data:`MAX_PARAMS`."""
    if n_params > MAX_PARAMS:
        shown = n_params if n_params < 10**15 else f"about 1e{len(str(n_params)) - 1}"
        raise ValueError(f"{model}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) would "
                         f"have {shown} parameters; gzoo models have at most {MAX_PARAMS:,} "
                         "(gzoo.models.MAX_PARAMS)")


def boards_to_onehot(boards: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``[B, H, W]`` 0/1 boards → one-hot ``[B, 2, H, W]`` (channel 0 dead, 1 alive)."""
    x = boards.to(torch.long)
    return F.one_hot(x, 2).permute(0, 3, 1, 2).to(dtype)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the model's first parameter (CPU, float32 for a model without); a
    ``model`` that is not an ``nn.Module`` is a ``TypeError``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} "
                        f"{str(model)[:60]!r}")
    p = next(iter(model.parameters()), None)
    if p is None:
        return torch.device("cpu"), torch.float32
    return p.device, p.dtype


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` inside the block; every submodule's train/eval flag restored after.

    A model already in eval mode is left alone (``eval()`` would drop the layers' cached
    filter banks for nothing)."""
    flags = [(m, m.training) for m in model.modules()]
    if not any(flag for _, flag in flags):
        yield model
        return
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _predict(model: nn.Module, boards: Tensor, batch_size: int | None,
             answer: Callable[[Tensor], Tensor]) -> Tensor:
    """``answer(model(onehot(b)))`` over batches ``b`` of validated uint8 boards ``[N, H, W]``
    (or ``[H, W]``), concatenated; eval mode, no gradients, the model's device and dtype."""
    single = boards.dim() == 2
    x = boards[None] if single else boards
    n = x.shape[0] if batch_size is None else check_int("batch_size", batch_size)
    device, dtype = model_device_dtype(model)
    out = []
    with torch.no_grad(), eval_mode(model):
        for part in x.split(max(1, n)):
            try:
                logits = model(boards_to_onehot(part.to(device), dtype))
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as e:  # e.g. a Linear layer fed [B, 2, H, W]
                raise ValueError(
                    f"a cellular-automaton model maps one-hot boards [B, 2, H, W] to logits "
                    f"[B, 2, H, W]; {type(model).__name__} failed on boards "
                    f"{list(part.shape)}: {e}") from e
            if logits.shape != (part.shape[0], 2, *part.shape[1:]):
                raise ValueError(
                    f"a cellular-automaton model maps one-hot boards [B, 2, H, W] to logits "
                    f"[B, 2, H, W]; {type(model).__name__} gave shape {list(logits.shape)} "
                    f"for boards {list(part.shape)}"
                )
            out.append(answer(logits))
    y = torch.cat(out)
    return y[0] if single else y


def predict_logits(model: nn.Module, boards: Tensor, *, batch_size: int | None = None) -> Tensor:
    """Next-state logits ``[B, 2, H, W]`` (``[2, H, W]`` for one board) of 0/1 boards
    ``[B, H, W]`` or ``[H, W]``, on the model's device and dtype (module docstring)."""
    return _predict(model, as_uint8_boards(boards), batch_size, lambda z: z)


def predict_next(model: nn.Module, boards: Tensor, *, batch_size: int | None = None) -> Tensor:
    """Predicted next state ``argmax_c logits`` as uint8, same shape as ``boards``, on the
    model's device (module docstring)."""
    return _predict(model, as_uint8_boards(boards), batch_size, _argmax)


def activation_bytes(model: nn.Module, run: Callable[[], object]) -> int:
    """Bytes of the outputs of every leaf module of ``model`` while ``run()`` runs it, measured
    with forward hooks: an upper bound of a forward pass's peak (PyTorch frees most activations
    along the way) that memory estimates take before a long run starts."""
    total = 0

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return total


def activation_bytes_per_cell(model: nn.Module, side: int = 32) -> float:
    """Memory of one forward pass per board cell, in bytes: the one-hot input plus
    :func:`activation_bytes` on one ``side×side`` board."""
    board = torch.zeros(side, side, dtype=torch.uint8)
    total = activation_bytes(model, lambda: predict_logits(model, board))
    _, dtype = model_device_dtype(model)
    return total / (side * side) + 2 * dtype.itemsize  # + the one-hot input [1, 2, H, W]


def _argmax(logits: Tensor) -> Tensor:
    return logits.argmax(dim=1).to(torch.uint8)


class ZooModel(nn.Module):
    """A network the zoo can save, rebuild and load.

    Subclasses store their constructor keyword arguments in ``self._kwargs`` (so
    :meth:`init_kwargs` rebuilds them) and are registered in :data:`gzoo.models.MODELS`.

    Attributes:
        group: plane group the model is invariant under (``"p4"``, ``"p4m"``, ``"p8"``) or
            ``None``.
        checkpoint: what the checkpoint folder says about this model (rule, config, path), a
            read-only :class:`gzoo.checkpoint.CheckpointInfo` set by
            :func:`gzoo.load_pretrained`; ``None`` for a model built in code.
    """

    group: str | None = None
    checkpoint: CheckpointInfo | None = None

    def __init__(self) -> None:
        super().__init__()
        self._kwargs: dict[str, Any] = {}

    def init_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments, JSON-able: ``type(m)(**m.init_kwargs())`` rebuilds m."""
        return dict(self._kwargs)

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records to rebuild and check the model:
        ``{"model": {"class", "kwargs"}, "group", "n_params"}``."""
        return {
            "model": {"class": type(self).__name__, "kwargs": self.init_kwargs()},
            "group": self.group,
            "n_params": self.n_params,
        }


class CAModel(ZooModel):
    """A network standing in for a two-state cellular automaton on the torus.

    Subclasses set :attr:`receptive_field` and implement :meth:`forward` on a one-hot
    ``[B, 2, H, W]`` board.

    Attributes:
        receptive_field: side of the square window one output cell depends on (odd).
    """

    receptive_field: int = 3

    # ------------------------------------------------------------------ checks
    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a floating one-hot-shaped ``[B, 2, H, W]`` map."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 2:
            raise ValueError(
                f"{type(self).__name__} expects a one-hot board [B, 2, H, W] "
                f"(channel 0 dead, 1 alive), got shape {list(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"{type(self).__name__} expects a floating one-hot board, got dtype {x.dtype}; "
                "use .step(boards) for bool/uint8 boards"
            )

    # ------------------------------------------------------------------ prediction
    def predict_logits(self, boards: Tensor, *, batch_size: int | None = None) -> Tensor:
        """Next-state logits of 0/1 boards: :func:`predict_logits` on this model."""
        return predict_logits(self, boards, batch_size=batch_size)

    def step(self, boards: Tensor, *, batch_size: int | None = None) -> Tensor:
        """Predicted next state of ``bool``/``uint8`` boards ``[H, W]`` or ``[B, H, W]``.

        Returns the same shape, dtype and device as ``boards``; runs in eval mode without
        gradients on the model's device and dtype (the train/eval flags are restored after),
        ``batch_size`` boards per forward pass (all at once by default).
        """
        x = as_uint8_boards(boards, dtypes=(torch.bool, torch.uint8))
        y = _predict(self, x, batch_size, _argmax).to(boards.device)
        return y.bool() if boards.dtype == torch.bool else y

    def extra_repr(self) -> str:
        return f"receptive_field={self.receptive_field}, n_params={self.n_params}"
