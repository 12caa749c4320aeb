"""WGAN-GP (Gulrajani et al. 2017): convolutional generator and critic, gradient penalty, training, sampling (notebook 03)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .generators import Sampler
from .guards import TrainingDivergedError, check_loss
from .progress import bar
from .rng import seeded

__all__ = ["Generator", "Critic", "gradient_penalty", "WGANGP", "train_with_snapshots", "TrainingDivergedError"]


def _upsample(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class Generator(nn.Module):
    """DCGAN-style G: z -> 4w×s×s -> (×2 upsampling)* -> C×H×W in [-1, 1]; for 1×28×28 (s=7) and 3×32×32 (s=4)."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), z_dim: int = 64, width: int = 32):
        super().__init__()
        c, h, _ = image_shape
        if h not in (28, 32):
            raise ValueError(f"the generator draws 28×28 or 32×32 images, not {image_shape}")
        self.z_dim, self.image_shape = z_dim, tuple(image_shape)
        self.start = 7 if h == 28 else 4
        blocks = [4 * width, 2 * width] if h == 28 else [4 * width, 2 * width, width]
        n_project = blocks[0] * self.start ** 2
        self.project = nn.Sequential(nn.Linear(z_dim, n_project), nn.BatchNorm1d(n_project), nn.ReLU())
        layers: list[nn.Module] = []
        for a, b in zip(blocks, blocks[1:]):
            layers += _upsample(a, b)
        layers += [nn.ConvTranspose2d(blocks[-1], c, 4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.project(z).view(len(z), -1, self.start, self.start))


class Critic(nn.Module):
    """WGAN critic D: strided convs with LeakyReLU and no batch norm (the gradient penalty is per sample) -> a score."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), width: int = 32):
        super().__init__()
        c, h, w = image_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """E[(‖∇D(x̂)‖₂ − 1)²] at x̂ = εx + (1 − ε)x̃, ε ~ U[0, 1] per sample."""
    eps = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


class WGANGP:
    """A generator and its critic, trained with the WGAN-GP objective; images in [0, 1] outside, [-1, 1] inside.

    Implements `grlib.generators.Generator` (unconditional: it cannot be asked for classes)."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), z_dim: int = 64, width: int = 32,
                 lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.9), critic_steps: int = 5,
                 gp_weight: float = 10.0, device: torch.device | str = "cpu", seed: int = 0):
        with seeded(seed):  # the initial weights depend on the seed alone
            self.generator = Generator(image_shape, z_dim, width).to(device)
            self.critic = Critic(image_shape, width).to(device)
        self.z_dim, self.critic_steps, self.gp_weight, self.device = z_dim, critic_steps, gp_weight, torch.device(device)
        self.settings = {"image_shape": list(image_shape), "z_dim": z_dim, "width": width, "lr": lr,
                         "betas": list(betas), "critic_steps": critic_steps, "gp_weight": gp_weight, "seed": seed}
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=betas)

    def critic_step(self, real: Tensor) -> tuple[float, float]:
        """One critic update on real images in [-1, 1]; returns (critic loss, Wasserstein estimate E[D(x)] − E[D(x̃)])."""
        with torch.no_grad():
            fake = self.generator(torch.randn(len(real), self.z_dim, device=self.device))
        d_real, d_fake = self.critic(real).mean(), self.critic(fake).mean()
        loss = d_fake - d_real + self.gp_weight * gradient_penalty(self.critic, real, fake)  # L_D
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.item(), (d_real - d_fake).item()

    def generator_step(self, batch_size: int) -> float:
        """One generator update: minimise L_G = −E[D(G(z))]."""
        loss = -self.critic(self.generator(torch.randn(batch_size, self.z_dim, device=self.device))).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return loss.item()

    def train(self, sample_real: Sampler, iters: int, batch_size: int = 64, progress: bool = True,
              desc: str = "WGAN-GP") -> dict[str, list[float]]:
        """`iters` generator steps, each after `critic_steps` critic steps; `sample_real(n)` gives (images in [0, 1],
        labels), and the labels are not used."""
        history: dict[str, list[float]] = {"critic_loss": [], "generator_loss": [], "wasserstein": []}
        hint = f"lower the learning rate (now {self.settings['lr']}) or check that the images are in [0, 1]"
        self.generator.train()
        for it in bar(range(iters), desc=desc, disable=not progress):
            for _ in range(self.critic_steps):
                d_loss, w_est = self.critic_step(sample_real(batch_size)[0] * 2 - 1)
            g_loss = self.generator_step(batch_size)
            check_loss(d_loss, f"{desc} (critic)", it, hint, limit=1e6)
            check_loss(g_loss, f"{desc} (generator)", it, hint, limit=1e6)
            history["critic_loss"].append(d_loss)
            history["generator_loss"].append(g_loss)
            history["wasserstein"].append(w_est)
        return history

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | None = None, batch: int = 1000) -> Tensor:
        """n generated images in [0, 1], N×C×H×W. The GAN is unconditional: asking for classes `y` is an error."""
        if y is not None:
            raise ValueError("an unconditional WGAN-GP cannot draw given classes; label its samples with a solver")
        self.generator.eval()
        out = [self.generator(torch.randn(min(batch, n - i), self.z_dim, device=self.device)) for i in range(0, n, batch)]
        self.generator.train()
        return (torch.cat(out) + 1) / 2

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "critic": self.critic.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])


def train_with_snapshots(wgan: WGANGP, sample_real: Sampler, iters: int, batch_size: int = 64,
                         n_snapshots: int = 5, seed: int = 0, progress: bool = True) -> dict:
    """Train `wgan`, drawing the same 64 latent vectors at `n_snapshots` points; returns its state, the loss
    history and the snapshots {step: images in [0, 1]} (notebook 03)."""
    fixed_z = torch.randn(64, wgan.z_dim, generator=torch.Generator().manual_seed(seed)).to(wgan.device)
    history: dict[str, list[float]] = {"critic_loss": [], "generator_loss": [], "wasserstein": []}
    snapshots = {}
    every = max(1, iters // n_snapshots)
    for start in range(0, iters, every):
        chunk = wgan.train(sample_real, min(every, iters - start), batch_size, progress=progress)
        for key in history:
            history[key] += chunk[key]
        wgan.generator.eval()
        with torch.no_grad():
            snapshots[start + len(chunk["wasserstein"])] = (wgan.generator(fixed_z) + 1) / 2
        wgan.generator.train()
    return {"wgan": wgan.state_dict(), "history": history, "snapshots": snapshots}
