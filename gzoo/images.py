"""Training and measuring image classifiers (:class:`gzoo.models.RotMNISTNet`) on rotated
digits (:mod:`gzoo.mnist`): one recipe for every model, resumable epoch by epoch.

:func:`fit` trains with AdamW under a one-cycle schedule, augmenting each epoch by turning
a fraction of the training digits by a fresh uniform angle (bilinear, zero fill: the
protocol's own rotation, applied again). Every random choice of epoch ``e`` comes from
``seed`` and ``e`` alone (shuffling, augmentation, dropout), and after every epoch the full
state (model, optimiser, schedule, history) is saved atomically, so an interrupted fit
resumes where it stopped and ends with the same weights as an uninterrupted one (same
threads and machine).

:func:`error_rate`, :func:`invariance` and :func:`throughput` measure a trained model (on its
device and dtype); :func:`evaluate_on_protocol` scores an image checkpoint on the rotated test
digits rebuilt from a copy of the MNIST files (what ``gzoo eval NAME --data PATH`` prints).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gzoo._checks import check_float, check_int
from gzoo.mnist import IMAGE_SIZE, RotMNISTProtocol, rotate_images
from gzoo.models.base import ZooModel, activation_bytes, model_device_dtype

__all__ = [
    "EVAL_BATCH",
    "MNIST_LOAD_BYTES",
    "ROTATE_BYTES_PER_DIGIT",
    "Recipe",
    "error_rate",
    "evaluate_on_protocol",
    "evaluation_memory",
    "fit",
    "invariance",
    "throughput",
    "to_pixels",
]


#: Digits scored per forward pass (:func:`error_rate`, :func:`invariance`).
EVAL_BATCH = 1000


@dataclass(frozen=True)
class Recipe:
    """The training recipe shared by every model of the benchmark.

    ``lr`` is the peak of the one-cycle schedule (warm-up over ``warmup`` of the steps, cosine
    decay to ``lr/1e4``); ``augment`` is the fraction of training digits turned by a fresh
    uniform angle in [0°, 360°) each epoch.
    """

    epochs: int = 15
    batch_size: int = 128
    lr: float = 4e-3
    warmup: float = 0.25
    weight_decay: float = 1e-4
    augment: float = 0.5

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs)
        check_int("batch_size", self.batch_size)
        check_float("lr", self.lr, 0.0, open_min=True)
        check_float("warmup", self.warmup, 0.0, 1.0)
        check_float("weight_decay", self.weight_decay, 0.0)
        check_float("augment", self.augment, 0.0, 1.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_pixels(images: Tensor) -> Tensor:
    """uint8 ``[N, 28, 28]`` → float ``[N, 1, 28, 28]`` in [0, 1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got dtype {images.dtype}")
    return images.unsqueeze(1).float().div_(255.0)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000_003 * seed + epoch)


def _augment(images: Tensor, fraction: float, g: torch.Generator) -> Tensor:
    """Turn a random ``fraction`` of the uint8 digits by uniform angles (float pixels out)."""
    x = to_pixels(images)
    if fraction <= 0:
        return x
    chosen = torch.rand(x.shape[0], generator=g) < fraction
    degrees = 360.0 * torch.rand(int(chosen.sum()), generator=g, dtype=torch.float64)
    if degrees.numel():
        x[chosen] = rotate_images(x[chosen], degrees).clamp_(0.0, 1.0)
    return x


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def fit(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    recipe: Recipe,
    *,
    seed: int,
    state_path: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place (on its device) on uint8 ``images`` ``[N, 28, 28]`` and
    ``labels`` ``[N]``.

    With ``state_path``, the state after each epoch is written there (atomically) and a fit
    that finds it resumes from it; delete it to start afresh. Returns the history, one dict per
    epoch: ``{"epoch", "loss", "train_error", "seconds", "cpu_seconds", "threads"}`` (wall and
    process CPU seconds, torch threads); ``on_epoch`` sees each as it is made.
    """
    if images.dtype != torch.uint8 or images.dim() != 3:
        raise ValueError(f"images must be uint8 [N, 28, 28], got {images.dtype} "
                         f"{list(images.shape)}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"{images.shape[0]} images but labels of shape {list(labels.shape)}")
    check_int("seed", seed, 0)
    device, _ = model_device_dtype(model)
    n = images.shape[0]
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch,
        pct_start=recipe.warmup, div_factor=25.0, final_div_factor=400.0)
    history: list[dict[str, Any]] = []
    path = Path(state_path) if state_path is not None else None
    if path is not None and path.is_file():
        state = torch.load(path, weights_only=True)
        if state["recipe"] != recipe.as_dict() or state["seed"] != seed or state["n"] != n:
            raise ValueError(f"{path}: saved state belongs to another recipe, seed or data "
                             "(delete it to start afresh)")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = state["history"]
    for epoch in range(len(history), recipe.epochs):
        g = _epoch_generator(seed, epoch)
        torch.manual_seed(1_000_003 * seed + epoch)  # dropout
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(n, generator=g)
        x_all = _augment(images[order], recipe.augment, g)
        y_all = labels[order]
        total, wrong = 0.0, 0
        for i in range(0, n, recipe.batch_size):
            x = x_all[i:i + recipe.batch_size].to(device)
            y = y_all[i:i + recipe.batch_size].to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * y.shape[0]
            wrong += int((logits.argmax(1) != y).sum())
        row = {"epoch": epoch + 1, "loss": total / n, "train_error": wrong / n,
               "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
               "threads": torch.get_num_threads()}
        history.append(row)
        if path is not None:
            _save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(),
                          "scheduler": sched.state_dict(), "history": history,
                          "recipe": recipe.as_dict(), "seed": seed, "n": n}, path)
        if on_epoch is not None:
            on_epoch(row)
    model.eval()
    return history


@torch.no_grad()
def _logits(model: nn.Module, x: Tensor, batch: int = EVAL_BATCH) -> Tensor:
    """Eval-mode logits of float pixels ``x``, ``batch`` digits at a time on the model's device
    and dtype, returned on the CPU."""
    device, dtype = model_device_dtype(model)
    model.eval()
    return torch.cat([model(x[i:i + batch].to(device, dtype)).cpu()
                      for i in range(0, x.shape[0], batch)])


def error_rate(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Fraction of uint8 digits misclassified (eval mode)."""
    pred = _logits(model, to_pixels(images)).argmax(1)
    return float((pred != labels).double().mean())


def invariance(model: nn.Module, images: Tensor) -> dict[str, float]:
    """How much the logits move when the input digits turn, eval mode, float32.

    For each transformation T: the mean over digits of ‖f(Tx) − f(x)‖ / ‖f(x)‖ (``*_rel``)
    and the fraction of digits whose predicted class changes (``*_flips``). T is: the exact
    90°, 180°, 270° turns (``rot90``, worst of the three), the mirror ``flip(-1)``
    (``mirror``), and a 45° turn by bilinear interpolation (``rot45``, not exact on a grid:
    it changes the pixels too).
    """
    x = to_pixels(images)
    base = _logits(model, x)
    norm = base.norm(dim=1).clamp_min(1e-12)
    pred = base.argmax(1)

    def change(tx: Tensor) -> tuple[float, float]:
        out = _logits(model, tx)
        rel = float(((out - base).norm(dim=1) / norm).mean())
        return rel, float((out.argmax(1) != pred).double().mean())

    turns = [change(torch.rot90(x, k, (-2, -1))) for k in (1, 2, 3)]
    mirror = change(x.flip(-1))
    deg = torch.full((x.shape[0],), 45.0, dtype=torch.float64)
    rot45 = change(rotate_images(x, deg).clamp_(0.0, 1.0))
    return {
        "rot90_rel": max(t[0] for t in turns), "rot90_flips": max(t[1] for t in turns),
        "mirror_rel": mirror[0], "mirror_flips": mirror[1],
        "rot45_rel": rot45[0], "rot45_flips": rot45[1],
    }


@torch.no_grad()
def throughput(model: nn.Module, images: Tensor, batch: int = 500, repeats: int = 5) -> float:
    """Inference images per second (eval mode, ``no_grad``): the median of ``repeats`` timed
    passes over ``images`` in batches of ``batch``, after one untimed pass."""
    check_int("repeats", repeats)
    device, dtype = model_device_dtype(model)
    x = to_pixels(images).to(device, dtype)
    model.eval()

    def one_pass() -> float:
        t0 = time.perf_counter()
        for i in range(0, x.shape[0], batch):
            model(x[i:i + batch])
        return time.perf_counter() - t0

    one_pass()
    times = sorted(one_pass() for _ in range(repeats))
    return x.shape[0] / times[len(times) // 2]


# ---------------------------------------------------------------------------- checkpoints
#: Main memory of the standard MNIST data while it loads: 70,000 digits of 28·28 bytes (and a
#: label), held as the file's bytes, the decoded array and the tensor.
MNIST_LOAD_BYTES = 3 * 70_000 * (IMAGE_SIZE * IMAGE_SIZE + 1)
#: Main memory per digit while the protocol rotates it: the float64 digit, its rotation and
#: the two float64 sampling coordinates of ``affine_grid``.
ROTATE_BYTES_PER_DIGIT = 4 * 8 * IMAGE_SIZE * IMAGE_SIZE


def evaluation_memory(model: nn.Module, protocol: RotMNISTProtocol) -> tuple[int, int]:
    """Estimated bytes of :func:`evaluate_on_protocol`: ``(main memory, compute device)``.

    Main memory: loading MNIST (:data:`MNIST_LOAD_BYTES`) and rotating the larger split
    (:data:`ROTATE_BYTES_PER_DIGIT` per digit); the device: one batch of :data:`EVAL_BATCH`
    digits through the model, each costing its pixels plus :func:`activation_bytes` of one
    digit."""
    _, dtype = model_device_dtype(model)
    one = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    per_digit = activation_bytes(model, lambda: _logits(model, one)) + one.numel() * dtype.itemsize
    host = MNIST_LOAD_BYTES + ROTATE_BYTES_PER_DIGIT * max(protocol.n_train, protocol.n_test)
    return host, EVAL_BATCH * per_digit


def evaluate_on_protocol(model: ZooModel, data_path: str | os.PathLike[str], *,
                         verify: bool = True) -> dict[str, Any]:
    """Rebuild the rotated test digits of an image checkpoint's protocol (the ``data`` record
    of the ``config.json`` it was loaded from, ``model.checkpoint``) from the MNIST files at
    ``data_path``, and score ``model`` on them.

    Returns ``{"test_error", "n_test", "protocol", "rotated_sha256", "matches_record",
    "standard"}``; ``matches_record`` says whether the rebuilt digits are byte for byte those
    the checkpoint was tested on. A model without such a record is a ``ValueError``; data
    that cannot be read, or is not the standard MNIST (unless ``verify=False``), an
    :class:`gzoo.mnist.MNISTError`.
    """
    from gzoo.mnist import RotMNISTProtocol, build_rotmnist, load_mnist

    info = model.checkpoint
    record = info.config.get("data") if info is not None else None
    if not isinstance(record, dict):
        raise ValueError(f"{type(model).__name__} carries no rotated-MNIST data record (an "
                         "image checkpoint loaded with gzoo.load_pretrained has one)")
    protocol = RotMNISTProtocol(**record["protocol"])
    mnist = load_mnist(data_path, verify=verify)
    data = build_rotmnist(mnist, protocol)
    got = data.record["rotated_sha256"]["test"]
    x, y = data.split("test")
    return {
        "test_error": error_rate(model, x, y),
        "n_test": int(y.shape[0]),
        "protocol": protocol.as_dict(),
        "rotated_sha256": got,
        "matches_record": record["rotated_sha256"]["test"] == got,
        "standard": mnist.source["standard"],
    }
