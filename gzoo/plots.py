"""Every picture gzoo writes: training curves, simulation histories (PNG montage or GIF),
atlases.

matplotlib is imported lazily with the non-interactive ``Agg`` backend, so nothing here needs a
display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from gzoo.infer import NetworkInference

__all__ = [
    "GIF_FRAME_BYTES",
    "MAX_GIF_FRAMES",
    "MAX_PICTURE_SIDE",
    "frame_times",
    "picture_factor",
    "picture_frame",
    "save_atlas_plots",
    "save_history_gif",
    "save_history_png",
    "save_model_explanation",
    "save_rollout_comparison",
    "save_simulation",
    "save_training_curve",
    "simulation_frames",
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


#: Pictures show at most this many cells per side: a larger board is max-pooled (a block with
#: a live cell shows alive), since a frame of a montage is about 200 pixels wide anyway.
MAX_PICTURE_SIDE = 512
#: A GIF holds at most this many frames (evenly spaced): matplotlib keeps every frame in memory.
MAX_GIF_FRAMES = 400
#: Memory of one GIF frame while matplotlib writes it (a 4×4.3-inch RGBA figure, rounded up).
GIF_FRAME_BYTES = 1 << 20


def picture_factor(height: int, width: int, max_side: int = MAX_PICTURE_SIDE) -> int:
    """The smallest block side ``f`` with ``⌈H/f⌉, ⌈W/f⌉ ≤ max_side``: 1 for small boards."""
    return max(1, -(-max(height, width) // max_side))


def picture_frame(board: torch.Tensor, max_side: int = MAX_PICTURE_SIDE) -> torch.Tensor:
    """A 0/1 ``[..., H, W]`` board as a picture of at most ``max_side`` cells per side, uint8 on
    the CPU: max-pooled over ``f×f`` blocks (:func:`picture_factor`; the torus is cut, not
    wrapped, at the edge), so a block shows alive when any of its cells is."""
    x = torch.as_tensor(board).to(torch.uint8)
    f = picture_factor(x.shape[-2], x.shape[-1], max_side)
    if f > 1:
        lead = x.shape[:-2]
        flat = x.reshape(-1, 1, *x.shape[-2:]).float()
        x = torch.nn.functional.max_pool2d(flat, f, ceil_mode=True).to(torch.uint8)
        x = x.reshape(*lead, *x.shape[-2:])
    return x.cpu()


def frame_times(steps: int, n_frames: int) -> list[int]:
    """``n_frames`` steps evenly spaced over ``0..steps`` (all of them if there are fewer),
    first and last included (one frame: the last step)."""
    if steps < 0 or n_frames < 1:
        raise ValueError(f"need steps ≥ 0 and n_frames ≥ 1, got {steps} and {n_frames}")
    if steps + 1 <= n_frames:
        return list(range(steps + 1))
    if n_frames == 1:
        return [steps]
    return sorted({round(i * steps / (n_frames - 1)) for i in range(n_frames)})


def simulation_frames(
    board: torch.Tensor, advance: Callable[[torch.Tensor], torch.Tensor], steps: int,
    times: Sequence[int], *, max_side: int = MAX_PICTURE_SIDE, progress: bool | None = False,
    label: str = "simulate",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``board ← advance(board)`` for ``steps`` steps and keep only the pictures
    (:func:`picture_frame`) of the steps in ``times``: returns those ``[len(times), h, w]``
    uint8 and the board after the last step, in memory ``O(len(times)·max_side²)`` however
    long the run. ``progress`` as in :class:`gzoo._progress.Progress` (default silent)."""
    from gzoo._progress import Progress

    wanted = sorted(set(times))
    if not wanted or wanted[0] < 0 or wanted[-1] > steps:
        raise ValueError(f"times must lie in 0..{steps}, got {list(times)}")
    kept = {0: picture_frame(board, max_side)} if wanted[0] == 0 else {}
    with Progress(label, steps, enabled=progress) as bar:
        for t in range(1, steps + 1):
            board = advance(board)
            if t in wanted:
                kept[t] = picture_frame(board, max_side)
            bar.update(t, "steps")
    return torch.stack([kept[t] for t in wanted]), board


def _history(history: torch.Tensor) -> torch.Tensor:
    h = torch.as_tensor(history)
    if h.dim() != 3:
        raise ValueError(f"history must be [T, H, W], got shape {list(h.shape)}")
    return h


def _frames(history: torch.Tensor) -> torch.Tensor:
    """A ``[T, H, W]`` history as pictures (:func:`picture_frame`)."""
    return picture_frame(_history(history))


def _labels(n: int, times: Sequence[int] | None) -> list[int]:
    if times is None:
        return list(range(n))
    if len(times) != n:
        raise ValueError(f"times gives {len(times)} steps for {n} frames")
    return list(times)


def save_history_png(
    history: torch.Tensor, path: str | os.PathLike[str], *, n_frames: int = 8, title: str = "",
    times: Sequence[int] | None = None,
) -> Path:
    """A montage of ``n_frames`` evenly spaced frames of a ``[T, H, W]`` history, side by side
    (``times``: the step of each frame, default ``0..T-1``). Boards larger than
    :data:`MAX_PICTURE_SIDE` are max-pooled (:func:`picture_frame`)."""
    plt = _pyplot()
    h = _frames(history)
    steps = _labels(h.shape[0], times)
    idx = frame_times(h.shape[0] - 1, n_frames)
    cols = len(idx)
    fig, axes = plt.subplots(1, cols, figsize=(1.8 * cols, 2.1), squeeze=False)
    for ax, i in zip(axes[0], idx, strict=True):
        ax.imshow(h[i].numpy(), cmap="binary", interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(f"t = {steps[i]}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(plt, fig, path)


def save_history_gif(
    history: torch.Tensor, path: str | os.PathLike[str], *, fps: int = 10, title: str = "",
    times: Sequence[int] | None = None, progress: bool | None = False,
) -> Path:
    """An animated GIF of a ``[T, H, W]`` history (matplotlib's PillowWriter; needs pillow).

    ``fps`` is 1..100 (GIF frame delays are whole hundredths of a second); ``times`` labels the
    frames (default ``0..T-1``); ``progress`` reports the frames written (see
    :class:`gzoo._progress.Progress`)."""
    from gzoo._checks import check_int
    from gzoo._progress import Progress

    check_int("fps", fps, 1, 100)
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise RuntimeError("writing a GIF needs pillow (pip install pillow); "
                           "or write a .png instead") from None
    plt = _pyplot()
    from matplotlib.animation import FuncAnimation, PillowWriter

    h = _frames(history)
    steps = _labels(h.shape[0], times)
    fig, ax = plt.subplots(figsize=(4, 4.3))
    im = ax.imshow(h[0].numpy(), cmap="binary", interpolation="nearest", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    label = ax.set_title(f"{title} t = {steps[0]}".strip(), fontsize=9)

    def update(i: int):
        im.set_data(h[i].numpy())
        label.set_text(f"{title} t = {steps[i]}".strip())
        return (im, label)

    anim = FuncAnimation(fig, update, frames=h.shape[0], blit=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Progress("gif", h.shape[0], enabled=progress) as bar:
        anim.save(path, writer=PillowWriter(fps=fps),
                  progress_callback=lambda i, n: bar.update(i + 1, f"frames → {path.name}"))
    plt.close(fig)
    return path


def save_simulation(history: torch.Tensor, path: str | os.PathLike[str], *, title: str = "",
                    n_frames: int = 8, fps: int = 10, times: Sequence[int] | None = None,
                    progress: bool | None = False) -> Path:
    """A GIF if ``path`` ends in ``.gif``, a PNG montage if in ``.png``; else ``ValueError``.
    ``times`` gives the step of each frame of ``history`` (default ``0..T-1``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return save_history_gif(history, path, fps=fps, title=title, times=times,
                                progress=progress)
    if suffix == ".png":
        return save_history_png(history, path, n_frames=n_frames, title=title, times=times)
    raise ValueError(f"output must end in .png or .gif, got {os.fspath(path)!r}")


def _rollout_rows(axes, net_history: torch.Tensor, rule_history: torch.Tensor,
                  idx: list[int]) -> None:
    """Network frames on the top row, the rule's below, disagreeing cells in red on both (a
    pooled picture block is red when any of its cells disagree)."""
    import numpy as np

    for col, i in enumerate(idx):
        diff = picture_frame(net_history[i] != rule_history[i]).numpy().astype(bool)
        for row, (h, label) in enumerate(((net_history, "network"), (rule_history, "rule"))):
            img = np.stack([1.0 - picture_frame(h[i]).numpy()] * 3, -1)
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
    net, ref = _history(net_history), _history(rule_history)
    if net.shape != ref.shape:
        raise ValueError(f"histories differ in shape: {list(net.shape)} vs {list(ref.shape)}")
    idx = frame_times(net.shape[0] - 1, n_frames)
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

    net, ref = _history(net_history), _history(rule_history)
    idx = frame_times(net.shape[0] - 1, 5)
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
