"""The interface every method shares (`Strategy`), fine-tuning and joint training (notebook 01)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..continual import scenario_logits
from ..data import TaskStream, batch_indices, to_float


class Strategy:
    """The interface every method shares; on its own it is plain fine-tuning.

    `learn` runs `iters` Adam steps on task t; a method changes what a step trains on by
    overriding `training_data` (which real samples), `loss` (what is minimised) and the
    hooks `before_task` / `after_step` / `after_task`; `state_dict` must hold all it learns."""

    name = "strategy"

    def __init__(self, solver: nn.Module, iters: int = 500, batch_size: int = 128, lr: float = 1e-3, seed: int = 0):
        if iters < 1 or batch_size < 1 or lr <= 0:
            raise ValueError(f"iters and batch_size must be positive and lr > 0; got {iters}, {batch_size}, {lr}")
        self.solver, self.iters, self.batch_size, self.lr, self.seed = solver, iters, batch_size, lr, seed
        self.device = next(solver.parameters()).device
        self.rng = torch.Generator(device=self.device).manual_seed(seed)  # reseeded per task in `learn`
        self.progress = True

    def settings(self) -> dict:
        """Everything that changes what is learned: the cache key of `grlib.continual.run`."""
        return {"method": self.name, "solver": repr(self.solver), "iters": self.iters,
                "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed}

    def training_data(self, stream: TaskStream, t: int) -> tuple[Tensor, Tensor]:
        return stream[t].train_x, stream[t].train_y

    def loss(self, x: Tensor, y: Tensor, stream: TaskStream, t: int) -> Tensor:
        """Cross-entropy on the current batch: L = -log p_θ(y | x)."""
        return F.cross_entropy(scenario_logits(self.solver(x), y, stream), y)

    def before_task(self, stream: TaskStream, t: int) -> None: ...

    def after_step(self) -> None: ...

    def after_task(self, stream: TaskStream, t: int) -> None: ...

    def learn(self, stream: TaskStream, t: int, progress: bool = True,
              monitor: Callable[[int], None] | None = None) -> list[float]:
        """Train on task t; returns the loss of every step. `monitor(step)` is called before each step."""
        torch.manual_seed(self.seed * 1000 + t)  # each task reproducible on its own, so cached runs resume exactly
        self.rng = torch.Generator(device=self.device).manual_seed(self.seed * 1000 + t)
        self.progress = progress
        self.before_task(stream, t)
        x_all, y_all = self.training_data(stream, t)
        optimizer = torch.optim.Adam(self.solver.parameters(), lr=self.lr)
        losses = []
        for step in tqdm(range(self.iters), desc=f"{self.name} task {t + 1}/{len(stream)}", disable=not progress,
                         leave=False):
            if monitor is not None:
                monitor(step)
            idx = batch_indices(len(y_all), self.batch_size, self.rng, self.device)
            loss = self.loss(to_float(x_all[idx]), y_all[idx], stream, t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.after_step()
            losses.append(loss.item())
        self.after_task(stream, t)
        return losses

    def state_dict(self) -> dict:
        return {"solver": self.solver.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.solver.load_state_dict(state["solver"])


class Finetune(Strategy):
    """Fine-tuning: train on each new task as it comes, nothing else (the lower bound)."""

    name = "finetune"


class Joint(Strategy):
    """The upper bound: at task t, train on all data of tasks 0..t together (it breaks the rules of continual learning)."""

    name = "joint"

    def training_data(self, stream: TaskStream, t: int) -> tuple[Tensor, Tensor]:
        return (torch.cat([task.train_x for task in stream.tasks[: t + 1]]),
                torch.cat([task.train_y for task in stream.tasks[: t + 1]]))
