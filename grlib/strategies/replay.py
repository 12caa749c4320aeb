"""Experience replay: a buffer of real samples mixed into every batch (notebook 02)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..continual import scenario_logits
from ..data import TaskStream, to_float
from ..memory import Buffer
from .base import Strategy


class ER(Strategy):
    """Experience replay: every step adds a batch of stored real samples of earlier tasks to the current batch."""

    name = "er"

    def __init__(self, solver: nn.Module, buffer: Buffer, new_task_weight: str = "equal", **kwargs):
        super().__init__(solver, **kwargs)
        if new_task_weight not in ("equal", "1/t"):
            raise ValueError(f"new_task_weight must be 'equal' or '1/t', got {new_task_weight!r}")
        self.buffer, self.new_task_weight = buffer, new_task_weight

    def settings(self) -> dict:
        return {**super().settings(), "buffer": repr(self.buffer), "new_task_weight": self.new_task_weight}

    def loss(self, x: Tensor, y: Tensor, stream: TaskStream, t: int) -> Tensor:
        if len(self.buffer) == 0:
            return super().loss(x, y, stream, t)
        x_old, y_old = self.buffer.sample(self.batch_size, self.rng)
        logits = scenario_logits(self.solver(torch.cat([x, to_float(x_old)])), torch.cat([y, y_old]), stream)
        new_loss = F.cross_entropy(logits[: len(y)], y)
        replay_loss = F.cross_entropy(logits[len(y):], y_old)
        w = 1 / (t + 1) if self.new_task_weight == "1/t" else 0.5
        return w * new_loss + (1 - w) * replay_loss  # L = w·L_new + (1 − w)·L_replay

    def after_task(self, stream: TaskStream, t: int) -> None:
        self.buffer.add(stream[t].train_x, stream[t].train_y, self.rng)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])
