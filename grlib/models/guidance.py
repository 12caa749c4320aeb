"""Classifier guidance (notebook 06): pull every denoising step towards a class, either through a classifier of
clean images reading the denoised estimate x̂₀ (the continual learner's own solver, as notebook 07's DDGR replays)
or through a classifier trained on noisy images x_t (Dhariwal & Nichol 2021). The samplers that use a guide are in
`grlib.models.samplers`."""
from __future__ import annotations

from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grlib.core.progress import bar
from grlib.core.threads import paced
from grlib.models.unet import timestep_embedding


class DiffusionModel(Protocol):
    """What guides and samplers read from a diffusion model, `grlib.models.diffusion.Diffusion`: described here
    rather than imported, so that diffusion.py can import the guides and samplers without a cycle."""

    T: int
    betas: Tensor  # β_t
    alpha_bar: Tensor  # ᾱ_t
    device: torch.device
    model: nn.Module  # the network, with its image_shape

    @property
    def conditional(self) -> bool: ...

    def snr(self, t: Tensor | int) -> Tensor: ...

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor: ...

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor: ...

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor: ...

    def predict(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]: ...


class Guide(Protocol):
    """Classifier guidance: given the step's (x̂₀, ε̂), return them shifted towards the classes y."""

    def __call__(self, ddpm: DiffusionModel, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor,
                 y: Tensor) -> tuple[Tensor, Tensor]: ...


def log_prob_gradient(classify: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> Tensor:
    """∇_x Σ_i log p(y_i | x_i) for a classifier that maps x to logits."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        log_p = F.log_softmax(classify(x), 1).gather(1, y[:, None]).sum()
        grad, = torch.autograd.grad(log_p, x)
    return grad


class SolverGuide:
    """Guidance by a classifier of clean images in [0, 1] (the continual learner's own solver), which reads the
    denoised estimate: x̂₀ ← x̂₀ + s ∇_{x̂₀} log p_S(y | x̂₀), then ε̂ follows from the new x̂₀."""

    def __init__(self, solver: nn.Module, scale: float):
        self.solver, self.scale = solver, scale

    def __call__(self, ddpm: DiffusionModel, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor,
                 y: Tensor) -> tuple[Tensor, Tensor]:
        if self.scale == 0:
            return x0, eps
        x0 = (x0 + self.scale * log_prob_gradient(lambda x: self.solver((x + 1) / 2), x0, y)).clamp(-1, 1)
        return x0, ddpm.eps_from_x0(x_t, t, x0)


class NoisyClassifierGuide:
    """Guidance by a classifier of noisy images p_φ(y | x_t, t) (Dhariwal & Nichol 2021):
    ε̂ ← ε̂ − s √(1 − ᾱ_t) ∇_{x_t} log p_φ(y | x_t, t), then x̂₀ follows from the new ε̂."""

    def __init__(self, classifier: nn.Module, scale: float):
        self.classifier, self.scale = classifier, scale

    def __call__(self, ddpm: DiffusionModel, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor,
                 y: Tensor) -> tuple[Tensor, Tensor]:
        if self.scale == 0:
            return x0, eps
        ab = ddpm.alpha_bar[t].view(-1, 1, 1, 1)
        eps = eps - self.scale * (1 - ab).sqrt() * log_prob_gradient(lambda x: self.classifier(x, t), x_t, y)
        return ddpm.x0_from_eps(x_t, t, eps).clamp(-1, 1), eps


class NoisyClassifier(nn.Module):
    """p_φ(y | x_t, t): a small CNN that also reads the step t, for guidance on noisy images (in [-1, 1])."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), n_classes: int = 10, ch: int = 32):
        super().__init__()
        c, h, w = image_shape
        self.ch = ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, ch), nn.SiLU())
        self.conv1 = nn.Conv2d(c, ch, 3, padding=1)
        self.rest = nn.Sequential(nn.SiLU(), nn.MaxPool2d(2), nn.Conv2d(ch, 2 * ch, 3, padding=1), nn.SiLU(),
                                  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * ch * (h // 4) * (w // 4), n_classes))

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.rest(self.conv1(x_t) + self.time_mlp(timestep_embedding(t, self.ch))[:, :, None, None])


def train_noisy_classifier(classifier: NoisyClassifier, ddpm: DiffusionModel,
                           sample_labelled: Callable[[int], tuple[Tensor, Tensor]], iters: int, batch_size: int = 128,
                           lr: float = 1e-3, progress: bool = True) -> list[float]:
    """Cross-entropy of p_φ(y | x_t, t) on images noised to a uniformly drawn step t by the forward process."""
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    losses = []
    for _ in paced(bar(range(iters), desc="noisy classifier", disable=not progress)):
        x0, y = sample_labelled(batch_size)
        t = torch.randint(0, ddpm.T, (len(y),), device=y.device)
        loss = F.cross_entropy(classifier(ddpm.q_sample(x0 * 2 - 1, t, torch.randn_like(x0)), t), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
