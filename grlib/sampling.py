"""Drawing images from a DDPM (notebook 05): one ancestral step, one DDIM step, one DPM-Solver++(2M) step, the loops
that chain them, and classifier guidance, which pulls every step towards a class (notebook 06's DDGR replays this
way)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .progress import bar
from .unet import timestep_embedding

if TYPE_CHECKING:
    from .diffusion import Diffusion


class Guide(Protocol):
    """Classifier guidance: given the step's (x̂₀, ε̂), return them shifted towards the classes y."""

    def __call__(self, ddpm: Diffusion, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor,
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

    def __call__(self, ddpm: Diffusion, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor,
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

    def __call__(self, ddpm: Diffusion, x_t: Tensor, t: Tensor, x0: Tensor, eps: Tensor,
                 y: Tensor) -> tuple[Tensor, Tensor]:
        if self.scale == 0:
            return x0, eps
        ab = ddpm.alpha_bar[t].view(-1, 1, 1, 1)
        eps = eps - self.scale * (1 - ab).sqrt() * log_prob_gradient(lambda x: self.classifier(x, t), x_t, y)
        return ddpm.x0_from_eps(x_t, t, eps).clamp(-1, 1), eps


def denoise(ddpm: Diffusion, x_t: Tensor, i: int, y: Tensor | None, guide: Guide | None) -> tuple[Tensor, Tensor]:
    """The network's (x̂₀, ε̂) at step i, shifted by the guide towards y if there is one."""
    t = torch.full((len(x_t),), i, device=x_t.device, dtype=torch.long)
    x0, eps = ddpm.predict(x_t, t, y if ddpm.conditional else None)
    return (x0, eps) if guide is None else guide(ddpm, x_t, t, x0, eps, y)


def ancestral_step(ddpm: Diffusion, x_t: Tensor, i: int, x0: Tensor) -> Tensor:
    """x_{t−1} ~ q(x_{t−1} | x_t, x̂₀) = N(μ̃_t, β̃_t I), the posterior of the forward process at x₀ = x̂₀:
    μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x̂₀ + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t,  β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t.
    (Steps are 0-based: i = T − 1 is the noisiest; at i = 0 the mean is returned.)"""
    ab, beta = ddpm.alpha_bar[i], ddpm.betas[i]
    ab_prev = ddpm.alpha_bar[i - 1] if i > 0 else torch.ones((), device=x_t.device)
    mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x_t
    if i == 0:
        return mean
    return mean + ((1 - ab_prev) / (1 - ab) * beta).sqrt() * torch.randn_like(x_t)


def ddim_step(ddpm: Diffusion, x_t: Tensor, i: int, i_prev: int | None, x0: Tensor, eps: Tensor,
              eta: float = 0.0) -> Tensor:
    """From step i to the earlier step i_prev (None: to the clean image), Song et al. (2021):
    x_{t'} = √ᾱ_{t'} x̂₀ + √(1 − ᾱ_{t'} − σ²) ε̂ + σ z,  σ = η √((1 − ᾱ_{t'}) / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ_{t'})."""
    ab = ddpm.alpha_bar[i]
    ab_prev = ddpm.alpha_bar[i_prev] if i_prev is not None else torch.ones((), device=x_t.device)
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
    x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps
    if eta > 0 and i_prev is not None:
        x = x + sigma * torch.randn_like(x)
    return x


def log_snr(ddpm: Diffusion, i: int) -> Tensor:
    """λ_t = log(α_t / σ_t) with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t): the log signal-to-noise ratio at step i."""
    return 0.5 * ddpm.snr(i).log()  # λ = ½ log SNR_t


def dpm_solver_step(ddpm: Diffusion, x_t: Tensor, i: int, i_prev: int, x0: Tensor,
                    earlier: tuple[int, Tensor] | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) from step i to the earlier step i_prev, with h = λ_{t'} − λ_t:
    x_{t'} = (σ_{t'} / σ_t) x_t − α_{t'} (e^{−h} − 1) D. With D = x̂₀ this is DDIM with η = 0; given the step
    before (its step and x̂₀), D = (1 + 1/2r) x̂₀ − (1/2r) x̂₀_before with r = h_before / h, a second-order
    extrapolation of x̂₀ along λ."""
    ab, ab_prev = ddpm.alpha_bar[i], ddpm.alpha_bar[i_prev]
    h = log_snr(ddpm, i_prev) - log_snr(ddpm, i)
    d = x0
    if earlier is not None:
        i_before, x0_before = earlier
        r = (log_snr(ddpm, i) - log_snr(ddpm, i_before)) / h
        d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_before
    return ((1 - ab_prev) / (1 - ab)).sqrt() * x_t - ab_prev.sqrt() * torch.expm1(-h) * d


def ddim_times(T: int, steps: int) -> list[int]:
    """The `steps` evenly spaced steps DDIM visits, from T − 1 down to 0."""
    return torch.linspace(T - 1, 0, steps).round().long().tolist()


def check_eta(eta: float) -> None:
    """DDIM's noise η runs from 0 (deterministic) to 1 (DDPM-like); above 1, σ² would exceed the noise left."""
    if not 0 <= eta <= 1:
        raise ValueError(f"DDIM's eta must satisfy 0 ≤ eta ≤ 1 (0: deterministic, 1: DDPM-like); got {eta}")


SAMPLERS = ("ddim", "dpm++2m")


def check_sampler(sampler: str, eta: float) -> None:
    """A known sampler, and an η it accepts: DDIM's from 0 to 1, DPM-Solver++(2M)'s 0."""
    check_eta(eta)
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler == "dpm++2m" and eta != 0:
        raise ValueError(f"DPM-Solver++(2M) is deterministic: use eta=0 with it (got eta={eta}), or sampler='ddim'")


def draw(ddpm: Diffusion, n: int, y: Tensor | None = None, steps: int | None = None, eta: float = 0.0,
         guide: Guide | None = None, progress: bool = False, sampler: str = "ddim") -> Tensor:
    """n images in [-1, 1] from pure noise x_T ~ N(0, I): ancestral sampling over all T steps (steps=None), else
    `sampler` over `steps` evenly spaced steps: DDIM, or DPM-Solver++(2M), whose first step (nothing before it) and
    last (to the clean image) are DDIM's."""
    check_sampler(sampler, eta)
    x = torch.randn(n, *ddpm.model.image_shape, device=ddpm.device)
    if steps is None:
        for i in bar(range(ddpm.T - 1, -1, -1), desc="DDPM", disable=not progress):
            x0, _ = denoise(ddpm, x, i, y, guide)
            x = ancestral_step(ddpm, x, i, x0)
        return x
    times, earlier = ddim_times(ddpm.T, steps), None
    for k, i in enumerate(bar(times, desc=sampler, disable=not progress)):
        x0, eps = denoise(ddpm, x, i, y, guide)
        i_prev = times[k + 1] if k + 1 < len(times) else None
        if sampler == "dpm++2m" and i_prev is not None:
            x, earlier = dpm_solver_step(ddpm, x, i, i_prev, x0, earlier), (i, x0)
        else:
            x = ddim_step(ddpm, x, i, i_prev, x0, eps, eta)
    return x


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


def train_noisy_classifier(classifier: NoisyClassifier, ddpm: Diffusion,
                           sample_labelled: Callable[[int], tuple[Tensor, Tensor]], iters: int, batch_size: int = 128,
                           lr: float = 1e-3, progress: bool = True) -> list[float]:
    """Cross-entropy of p_φ(y | x_t, t) on images noised to a uniformly drawn step t by the forward process."""
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    losses = []
    for _ in bar(range(iters), desc="noisy classifier", disable=not progress):
        x0, y = sample_labelled(batch_size)
        t = torch.randint(0, ddpm.T, (len(y),), device=y.device)
        loss = F.cross_entropy(classifier(ddpm.q_sample(x0 * 2 - 1, t, torch.randn_like(x0)), t), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
