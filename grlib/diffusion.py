"""DDPM (Ho et al. 2020): noise schedules, a small UNet, the training loss, ancestral and DDIM sampling,
classifier guidance (notebook 05)."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .gan import TrainingDivergedError



def linear_betas(T: int = 1000, start: float = 1e-4, end: float = 0.02) -> Tensor:
    """β_1..β_T rising linearly (Ho et al. 2020)."""
    return torch.linspace(start, end, T, dtype=torch.float64)


def cosine_betas(T: int = 1000, s: float = 0.008) -> Tensor:
    """β_t from ᾱ_t = cos²(π/2 · (t/T + s)/(1 + s)) (Nichol & Dhariwal 2021), capped at 0.999."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    alpha_bar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of integer steps t, as in the Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], 1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time (and class) embedding added in between; a residual connection."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.block1 = nn.Sequential(nn.GroupNorm(min(8, c_in), c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb = nn.Linear(emb_dim, c_out)
        self.block2 = nn.Sequential(nn.GroupNorm(min(8, c_out), c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.block1(x) + self.emb(emb)[:, :, None, None]
        return self.block2(h) + self.skip(x)


class UNet(nn.Module):
    """A three-level UNet (28→14→7 or 32→16→8) with a time embedding and optional class conditioning."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), ch: int = 16, n_classes: int | None = None,
                 seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)  # the initial weights depend on the seed alone, as for nets.make_solver
        c = image_shape[0]
        if image_shape[1] not in (28, 32):
            raise ValueError(f"the UNet takes 28×28 or 32×32 images, not {image_shape}")
        self.image_shape, self.ch, self.seed, emb = tuple(image_shape), ch, seed, 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.class_emb = nn.Embedding(n_classes, emb) if n_classes else None
        self.inp = nn.Conv2d(c, ch, 3, padding=1)
        self.down1, self.pool1 = ResBlock(ch, ch, emb), nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        self.down2, self.pool2 = ResBlock(ch, 2 * ch, emb), nn.Conv2d(2 * ch, 2 * ch, 3, stride=2, padding=1)
        self.down3 = ResBlock(2 * ch, 2 * ch, emb)
        self.mid = ResBlock(2 * ch, 2 * ch, emb)
        self.up3 = ResBlock(4 * ch, 2 * ch, emb)
        self.up2 = ResBlock(4 * ch, ch, emb)
        self.up1 = ResBlock(2 * ch, ch, emb)
        self.out = nn.Sequential(nn.GroupNorm(min(8, ch), ch), nn.SiLU(), nn.Conv2d(ch, c, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.ch))
        if self.class_emb is not None and y is not None:
            emb = emb + self.class_emb(y)
        h0 = self.down1(self.inp(x), emb)                                      # ch × full size
        h1 = self.down2(self.pool1(h0), emb)                                   # 2ch × 1/2
        h2 = self.down3(self.pool2(h1), emb)                                   # 2ch × 1/4
        h = self.up3(torch.cat([self.mid(h2, emb), h2], 1), emb)               # 2ch × 1/4
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2.0), h1], 1), emb)  # ch × 1/2
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0), h0], 1), emb)  # ch × full size
        return self.out(h)


class Diffusion:
    """A denoising diffusion model over images in [0, 1] (in [-1, 1] inside).

    `prediction="eps"` trains ε_θ with the DDPM loss ‖ε − ε_θ(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t)‖²; `"x0"` trains the same
    network to output x̂₀ instead, ‖x₀ − x̂_θ(x_t, t)‖² (each converts to the other, so sampling is shared)."""

    def __init__(self, model: UNet, T: int = 1000, schedule: str = "linear", prediction: str = "eps",
                 lr: float = 1e-3, ema_decay: float = 0.0, device: torch.device | str = "cpu"):
        if schedule not in ("linear", "cosine") or prediction not in ("eps", "x0"):
            raise ValueError(f"schedule must be 'linear' or 'cosine' and prediction 'eps' or 'x0'; "
                             f"got {schedule!r}, {prediction!r}")
        self.model, self.T, self.prediction, self.device = model.to(device), T, prediction, torch.device(device)
        betas = linear_betas(T) if schedule == "linear" else cosine_betas(T)
        self.betas = betas.float().to(device)                                # β_t
        self.alpha_bar = torch.cumprod(1 - betas, 0).float().to(device)      # ᾱ_t = Π_s (1 − β_s)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        # An exponential moving average of the weights samples better than the weights themselves (Ho et al. 2020).
        self.ema_decay, self.ema_steps = ema_decay, 0
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if ema_decay else None
        self.settings = {"image_shape": list(model.image_shape), "ch": model.ch, "T": T, "schedule": schedule,
                         "prediction": prediction, "lr": lr, "ema_decay": ema_decay, "seed": model.seed,
                         "conditional": model.class_emb is not None}

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε: the forward process in one jump."""
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def loss(self, x0: Tensor, y: Tensor | None = None) -> Tensor:
        """The simple DDPM loss at a uniformly drawn step t, on images x0 in [-1, 1]."""
        t = torch.randint(0, self.T, (len(x0),), device=x0.device)
        eps = torch.randn_like(x0)
        out = self.model(self.q_sample(x0, t, eps), t, y)
        return F.mse_loss(out, eps if self.prediction == "eps" else x0)  # ‖ε − ε_θ‖² or ‖x₀ − x̂_θ‖²

    @property
    def conditional(self) -> bool:
        return self.model.class_emb is not None

    def train(self, sample_real: Callable[[int], Tensor | tuple[Tensor, Tensor]], iters: int, batch_size: int = 64,
              progress: bool = True, desc: str = "DDPM") -> dict[str, list[float]]:
        """`iters` Adam steps on the loss; `sample_real(n)` gives images in [0, 1], or (images, labels) for a
        class-conditional network."""
        losses = []
        self.model.train()
        for it in tqdm(range(iters), desc=desc, disable=not progress, leave=False):
            batch = sample_real(batch_size)
            x, y = batch if isinstance(batch, tuple) else (batch, None)
            loss = self.loss(x * 2 - 1, y if self.conditional else None)
            if not math.isfinite(loss.item()):
                raise TrainingDivergedError(f"the diffusion loss became {loss.item()} at step {it}; lower the "
                                            f"learning rate (now {self.settings['lr']}) or check the images are in [0, 1]")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self._update_ema()
            losses.append(loss.item())
        return {"loss": losses}

    @torch.no_grad()
    def _update_ema(self) -> None:
        """θ_ema ← d θ_ema + (1 − d) θ, with d warming up as min(decay, (1 + n) / (10 + n))."""
        if self.ema is None:
            return
        self.ema_steps += 1
        d = min(self.ema_decay, (1 + self.ema_steps) / (10 + self.ema_steps))
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                self.ema[k].mul_(d).add_(v, alpha=1 - d)
            else:
                self.ema[k].copy_(v)

    def predict(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(x̂₀, ε̂) from one network call, whichever the network predicts; x̂₀ clipped to [-1, 1]."""
        out = self.model(x_t, t, y)
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        if self.prediction == "eps":
            x0 = ((x_t - (1 - ab).sqrt() * out) / ab.sqrt()).clamp(-1, 1)
        else:
            x0 = out.clamp(-1, 1)
        return x0, (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def _guided(self, x_t: Tensor, t: Tensor, y: Tensor | None, guide: Guide | None, scale: float,
                cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """x̂₀ and ε̂ from the network, shifted towards class y by the guide (see `Guide`)."""
        with torch.no_grad():
            x0, eps = self.predict(x_t, t, cond)
        if guide is None or scale == 0:
            return x0, eps
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        if guide.space == "xt":  # ε̂ ← ε̂ − s √(1 − ᾱ_t) ∇_{x_t} log p(y | x_t)  (Dhariwal & Nichol 2021)
            eps = eps - scale * (1 - ab).sqrt() * guide(x_t, x0, t, y)
            x0 = ((x_t - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
        else:  # x̂₀ ← x̂₀ + s ∇_{x̂₀} log p(y | x̂₀): the classifier reads the denoised estimate
            x0 = (x0 + scale * guide(x_t, x0, t, y)).clamp(-1, 1)
            eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        return x0, eps

    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, eta: float = 0.0, y: Tensor | None = None,
               guide: Guide | None = None, scale: float = 0.0, progress: bool = False, batch: int = 200) -> Tensor:
        """n images in [0, 1]. steps=None: ancestral sampling over all T steps (DDPM);
        else DDIM (Song et al. 2021) over `steps` evenly spaced steps, η = 0 deterministic, η = 1 DDPM-like.
        `y`: the classes wanted, for the guide and, if the network is class-conditional, as its condition.

        Drawn `batch` at a time: on a 2-core CPU, 10,000 DDIM-20 samples of the quick profile's UNet took 64-105 s
        in batches of 200 and 113-119 s in batches of 500."""
        trained = self._swap_in_ema()
        self.model.eval()
        x = torch.cat([self._sample_batch(min(batch, n - i), steps, eta,
                                          None if y is None else y[i:i + batch], guide, scale, progress)
                       for i in range(0, n, batch)])
        self.model.train()
        if trained is not None:
            self.model.load_state_dict(trained)
        return ((x + 1) / 2).clamp(0, 1)

    def _sample_batch(self, n: int, steps: int | None, eta: float, y: Tensor | None, guide: Guide | None,
                      scale: float, progress: bool) -> Tensor:
        """n images in [-1, 1] by the sampler `sample` describes."""
        x = torch.randn(n, *self.model.image_shape, device=self.device)
        cond = y if self.conditional else None
        if steps is None:  # ancestral: x_{t-1} = μ_θ(x_t, t) + σ_t z, σ_t² = β̃_t
            for i in tqdm(range(self.T - 1, -1, -1), desc="DDPM", disable=not progress, leave=False):
                t = torch.full((n,), i, device=self.device, dtype=torch.long)
                x0, _ = self._guided(x, t, y, guide, scale, cond)
                ab, ab_prev = self.alpha_bar[i], self.alpha_bar[i - 1] if i > 0 else torch.tensor(1.0)
                beta = self.betas[i]
                mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x
                x = mean + ((1 - ab_prev) / (1 - ab) * beta).sqrt() * torch.randn_like(x) if i > 0 else mean
        else:
            times = torch.linspace(self.T - 1, 0, steps, device=self.device).round().long().tolist()
            for k, i in enumerate(tqdm(times, desc="DDIM", disable=not progress, leave=False)):
                t = torch.full((n,), i, device=self.device, dtype=torch.long)
                x0, eps = self._guided(x, t, y, guide, scale, cond)
                ab = self.alpha_bar[i]
                ab_prev = self.alpha_bar[times[k + 1]] if k + 1 < len(times) else torch.tensor(1.0, device=self.device)
                sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
                # x_{t'} = √ᾱ_{t'} x̂₀ + √(1 − ᾱ_{t'} − σ²) ε̂ + σ z
                x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps
                if eta > 0 and k + 1 < len(times):
                    x = x + sigma * torch.randn_like(x)
        return x

    def _swap_in_ema(self) -> dict | None:
        """Load the EMA weights for sampling; returns the trained weights to put back (None without EMA)."""
        if self.ema is None:
            return None
        trained = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema)
        return trained

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "ema": self.ema,
                "ema_steps": self.ema_steps}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema = None if state["ema"] is None else {k: v.to(self.device) for k, v in state["ema"].items()}
        self.ema_steps = state["ema_steps"]


class Guide:
    """Classifier guidance: the gradient of log p(y | ·) that pulls each sampling step towards class y.

    `space="x0"`: a classifier of clean images (the solver) reads the denoised estimate x̂₀, and the step moves x̂₀;
    `space="xt"`: a classifier trained on noisy images p_φ(y | x_t, t) gives ∇_{x_t} log p, which shifts ε̂."""

    def __init__(self, classifier: nn.Module, space: str):
        if space not in ("x0", "xt"):
            raise ValueError(f"space must be 'x0' or 'xt', got {space!r}")
        self.classifier, self.space = classifier, space

    def __call__(self, x_t: Tensor, x0: Tensor, t: Tensor, y: Tensor) -> Tensor:
        with torch.enable_grad():
            x = (x0 if self.space == "x0" else x_t).detach().requires_grad_(True)
            logits = self.classifier((x + 1) / 2) if self.space == "x0" else self.classifier(x, t)
            log_p = F.log_softmax(logits, 1).gather(1, y[:, None]).sum()  # Σ_i log p(y_i | ·)
            grad, = torch.autograd.grad(log_p, x)
        return grad


def solver_guide(solver: nn.Module) -> Guide:
    """Guidance by the continual learner's own solver, which knows clean images in [0, 1]."""
    return Guide(solver, "x0")


def noisy_classifier_guide(classifier: nn.Module) -> Guide:
    """Guidance by a classifier trained on noisy images x_t in [-1, 1], called as classifier(x_t, t)."""
    return Guide(classifier, "xt")


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


def train_noisy_classifier(classifier: NoisyClassifier, model: Diffusion,
                           sample_labelled: Callable[[int], tuple[Tensor, Tensor]], iters: int, batch_size: int = 128,
                           lr: float = 1e-3, progress: bool = True) -> list[float]:
    """Cross-entropy of p_φ(y | x_t, t) on images noised to a uniformly drawn step t by the forward process."""
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    losses = []
    for _ in tqdm(range(iters), desc="noisy classifier", disable=not progress, leave=False):
        x0, y = sample_labelled(batch_size)
        t = torch.randint(0, model.T, (len(y),), device=y.device)
        loss = F.cross_entropy(classifier(model.q_sample(x0 * 2 - 1, t, torch.randn_like(x0)), t), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
