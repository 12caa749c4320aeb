"""DDPM (Ho et al. 2020): noise schedules and the model — the forward process, the network's prediction, the simple
loss, training with an exponential moving average of the weights (notebook 06). Implements
`grlib.models.generators.Generator`; the samplers live in `grlib.models.samplers`, classifier guidance in
`grlib.models.guidance`, and neither imports this module."""
from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import Tensor

from grlib.core.checkpoints import arguments
from grlib.core.guards import check_loss, check_lr
from grlib.core.progress import bar
from grlib.core.threads import paced
from grlib.models import samplers
from grlib.models.ema import moving_average
from grlib.models.generators import DataSource
from grlib.models.guidance import Guide
from grlib.models.unet import UNet


def linear_betas(T: int = 1000, start: float = 1e-4, end: float = 0.02) -> Tensor:
    """β_1..β_T rising linearly (Ho et al. 2020)."""
    return torch.linspace(start, end, T, dtype=torch.float64)


def cosine_betas(T: int = 1000, s: float = 0.008) -> Tensor:
    """β_t from ᾱ_t = cos²(π/2 · (t/T + s)/(1 + s)) (Nichol & Dhariwal 2021), capped at 0.999."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    alpha_bar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


class Diffusion:
    """A denoising diffusion model over images in [0, 1] (in [-1, 1] inside).

    `prediction="eps"` trains ε_θ with the DDPM loss ‖ε − ε_θ(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t)‖²; `"x0"` trains the same
    network to output x̂₀ instead, ‖x₀ − x̂_θ(x_t, t)‖² (each converts to the other, so sampling is shared)."""

    def __init__(self, model: UNet, T: int = 1000, schedule: str = "linear", prediction: str = "eps",
                 lr: float = 1e-3, ema_decay: float = 0.0, min_snr_gamma: float | None = None,
                 device: torch.device | str = "cpu"):
        self.settings = arguments(locals())  # every argument but the device (the model by its own): the cache's key
        if schedule not in ("linear", "cosine") or prediction not in ("eps", "x0"):
            raise ValueError(f"schedule must be 'linear' or 'cosine' and prediction 'eps' or 'x0'; "
                             f"got {schedule!r}, {prediction!r}")
        if T < 1 or not 0 <= ema_decay < 1:
            raise ValueError(f"T must be ≥ 1 and ema_decay in [0, 1); got {T}, {ema_decay}")
        check_lr(lr, "Diffusion")
        if min_snr_gamma is not None and not (math.isfinite(min_snr_gamma) and min_snr_gamma > 0):
            raise ValueError(f"min_snr_gamma must be a positive number (5 in Hang et al. 2023) or None for the simple "
                             f"loss; got {min_snr_gamma}")
        self.model, self.T, self.prediction, self.device = model.to(device), T, prediction, torch.device(device)
        self.min_snr_gamma = min_snr_gamma
        betas = linear_betas(T) if schedule == "linear" else cosine_betas(T)
        self.betas = betas.float().to(device)                                # β_t
        self.alpha_bar = torch.cumprod(1 - betas, 0).float().to(device)      # ᾱ_t = Π_s (1 − β_s)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        # Samples are drawn from an exponential moving average of the weights, which samples better than the
        # weights themselves (Ho et al. 2020 used a decay of 0.9999 over 800k steps; short budgets need less).
        self.ema = moving_average(model, ema_decay)

    @property
    def conditional(self) -> bool:
        return self.model.class_emb is not None

    @property
    def sampling_network(self) -> torch.nn.Module:
        """The network samples come from: the EMA of the weights if there is one."""
        return self.model if self.ema is None else self.ema.module

    def snr(self, t: Tensor | int) -> Tensor:
        """SNR_t = ᾱ_t / (1 − ᾱ_t): how much of the image is left at step t, against the noise."""
        ab = self.alpha_bar[t]
        return ab / (1 - ab)

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε: the forward process in one jump."""
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x̂₀ = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t: the forward process solved for x₀."""
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """ε̂ = (x_t − √ᾱ_t x̂₀) / √(1 − ᾱ_t): the forward process solved for ε."""
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def loss(self, x0: Tensor, y: Tensor | None = None) -> Tensor:
        """The DDPM loss at a uniformly drawn step t, on images x0 in [-1, 1]: the simple loss or, with
        `min_snr_gamma` γ, each image's weighted by min(SNR_t, γ) as an error in x₀ (Hang et al. 2023)."""
        t = torch.randint(0, self.T, (len(x0),), device=x0.device)
        eps = torch.randn_like(x0)
        out = self.model(self.q_sample(x0, t, eps), t, y)
        target = eps if self.prediction == "eps" else x0
        if self.min_snr_gamma is None:
            return F.mse_loss(out, target)  # ‖ε − ε_θ‖² or ‖x₀ − x̂_θ‖²
        snr = self.snr(t)
        # ‖ε − ε̂‖² = SNR_t ‖x₀ − x̂₀‖², so min(SNR_t, γ) on the x₀ error is min(SNR_t, γ) / SNR_t on the ε error
        weight = snr.clamp(max=self.min_snr_gamma) / (snr if self.prediction == "eps" else 1)
        return (weight * (out - target).pow(2).mean((1, 2, 3))).mean()

    def train(self, sample_real: DataSource, iters: int, batch_size: int = 64, progress: bool = True,
              desc: str = "DDPM") -> dict[str, list[float]]:
        """`iters` Adam steps on the loss; `sample_real(n)` gives (images in [0, 1], labels), the labels used only
        by a class-conditional network."""
        losses = []
        hint = f"lower the learning rate (now {self.settings['lr']}) or check that the images are in [0, 1]"
        self.model.train()
        for it in paced(bar(range(iters), desc=desc, disable=not progress)):
            x, y = sample_real(batch_size)
            loss = self.loss(x * 2 - 1, y if self.conditional else None)
            check_loss(loss.item(), desc, it, hint)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            losses.append(loss.item())
        if losses:  # each loss is checked before its step; what the last step did is checked here, before anything
            # samples from or caches its weights: the loss on the last batch at the middle step, without noise, so
            # that it draws nothing
            with torch.no_grad():
                x0 = x * 2 - 1
                t = torch.full((len(x0),), self.T // 2, device=x0.device)
                out = self.model(self.q_sample(x0, t, torch.zeros_like(x0)), t, y if self.conditional else None)
                last = F.mse_loss(out, x0 if self.prediction == "x0" else torch.zeros_like(x0)).item()
            check_loss(last, desc, iters, hint)
        return {"loss": losses}

    @torch.no_grad()
    def predict(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(x̂₀, ε̂) from one call of the sampling network, whichever it predicts; x̂₀ clipped to [-1, 1]."""
        out = self.sampling_network(x_t, t, y)
        x0 = (self.x0_from_eps(x_t, t, out) if self.prediction == "eps" else out).clamp(-1, 1)
        return x0, self.eps_from_x0(x_t, t, x0)

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | None = None, *, steps: int | None = None, eta: float = 0.0,
               guide: Guide | None = None, progress: bool = False, batch: int = 200,
               sampler: str = "ddim") -> Tensor:
        """n images in [0, 1]. steps=None: ancestral sampling over all T steps (DDPM); else `sampler` over `steps`
        evenly spaced steps: "ddim" (Song et al. 2021; η = 0 deterministic, η = 1 DDPM-like) or "dpm++2m",
        DPM-Solver++(2M) (Lu et al. 2022), from `grlib.models.samplers.SAMPLERS`. `y`: the classes wanted, the
        network's condition if it is class-conditional, and the guide's target.

        Drawn `batch` at a time: on a CPU, batches of a few hundred draw faster than larger ones (docs/record.md,
        "Sampling batch size")."""
        if y is not None and not self.conditional and guide is None:
            raise ValueError("an unconditional, unguided diffusion model cannot draw given classes; pass a guide")
        network = self.sampling_network
        network.eval()
        x = torch.cat([samplers.draw(self, min(batch, n - i), None if y is None else y[i:i + batch], steps=steps,
                                     eta=eta, guide=guide, progress=progress, sampler=sampler)
                       for i in range(0, n, batch)])
        network.train()
        return ((x + 1) / 2).clamp(0, 1)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
