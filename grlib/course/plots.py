"""Matplotlib figures the notebooks share: image grids, accuracy matrices, accuracy curves, losses, ablations."""
from __future__ import annotations

import statistics
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from grlib.course.record import by_value


def _axes(ax: Axes | None, size: tuple[float, float] = (5, 4)) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=size)[1]


def image_grid(images: Tensor, nrow: int = 10, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Show images (uint8 0..255, or float in [0, 1]; N×C×H×W) as one grid, as the data is: MNIST's white digits on
    a black background, separated by white lines."""
    images = images.detach().cpu()
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    grid = torch.ones(c, rows * (h + 2), nrow * (w + 2))
    for i, img in enumerate(images.clamp(0, 1)):
        r, col = divmod(i, nrow)
        grid[:, r * (h + 2) + 1:r * (h + 2) + 1 + h, col * (w + 2) + 1:col * (w + 2) + 1 + w] = img
    ax = _axes(ax, (nrow * 0.6, rows * 0.6))
    ax.imshow((grid[0] if c == 1 else grid.permute(1, 2, 0)).numpy(), cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def accuracy_matrix(R: Sequence[Sequence[float]], ax: Axes | None = None, title: str | None = None,
                    task_names: Sequence[str] | None = None) -> Axes:
    """Heatmap of R[i][j]: accuracy (%) on task j (columns) after training task i (rows)."""
    R = torch.as_tensor(R, dtype=torch.float32)
    ax = _axes(ax)
    ax.imshow(R.numpy(), vmin=0, vmax=100, cmap="viridis")
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            ax.text(j, i, f"{R[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="black" if R[i, j] > 60 else "white")
    names = list(task_names) if task_names else [str(k + 1) for k in range(R.shape[1])]
    ax.set_xticks(range(R.shape[1]), names, fontsize=8)
    ax.set_yticks(range(R.shape[0]), [f"after {names[k]}" for k in range(R.shape[0])], fontsize=8)
    ax.set_xlabel("evaluated on task")
    if title:
        ax.set_title(title)
    return ax


def accuracy_curves(curves: Mapping[str, Sequence[float]], ax: Axes | None = None, title: str | None = None) -> Axes:
    """Average accuracy on the tasks seen so far, after each task, one line per method."""
    ax = _axes(ax, (6, 4))
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
    ax.set_xlabel("tasks learned")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("accuracy on tasks seen (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)  # outside the axes, never over a curve
    if title:
        ax.set_title(title)
    return ax


def loss_curve(losses: Sequence[Sequence[float]], ax: Axes | None = None, title: str | None = None,
               smooth: int = 20) -> Axes:
    """Training loss over all steps (moving average of `smooth` steps), a dashed line at each new task."""
    ax = _axes(ax, (6, 3))
    flat = torch.tensor([v for task in losses for v in task], dtype=torch.float32)
    k = max(1, min(smooth, len(flat)))
    smoothed = flat.unfold(0, k, 1).mean(1) if len(flat) >= k else flat
    ax.plot(range(k - 1, k - 1 + len(smoothed)), smoothed)
    step = 0
    for task in losses[:-1]:
        step += len(task)
        ax.axvline(step, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    if title:
        ax.set_title(title)
    return ax


def ablation(record: dict, ax: Axes | None = None, key: str = "A_T", xlabel: str = "validation A_T (%) (dots: seeds)",
             xlim: tuple[float, float] | None = None) -> dict[str, float]:
    """A tuning record's variants as bars of their mean `key` over the seeds, each seed a dot, the course's choice
    (the record's "chosen") in orange, top to bottom in the order they ran; returns {variant: mean}."""
    grid = by_value(record)
    means = {name: statistics.mean(run[key] for run in runs) for name, runs in grid.items()}
    ax = _axes(ax, (8, 0.42 * len(grid) + 1))
    colours = ["tab:orange" if name == record.get("chosen") else "tab:blue" for name in grid]
    ax.bar_label(ax.barh(range(len(grid)), list(means.values()), color=colours), fmt="%.1f", label_type="center",
                 color="white")
    for k, runs in enumerate(grid.values()):
        ax.plot([run[key] for run in runs], [k] * len(runs), "k.", ms=6)  # each seed
    ax.set(yticks=range(len(grid)), yticklabels=list(grid), xlabel=xlabel, ylim=(len(grid) - 0.5, -0.5))
    if xlim:
        ax.set_xlim(xlim)
    return means
