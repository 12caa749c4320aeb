"""Incremental moment matching, IMM (Lee et al., NeurIPS 2017): train one network per task, then merge them
(notebook 01)."""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from grlib.continual.data import TaskStream
from grlib.continual.scenarios import scenario_logits
from grlib.continual.strategies.base import Strategy
from grlib.continual.strategies.regularization import copy_weights, fisher_diagonal


@dataclass(eq=False, repr=False)
class IMM(Strategy):
    """IMM: each task k trains its own network θ_k, started from θ_{k−1} (weight-transfer) and held near it by
    λ‖θ − θ_{k−1}‖² (L2-transfer); with `drop_transfer` = p > 0 each step uses θ̂ = θ_{k−1} + m ⊙ (θ − θ_{k−1}) /
    (1 − p), m_i ~ Bernoulli(1 − p). After every task the networks 1..t are merged, each with weight α_k = 1/t:
    * mean-IMM: θ* = Σ_k α_k θ_k;
    * mode-IMM: θ*_i = Σ_k α_k F_{k,i} θ_{k,i} / Σ_k α_k F_{k,i}, F_k the diagonal Fisher information of θ_k
      (the mode of the product of the tasks' Laplace approximations)."""

    name: ClassVar[str] = "imm"
    _: KW_ONLY
    merge: str = "mode"
    l2_transfer: float = 0.0
    drop_transfer: float = 0.0
    fisher_samples: int = 1000
    fisher_floor: float = 1e-8  # added to every F_k, so a weight no task cares about gets the plain mean

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.merge not in ("mean", "mode") or self.l2_transfer < 0 or not 0 <= self.drop_transfer < 1 \
                or self.fisher_samples < 1 or self.fisher_floor <= 0:
            raise ValueError(f"IMM needs merge 'mean' or 'mode', l2_transfer ≥ 0, 0 ≤ drop_transfer < 1, "
                             f"fisher_samples ≥ 1 and fisher_floor > 0; got {self.merge!r}, {self.l2_transfer}, "
                             f"{self.drop_transfer}, {self.fisher_samples}, {self.fisher_floor}")
        self.task_weights: dict[str, Tensor] = {}     # θ_{t−1}: the last task's own network, before merging
        self.weighted_sum: dict[str, Tensor] = {}     # Σ_k F_k θ_k (mode) or Σ_k θ_k (mean)
        self.weight_total: dict[str, Tensor] = {}     # Σ_k F_k (mode) or the number of tasks (mean)

    def before_task(self, stream: TaskStream, t: int) -> None:
        if self.task_weights:  # weight-transfer: continue from θ_{t−1}, not from the merged network
            with torch.no_grad():
                for n, p in self.solver.named_parameters():
                    p.copy_(self.task_weights[n])

    def dropped_weights(self) -> dict[str, Tensor]:
        """θ̂ = θ_{k−1} + m ⊙ (θ − θ_{k−1}) / (1 − p), a fresh Bernoulli(1 − p) mask m for every weight."""
        p = self.drop_transfer
        return {n: self.task_weights[n] + (torch.rand(w.shape, generator=self.rng, device=self.device) >= p)
                * (w - self.task_weights[n]) / (1 - p) for n, w in self.solver.named_parameters()}

    def loss(self, x: Tensor, y: Tensor, stream: TaskStream, t: int) -> Tensor:
        if self.task_weights and self.drop_transfer > 0:
            logits = torch.func.functional_call(self.solver, self.dropped_weights(), (x,))
            loss = F.cross_entropy(scenario_logits(logits, y, stream), y)
        else:
            loss = super().loss(x, y, stream, t)
        if not self.task_weights or self.l2_transfer == 0:
            return loss
        distance = sum((p - self.task_weights[n]).pow(2).sum() for n, p in self.solver.named_parameters())
        return loss + self.l2_transfer * distance  # λ‖θ − θ_{t−1}‖²

    def after_task(self, stream: TaskStream, t: int) -> None:
        self.task_weights = copy_weights(self.solver)
        if self.merge == "mode":
            task = stream[t]
            idx = torch.randperm(len(task.train_y), generator=self.rng, device=self.device)[: self.fisher_samples]
            importance = {n: f + self.fisher_floor for n, f in fisher_diagonal(self.solver, task.train_x[idx],
                                                                               self.rng).items()}
        else:
            importance = {n: torch.ones_like(p) for n, p in self.task_weights.items()}
        for n, theta in self.task_weights.items():
            self.weighted_sum[n] = self.weighted_sum.get(n, 0) + importance[n] * theta
            self.weight_total[n] = self.weight_total.get(n, 0) + importance[n]
        with torch.no_grad():  # equal α_k cancel: θ* = Σ_k F_k θ_k / Σ_k F_k (with F = 1, the mean)
            for n, p in self.solver.named_parameters():
                p.copy_(self.weighted_sum[n] / self.weight_total[n])

    def state_dict(self) -> dict:
        return {**super().state_dict(), "task_weights": self.task_weights, "weighted_sum": self.weighted_sum,
                "weight_total": self.weight_total}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.task_weights, self.weighted_sum = state["task_weights"], state["weighted_sum"]
        self.weight_total = state["weight_total"]
