"""An ipywidgets explorer of replay (notebook 09): pick a method and a task, see its replay and accuracy matrix then.

The static figures are drawn either way; the controls are added unless the notebook's `interactive` parameter is
False, as `python -m grlib run` passes it, so that nothing waits for a browser there."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from grlib.course import plots


def draw_state(name: str, R: Sequence[Sequence[float]], samples: Sequence[Tensor] | None, task: int,
               task_names: Sequence[str]) -> None:
    """One method after `task` (1-based): what it would replay next, and its accuracy matrix so far."""
    fig, (ax_img, ax_R) = plt.subplots(1, 2, figsize=(11, 4))
    if samples:
        shown = min(task, len(samples))  # not trained on the last task, the generator is as it was one task earlier
        untrained = f" (not trained on task {task}, the last)" if shown < task else ""
        plots.image_grid(samples[shown - 1][:50], nrow=10, ax=ax_img,
                         title=f"{name}: generated after task {shown}{untrained}")
    else:
        ax_img.text(0.5, 0.5, f"{name} replays no generated samples", ha="center", va="center")
        ax_img.set_axis_off()
    shown = [[v if i < task else math.nan for v in row] for i, row in enumerate(R)]
    plots.accuracy_matrix(torch.tensor(shown).nan_to_num(0.0), ax=ax_R, title=f"accuracy matrix up to task {task}",
                          task_names=task_names)
    plt.show()


def replay_explorer(runs: Mapping[str, dict], task_names: Sequence[str], interactive: bool = True) -> None:
    """`runs`: method -> {"R": accuracy matrix, "samples": generated images after each task but the last, or None}.

    Draws every method after its last task; with `interactive`, adds a method menu and a task slider."""
    last = len(task_names)
    for name, run in runs.items():
        draw_state(name, run["R"], run.get("samples"), last, task_names)
    if not interactive:
        return
    import ipywidgets

    ipywidgets.interact(lambda method, task: draw_state(method, runs[method]["R"], runs[method].get("samples"), task,
                                                        task_names),
                        method=ipywidgets.Dropdown(options=list(runs), description="method"),
                        task=ipywidgets.IntSlider(value=last, min=1, max=last, description="after task"))
