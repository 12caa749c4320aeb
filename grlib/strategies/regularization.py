"""The model perspective: penalties on moving the weights that mattered, EWC and SI (notebook 01)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import TaskStream, to_float
from .base import Strategy


def fisher_diagonal(solver: nn.Module, x: Tensor, generator: torch.Generator, chunk: int = 128) -> dict[str, Tensor]:
    """Diagonal Fisher information F_i = E_x E_{y~p_θ(y|x)} [(∂ log p_θ(y|x) / ∂θ_i)²], one sampled y per image."""
    params = {name: p.detach() for name, p in solver.named_parameters()}

    def log_likelihood(p: dict[str, Tensor], image: Tensor, label: Tensor) -> Tensor:
        logits = torch.func.functional_call(solver, p, (image.unsqueeze(0),))
        return -F.cross_entropy(logits, label.unsqueeze(0))  # log p_θ(y | x)

    per_sample_grad = torch.func.vmap(torch.func.grad(log_likelihood), in_dims=(None, 0, 0))
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    for i in range(0, len(x), chunk):
        images = to_float(x[i:i + chunk])
        with torch.no_grad():
            probs = torch.softmax(solver(images), -1)
        labels = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # y ~ p_θ(y | x)
        for name, g in per_sample_grad(params, images, labels).items():
            fisher[name] += g.pow(2).sum(0) / len(x)
    return fisher


class EWC(Strategy):
    """Online EWC (Kirkpatrick et al. 2017; Schwarz et al. 2018): hold each weight near its value after the last
    task, in proportion to its Fisher information: L = L_t + (λ/2) Σ_i F̃_i (θ_i − θ*_i)²."""

    name = "ewc"

    def __init__(self, solver: nn.Module, strength: float, decay: float = 1.0, fisher_samples: int = 1000, **kwargs):
        super().__init__(solver, **kwargs)
        if strength < 0 or not 0 <= decay <= 1 or fisher_samples < 1:
            raise ValueError("EWC needs strength λ ≥ 0, decay γ in [0, 1] and fisher_samples ≥ 1")
        self.strength, self.decay, self.fisher_samples = strength, decay, fisher_samples
        self.fisher: dict[str, Tensor] = {}   # F̃, accumulated over tasks
        self.anchor: dict[str, Tensor] = {}   # θ*, the weights after the last task

    def settings(self) -> dict:
        return {**super().settings(), "strength": self.strength, "decay": self.decay,
                "fisher_samples": self.fisher_samples}

    def loss(self, x: Tensor, y: Tensor, stream: TaskStream, t: int) -> Tensor:
        loss = super().loss(x, y, stream, t)
        if not self.fisher:
            return loss
        penalty = sum((self.fisher[n] * (p - self.anchor[n]).pow(2)).sum() for n, p in self.solver.named_parameters())
        return loss + self.strength / 2 * penalty  # L_t + (λ/2) Σ F̃_i (θ_i − θ*_i)²

    def after_task(self, stream: TaskStream, t: int) -> None:
        task = stream[t]
        idx = torch.randperm(len(task.train_y), generator=self.rng, device=self.device)[: self.fisher_samples]
        new = fisher_diagonal(self.solver, task.train_x[idx], self.rng)
        # online EWC: F̃ ← γ F̃ + F_t, one penalty anchored at the latest weights
        self.fisher = {n: self.decay * self.fisher.get(n, 0) + f for n, f in new.items()}
        self.anchor = {n: p.detach().clone() for n, p in self.solver.named_parameters()}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "fisher": self.fisher, "anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.fisher, self.anchor = state["fisher"], state["anchor"]


class SI(Strategy):
    """Synaptic Intelligence (Zenke et al. 2017): each weight's importance Ω_i is its share of the loss decrease
    along the training path; L = L_t + c Σ_i Ω_i (θ_i − θ̃_i)²."""

    name = "si"

    def __init__(self, solver: nn.Module, strength: float, damping: float = 0.1, **kwargs):
        super().__init__(solver, **kwargs)
        if strength < 0 or damping <= 0:
            raise ValueError("SI needs strength c ≥ 0 and damping ξ > 0")
        self.strength, self.damping = strength, damping
        params = dict(self.solver.named_parameters())
        self.importance = {n: torch.zeros_like(p) for n, p in params.items()}       # Ω
        self.anchor = {n: p.detach().clone() for n, p in params.items()}            # θ̃: weights at the task's start
        self.path: dict[str, Tensor] = {}                                            # ω, this task's path integral
        self.previous: dict[str, Tensor] = {}                                        # θ before the current step

    def settings(self) -> dict:
        return {**super().settings(), "strength": self.strength, "damping": self.damping}

    def loss(self, x: Tensor, y: Tensor, stream: TaskStream, t: int) -> Tensor:
        penalty = sum((self.importance[n] * (p - self.anchor[n]).pow(2)).sum() for n, p in self.solver.named_parameters())
        return super().loss(x, y, stream, t) + self.strength * penalty  # L_t + c Σ Ω_i (θ_i − θ̃_i)²

    def before_task(self, stream: TaskStream, t: int) -> None:
        self.path = {n: torch.zeros_like(p) for n, p in self.solver.named_parameters()}
        self.previous = {n: p.detach().clone() for n, p in self.solver.named_parameters()}

    @torch.no_grad()
    def after_step(self) -> None:
        for n, p in self.solver.named_parameters():
            # gradient of L_t alone: the step's gradient minus the penalty's, 2cΩ(θ − θ̃), at the pre-step weights
            task_grad = p.grad - 2 * self.strength * self.importance[n] * (self.previous[n] - self.anchor[n])
            self.path[n] -= task_grad * (p - self.previous[n])  # ω_i += −g_i Δθ_i
            self.previous[n] = p.detach().clone()

    @torch.no_grad()
    def after_task(self, stream: TaskStream, t: int) -> None:
        for n, p in self.solver.named_parameters():
            self.importance[n] += self.path[n] / ((p - self.anchor[n]).pow(2) + self.damping)  # Ω += ω / (Δθ² + ξ)
            self.anchor[n] = p.detach().clone()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "importance": self.importance, "anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.importance, self.anchor = state["importance"], state["anchor"]
