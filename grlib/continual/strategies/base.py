"""The interface every method shares (`Strategy`), fine-tuning and joint training (notebook 01)."""
from __future__ import annotations

import copy
import math
from dataclasses import KW_ONLY, dataclass, fields
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grlib.core.checkpoints import key_of
from grlib.core.guards import check_loss, check_lr
from grlib.core.progress import bar
from grlib.core.rng import seeded
from grlib.core.threads import paced
from grlib.continual.data import TaskStream, batch_indices, to_float
from grlib.continual.scenarios import scenario_logits
from grlib.models.nets import adam


@dataclass(eq=False, repr=False)
class Strategy:
    """The interface every method shares; on its own it is plain fine-tuning.

    A strategy is a dataclass: its fields are its hyperparameters, and the checkpoint cache key (`settings`) is
    derived from all of them, so none can be left out of it. `learn` runs `iters` Adam steps on task t; a method
    changes what a step trains on by overriding `training_data` (which real samples), `loss` (what is minimised)
    and the hooks `before_task` / `after_step` / `after_task`; `state_dict` must hold all it learns."""

    name: ClassVar[str] = "strategy"
    solver: nn.Module
    _: KW_ONLY
    iters: int = 500
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [f.name for f in fields(self) if isinstance(getattr(self, f.name), float)
               and not math.isfinite(getattr(self, f.name))]
        if bad:
            raise ValueError(f"{type(self).__name__}: {', '.join(bad)} must be a finite number")
        if self.iters < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"iters and batch_size must be positive and lr > 0; "
                             f"got {self.iters}, {self.batch_size}, {self.lr}")
        check_lr(self.lr, type(self).__name__)
        self.device = next(self.solver.parameters()).device
        self.rng = torch.Generator(device=self.device).manual_seed(self.seed)  # reseeded per task in `learn`
        self.progress = True
        # computed now, from the initial state: training changes the weights, not the experiment. The class, not only
        # the name, since a subclass that keeps the name (a learner's variant) trains differently
        self._settings = {"method": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
                          **{f.name: key_of(getattr(self, f.name)) for f in fields(self)}}

    def settings(self) -> dict:
        """Every hyperparameter (field) of the strategy: the cache key of `grlib.continual.run`."""
        return self._settings

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
        """Train on task t; returns the loss of every step. `monitor(step)` is called before each step.

        Each task's randomness depends on the seed and t alone, so a run resumed from the cache continues exactly."""
        with seeded(self.seed * 1000 + t):
            self.rng = torch.Generator(device=self.device).manual_seed(self.seed * 1000 + t)
            self.progress = progress
            self.before_task(stream, t)
            x_all, y_all = self.training_data(stream, t)
            optimizer = adam(self.solver.parameters(), lr=self.lr)
            desc = f"{self.name} task {t + 1}/{len(stream)}"
            hint = f"lower the learning rate (now {self.lr:g}) or a penalty's strength"
            losses = []
            for step in paced(bar(range(self.iters), desc=desc, disable=not progress)):
                if monitor is not None:
                    monitor(step)
                idx = batch_indices(len(y_all), self.batch_size, self.rng, self.device)
                loss = self.loss(to_float(x_all[idx]), y_all[idx], stream, t)
                losses.append(loss.item())
                check_loss(losses[-1], desc, step, hint)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.after_step()
            check_loss(self.last_loss(x_all[idx], y_all[idx], stream), desc, self.iters, hint)
            self.after_task(stream, t)
        return losses

    @torch.no_grad()
    def last_loss(self, x: Tensor, y: Tensor, stream: TaskStream) -> float:
        """The solver's cross-entropy on a batch after the last step: each loss is checked before its step, so what
        the last step did is checked here, before anything uses or caches its weights. In eval mode, so that it
        changes nothing (batch-norm statistics) and draws nothing (dropout)."""
        was_training = self.solver.training
        self.solver.eval()
        loss = F.cross_entropy(scenario_logits(self.solver(to_float(x)), y, stream), y).item()
        self.solver.train(was_training)
        return loss

    def state_dict(self) -> dict:
        return {"solver": self.solver.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict()`. The state is copied first, as nn.Module.load_state_dict copies, so this
        strategy and the one the state came from never change each other's records (pools, importances, ...)."""
        self.restore(copy.deepcopy(state))

    def restore(self, state: dict) -> None:
        """Take over a state that this strategy alone holds (a subclass restores its own entries after these)."""
        self.solver.load_state_dict(state["solver"])


@dataclass(eq=False, repr=False)
class Finetune(Strategy):
    """Fine-tuning: train on each new task as it comes, nothing else (the lower bound)."""

    name: ClassVar[str] = "finetune"


@dataclass(eq=False, repr=False)
class Joint(Strategy):
    """The upper bound: at task t, train on all data of tasks 0..t together (it breaks the rules of continual learning)."""

    name: ClassVar[str] = "joint"

    def training_data(self, stream: TaskStream, t: int) -> tuple[Tensor, Tensor]:
        return (torch.cat([task.train_x for task in stream.tasks[: t + 1]]),
                torch.cat([task.train_y for task in stream.tasks[: t + 1]]))
