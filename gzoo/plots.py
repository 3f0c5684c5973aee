"""Every picture gzoo writes: training curves, simulation histories (PNG montage or GIF),
atlases.

matplotlib is imported lazily with the non-interactive ``Agg`` backend, so nothing here needs a
display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from gzoo.infer import NetworkInference

__all__ = [
    "save_atlas_plots",
    "save_history_gif",
    "save_history_png",
    "save_model_explanation",
    "save_rollout_comparison",
    "save_simulation",
    "save_training_curve",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | os.PathLike[str]) -> Path:
    """Lay out, write as PNG (creating the folder) and close a figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_training_curve(
    history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Loss (log scale) against step, and held-out error / wrong patterns at the checks
    (zero errors are drawn at 1e-7, and a star marks the check that found the model exact).

    ``history`` is the list of per-step records of :func:`gzoo.train.train` (keys ``step``,
    ``global_step``, ``loss``, ``restart``, and at checks ``acc`` and ``n_wrong``). Restarts are
    marked by vertical lines.
    """
    plt = _pyplot()
    path = Path(path)
    xs = [r.get("global_step", r.get("step", i)) for i, r in enumerate(history)]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    ax1.plot(xs, [max(float(r["loss"]), 1e-12) for r in history], lw=0.8, label="loss")
    if any("ce" in r for r in history):
        ax1.plot(xs, [max(float(r.get("ce", math.nan)), 1e-12) for r in history], lw=0.8,
                 alpha=0.7, label="cross-entropy")
    ax1.set_yscale("log")
    ax1.set_ylabel("training loss")
    ax1.legend(loc="upper right", fontsize=8)
    checks = [(x, r) for x, r in zip(xs, history, strict=True) if "acc" in r]
    if checks:
        cx = [x for x, _ in checks]
        err = [max(1.0 - float(r["acc"]), 1e-7) for _, r in checks]
        ax2.plot(cx, err, marker=".", lw=0.8, label="held-out error (1 − acc)")
        wrong = [(x, r["n_wrong"]) for x, r in checks if r.get("n_wrong") is not None]
        if wrong:
            ax2.plot([x for x, _ in wrong], [max(w / 512, 1e-7) for _, w in wrong],
                     marker="x", lw=0.8, label="wrong neighbourhoods / 512")
        done = [x for x, r in checks if r.get("exact")]
        if done:
            ax2.plot(done, [1e-7] * len(done), "*", ms=12, color="green", label="exact")
        ax2.set_yscale("log")
        ax2.legend(loc="upper right", fontsize=8)
    ax2.set_xlabel("step")
    ax2.set_ylabel("error")
    for i in range(1, len(history)):
        if history[i].get("restart") != history[i - 1].get("restart"):
            for ax in (ax1, ax2):
                ax.axvline(xs[i], color="grey", ls="--", lw=0.8)
    if title:
        fig.suptitle(title)
    return _save(plt, fig, path)


def _frames(history: torch.Tensor) -> torch.Tensor:
    h = torch.as_tensor(history)
    if h.dim() != 3:
        raise ValueError(f"history must be [T, H, W], got shape {list(h.shape)}")
    return h.to(torch.uint8).cpu()


def save_history_png(
    history: torch.Tensor, path: str | os.PathLike[str], *, n_frames: int = 8, title: str = ""
) -> Path:
    """A montage of ``n_frames`` evenly spaced frames of a ``[T, H, W]`` history, side by side."""
    plt = _pyplot()
    h = _frames(history)
    t = h.shape[0]
    idx = sorted({round(i * (t - 1) / max(1, n_frames - 1)) for i in range(min(n_frames, t))})
    cols = len(idx)
    fig, axes = plt.subplots(1, cols, figsize=(1.8 * cols, 2.1), squeeze=False)
    for ax, i in zip(axes[0], idx, strict=True):
        ax.imshow(h[i].numpy(), cmap="binary", interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(f"t = {i}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(plt, fig, path)


def save_history_gif(
    history: torch.Tensor, path: str | os.PathLike[str], *, fps: int = 10, title: str = ""
) -> Path:
    """An animated GIF of a ``[T, H, W]`` history (matplotlib's PillowWriter; needs pillow)."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise RuntimeError("writing a GIF needs pillow (pip install pillow); "
                           "or write a .png instead") from None
    plt = _pyplot()
    from matplotlib.animation import FuncAnimation, PillowWriter

    h = _frames(history)
    fig, ax = plt.subplots(figsize=(4, 4.3))
    im = ax.imshow(h[0].numpy(), cmap="binary", interpolation="nearest", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    label = ax.set_title(f"{title} t = 0".strip(), fontsize=9)

    def update(i: int):
        im.set_data(h[i].numpy())
        label.set_text(f"{title} t = {i}".strip())
        return (im, label)

    anim = FuncAnimation(fig, update, frames=h.shape[0], blit=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim.save(path, writer=PillowWriter(fps=fps))
    plt.close(fig)
    return path


def save_simulation(history: torch.Tensor, path: str | os.PathLike[str], *, title: str = "",
                    n_frames: int = 8, fps: int = 10) -> Path:
    """A GIF if ``path`` ends in ``.gif``, a PNG montage if in ``.png``; else ``ValueError``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return save_history_gif(history, path, fps=fps, title=title)
    if suffix == ".png":
        return save_history_png(history, path, n_frames=n_frames, title=title)
    raise ValueError(f"output must end in .png or .gif, got {os.fspath(path)!r}")


def _rollout_rows(axes, net_history: torch.Tensor, rule_history: torch.Tensor,
                  idx: list[int]) -> None:
    """Network frames on the top row, the rule's below, disagreeing cells in red on both."""
    import numpy as np

    for col, i in enumerate(idx):
        diff = (net_history[i] != rule_history[i]).numpy()
        for row, (h, label) in enumerate(((net_history, "network"), (rule_history, "rule"))):
            img = np.stack([1.0 - h[i].numpy()] * 3, -1)
            img[diff] = (0.85, 0.1, 0.1)
            ax = axes[row][col]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t = {i}", fontsize=8)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)


def save_rollout_comparison(
    net_history: torch.Tensor, rule_history: torch.Tensor, path: str | os.PathLike[str], *,
    n_frames: int = 6, title: str = "",
) -> Path:
    """A network's self-fed rollout (top) beside the exact rule's (bottom), ``[T, H, W]`` each
    (as :func:`gzoo.verify.rollout_histories` returns them); cells where they differ are red."""
    plt = _pyplot()
    net, ref = _frames(net_history), _frames(rule_history)
    if net.shape != ref.shape:
        raise ValueError(f"histories differ in shape: {list(net.shape)} vs {list(ref.shape)}")
    t = net.shape[0]
    idx = sorted({round(i * (t - 1) / max(1, n_frames - 1)) for i in range(min(n_frames, t))})
    fig, axes = plt.subplots(2, len(idx), figsize=(1.7 * len(idx), 3.8), squeeze=False)
    _rollout_rows(axes, net, ref, idx)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(plt, fig, path)


def save_model_explanation(
    model: torch.nn.Module, inference: NetworkInference, net_history: torch.Tensor,
    rule_history: torch.Tensor, path: str | os.PathLike[str], *, title: str = "",
) -> Path:
    """Three panels that explain a CA network:

    1. the lifting filters of every group element (rows: fields, columns: elements), drawn as
       ``w_alive − w_dead``: on a one-hot board the response is a constant plus the correlation of
       this difference with the live cells;
    2. the learned response per (state, live-neighbour count): the fraction of the
       neighbourhoods the network answers "alive" (from :func:`gzoo.infer.infer_rule`), cells
       answered alive throughout outlined (for an outer-totalistic rule: the rule itself);
    3. a self-fed rollout beside the exact rule.

    A model without a lifting group correlation shows its first ``Conv2d`` instead.
    """
    import numpy as np

    from gzoo.equivariance import lifting_layer

    plt = _pyplot()
    lift = lifting_layer(model)
    if lift is not None:
        with torch.no_grad():
            bank = lift.expand_filter().detach().cpu().double()  # [w·|G|, 2, k, k]
        order = lift.group_order
    else:
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        bank, order = first.weight.detach().cpu().double(), 1
    filt = (bank[:, 1] - bank[:, 0]).numpy()
    fields = filt.shape[0] // order
    resp = inference.count_response().numpy()  # [2, max_count + 1]
    max_count = resp.shape[1] - 1

    net, ref = _frames(net_history), _frames(rule_history)
    t = net.shape[0]
    idx = sorted({round(i * (t - 1) / 4) for i in range(5)}) if t > 1 else [0]
    cols = max(order, len(idx), 4)
    rows = fields + 1 + 2
    fig = plt.figure(figsize=(1.25 * cols + 1, 1.25 * rows + 0.8))
    grid = fig.add_gridspec(rows, cols)
    vmax = float(np.abs(filt).max()) or 1.0
    for f in range(fields):
        for g in range(order):
            ax = fig.add_subplot(grid[f, g])
            ax.imshow(filt[f * order + g], cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if f == 0:
                ax.set_title(f"g = {g}", fontsize=7)
            if g == 0:
                ax.set_ylabel(f"field {f}", fontsize=7)
    ax = fig.add_subplot(grid[fields, :])
    ax.imshow(resp, cmap="Greens", vmin=0, vmax=1, aspect="auto")
    for s in (0, 1):
        for n in range(max_count + 1):
            ax.text(n, s, f"{resp[s, n]:.2f}", ha="center", va="center", fontsize=7)
            if resp[s, n] == 1.0:
                ax.add_patch(plt.Rectangle((n - 0.5, s - 0.5), 1, 1, fill=False, lw=1.5,
                                           ec="black"))
    ax.set_yticks([0, 1], ["dead (B)", "alive (S)"], fontsize=7)
    ax.set_xticks(range(max_count + 1))
    ax.set_xlabel(f"live neighbours ({inference.neighbourhood}); fraction of neighbourhoods "
                  f"answered alive (outlined: all); inferred rule {inference.rule}", fontsize=7)
    axes = [[fig.add_subplot(grid[fields + 1 + r, c]) for c in range(len(idx))] for r in (0, 1)]
    _rollout_rows(axes, net, ref, idx)
    fig.suptitle(title or "lifting filters (w_alive − w_dead) · class response · rollout",
                 fontsize=9)
    return _save(plt, fig, path)


def save_atlas_plots(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *,
                     title: str = "", hardest: int = 12) -> Path:
    """An atlas (:mod:`gzoo.atlas`) in three panels: the success rate per family × group (pairs
    whose symmetry floor is positive left out, their count printed), the distribution of
    seconds to exactness per group (ECDF), and the ``hardest`` rules — those not exact, then
    the slowest — each with the classes its leading net had wrong most often."""
    plt = _pyplot()
    keys = sorted({(r["family"], r["group"]) for r in records})
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [1, 1, 1.4]})
    ax = axes[0]
    for i, key in enumerate(keys):
        rs = [r for r in records if (r["family"], r["group"]) == key]
        trained = [r for r in rs if r["status"] != "floor"]
        rate = sum(bool(r["exact"]) for r in trained) / len(trained) if trained else 0.0
        ax.bar(i, 100 * rate, color="tab:green" if rate == 1 else "tab:orange")
        ax.text(i, 100 * rate + 1, f"{sum(bool(r['exact']) for r in trained)}/{len(trained)}"
                + (f"\n+{len(rs) - len(trained)} floor" if len(rs) > len(trained) else ""),
                ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(keys)), [f"{f[:5]}\n{g}" for f, g in keys], fontsize=8)
    ax.set_ylim(0, 115)
    ax.set_ylabel("exact (% of trainable pairs)")
    ax.set_title("success per family × group")
    ax = axes[1]
    for key in keys:
        secs = sorted(r["seconds"] for r in records
                      if (r["family"], r["group"]) == key and r["exact"])
        if secs:
            ax.step(secs, [(i + 1) / len(secs) for i in range(len(secs))], where="post",
                    label=f"{key[0][:5]} {key[1]}")
    ax.set_xscale("log")
    ax.set_xlabel("seconds to exact (wall)")
    ax.set_ylabel("fraction of exact rules")
    ax.set_title("time to exact")
    if ax.get_lines():
        ax.legend(fontsize=7)
    ax = axes[2]
    trained = [r for r in records if r["status"] != "floor"]
    worst = sorted(trained, key=lambda r: (bool(r["exact"]), -float(r["seconds"] or 0)))
    worst = worst[:hardest]
    for i, r in enumerate(worst):
        classes = r.get("wrong_classes") if not r["exact"] else r.get("hard_classes")
        top = sorted((classes or {}).items(), key=lambda kv: -kv[1])[:4]
        ax.barh(i, r["seconds"], color="tab:green" if r["exact"] else "tab:red")
        label = ", ".join(f"{c}×{n}" for c, n in top)
        ax.text(r["seconds"], i, f"  {label}", va="center", fontsize=7)
    ax.set_yticks(range(len(worst)),
                  [f"{r['group']} {r['rule'][:28]}" for r in worst], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (red: not exact)")
    ax.set_title("hardest rules and the classes that made them hard")
    if title:
        fig.suptitle(title)
    return _save(plt, fig, path)
