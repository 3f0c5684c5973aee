"""The base of every gzoo cellular-automaton model.

A model maps a one-hot board ``x ∈ {0,1}^{B×2×H×W}`` (channel 0 = dead, channel 1 = alive) to
logits ``[B, 2, H, W]``; the predicted next state of a cell is ``argmax`` over the channel axis.
All convolutions pad circularly, so a board is a torus, as in :func:`gzoo.ca.step`.

The *receptive field* ``r`` (odd) is the side of the square window a cell's output depends on:
``r = 1 + Σ_l d_l (k_l − 1)`` over the layers of a chain (kernel ``k_l``, dilation ``d_l``), the
largest branch for parallel paths. A model with ``r = 3`` sees exactly what a Life-like rule sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from gzoo.ca import Rule

__all__ = ["CAModel", "boards_to_onehot"]


def boards_to_onehot(boards: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``[B, H, W]`` 0/1 boards → one-hot ``[B, 2, H, W]`` (channel 0 dead, 1 alive)."""
    x = boards.to(torch.long)
    return F.one_hot(x, 2).permute(0, 3, 1, 2).to(dtype)


class CAModel(nn.Module):
    """A network standing in for a two-state cellular automaton on the torus.

    Subclasses set :attr:`receptive_field`, store their constructor keyword arguments in
    ``self._kwargs`` (so :meth:`init_kwargs` can rebuild them) and implement :meth:`forward` on a
    one-hot ``[B, 2, H, W]`` board.

    Attributes:
        receptive_field: side of the square window one output cell depends on (odd).
        group: plane group the model is invariant under (``"p4"``, ``"p4m"``, ``"p8"``) or
            ``None`` for a plain CNN.
        rule: the rule a checkpoint was trained on (set by :func:`gzoo.load_pretrained`),
            else ``None``.
    """

    receptive_field: int = 3
    group: str | None = None
    rule: Rule | None = None
    #: short name accepted by ``build_model`` and the CLI's ``--model`` (``"tiny"``, ``"p8"``...)
    kind: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self._kwargs: dict[str, Any] = {}

    # ------------------------------------------------------------------ description
    def init_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments, JSON-able: ``type(m)(**m.init_kwargs())`` rebuilds m."""
        return dict(self._kwargs)

    @property
    def config(self) -> dict[str, Any]:
        """The parsed ``config.json`` of a model loaded from a checkpoint; for a model built in
        code, its description ``{"model": {"class", "kwargs"}, "group", "n_params"}``."""
        loaded = self.__dict__.get("_checkpoint_config")
        if loaded is not None:
            return loaded
        return {
            "model": {"class": type(self).__name__, "kwargs": self.init_kwargs()},
            "group": self.group,
            "n_params": self.n_params,
        }

    @config.setter
    def config(self, value: dict[str, Any] | None) -> None:
        self.__dict__["_checkpoint_config"] = value

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def model_kind(self) -> str:
        """The ``--model`` name of this model (``"p8"`` for a p8 GCNN, ``"tiny"``, ...)."""
        return self.group or self.kind

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

    # ------------------------------------------------------------------ simulation
    def step(self, boards: Tensor) -> Tensor:
        """Predicted next state of ``bool``/``uint8`` boards ``[H, W]`` or ``[B, H, W]``.

        Returns the same shape, dtype and device as ``boards``; runs under ``no_grad`` on the
        model's device and dtype, in whatever train/eval mode the model is in (call ``.eval()``
        first for a model with batch norm).
        """
        if not isinstance(boards, Tensor):
            raise TypeError(f"boards must be a torch.Tensor, got {type(boards).__name__}")
        if boards.dtype not in (torch.bool, torch.uint8):
            raise TypeError(f"boards must be bool or uint8, got dtype {boards.dtype}")
        if boards.dim() not in (2, 3) or 0 in boards.shape:
            raise ValueError(
                f"boards must have shape [H, W] or [B, H, W] with H, W ≥ 1, "
                f"got shape {list(boards.shape)}"
            )
        if boards.dtype == torch.uint8 and bool((boards > 1).any()):
            raise ValueError("uint8 boards must hold only 0 and 1")
        p = next(self.parameters())
        x = boards if boards.dim() == 3 else boards.unsqueeze(0)
        with torch.no_grad():
            logits = self(boards_to_onehot(x.to(p.device), p.dtype))
        y = logits.argmax(dim=1).to(device=boards.device, dtype=torch.uint8)
        y = y if boards.dim() == 3 else y.squeeze(0)
        return y.bool() if boards.dtype == torch.bool else y

    def extra_repr(self) -> str:
        return f"receptive_field={self.receptive_field}, n_params={self.n_params}"
