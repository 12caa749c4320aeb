"""Replay, the data perspective: old samples mixed into every batch. `Replay` is the mixing loss shared by
experience replay (stored real samples, notebook 02) and generative replay (`generative.py`, notebooks 04, 05 and 07)."""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from grlib.continual.data import TaskStream, to_float
from grlib.continual.memory import Buffer
from grlib.continual.scenarios import scenario_logits
from grlib.continual.strategies.base import Strategy


def distillation(logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T² · KL(softmax(z_teacher / T) ‖ softmax(z / T)), averaged over the batch (Hinton et al. 2015). Outputs masked
    out for a sample (−inf in both, task-IL) contribute nothing."""
    p = F.softmax(teacher_logits / temperature, 1)
    log_q = F.log_softmax(logits / temperature, 1).masked_fill(p == 0, 0.0)
    return temperature ** 2 * F.kl_div(log_q, p, reduction="batchmean")


@dataclass(eq=False, repr=False)
class Replay(Strategy):
    """Every step adds a batch of old samples to the current batch and minimises L = w·L_new + (1 − w)·L_replay,
    with w = 1/2 ("equal"), w = 1/t ("1/t": the new task counts as one of the t tasks seen) or a fixed number in
    (0, 1). Both halves see the scenario's outputs (in task-IL, each sample only its own task's classes).

    Subclasses say what is replayed (`replay_batch`) and may change how it is fitted (`replay_loss`)."""

    name: ClassVar[str] = "replay"
    _: KW_ONLY
    new_task_weight: str | float = "equal"

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.new_task_weight
        if w not in ("equal", "1/t") and not (isinstance(w, float) and 0 < w < 1):
            raise ValueError(f"new_task_weight must be 'equal', '1/t' or a number between 0 and 1, got {w!r}")
        if w == "equal":  # w = 1/2, as a number: "equal" and 0.5 train the same and share one checkpoint
            self.new_task_weight = 0.5

    def replay_batch(self, n: int) -> tuple[Tensor, Tensor, Tensor | None] | None:
        """n replayed images in [0, 1], their labels and the old solver's logits on them (None where a method does
        not keep them); None while there is nothing to replay."""
        raise NotImplementedError

    def replay_loss(self, logits: Tensor, y_old: Tensor, teacher: Tensor | None) -> Tensor:
        """L_replay on the replayed half of the batch (scenario-masked logits): cross-entropy with the labels."""
        return F.cross_entropy(logits, y_old)

    def loss(self, x: Tensor, y: Tensor, stream: TaskStream, t: int) -> Tensor:
        replay = self.replay_batch(self.batch_size)
        if replay is None:
            return super().loss(x, y, stream, t)
        x_old, y_old, teacher = replay
        logits = scenario_logits(self.solver(torch.cat([x, x_old])), torch.cat([y, y_old]), stream)
        new_loss = F.cross_entropy(logits[: len(y)], y)
        teacher = None if teacher is None else scenario_logits(teacher, y_old, stream)
        replay_loss = self.replay_loss(logits[len(y):], y_old, teacher)
        w = 1 / (t + 1) if self.new_task_weight == "1/t" else self.new_task_weight
        return w * new_loss + (1 - w) * replay_loss  # L = w·L_new + (1 − w)·L_replay


@dataclass(eq=False, repr=False)
class ER(Replay):
    """Experience replay: the old samples are real ones, kept in a memory buffer."""

    name: ClassVar[str] = "er"
    buffer: Buffer

    def replay_batch(self, n: int) -> tuple[Tensor, Tensor, None] | None:
        if len(self.buffer) == 0:
            return None
        x_old, y_old = self.buffer.sample(n, self.rng)
        return to_float(x_old), y_old, None

    def after_task(self, stream: TaskStream, t: int) -> None:
        self.buffer.add(stream[t].train_x, stream[t].train_y, self.rng)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "buffer": self.buffer.state_dict()}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.buffer.load_state_dict(state["buffer"])
