"""WGAN-GP (Gulrajani et al. 2017): convolutional generator and critic, gradient penalty, training, sampling (notebook 03)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grlib.core.checkpoints import arguments
from grlib.core.guards import TrainingDivergedError, check_loss, check_lr
from grlib.core.progress import bar
from grlib.core.rng import seeded
from grlib.core.threads import paced
from grlib.models.ema import moving_average
from grlib.models.generators import DataSource

__all__ = ["ClassBatchNorm2d", "Generator", "Critic", "gradient_penalty", "WGANGP", "train_with_snapshots",
           "TrainingDivergedError"]


class ClassBatchNorm2d(nn.Module):
    """Batch norm with a scale and shift learned per class (conditional batch norm, de Vries et al. 2017, the
    generator of Miyato & Koyama 2018): γ_y ⊙ (x − μ_B)/σ_B + β_y."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Parameter(torch.ones(n_classes, channels))  # γ_y, one row per class
        self.shift = nn.Parameter(torch.zeros(n_classes, channels))  # β_y

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.gain[y, :, None, None] * self.norm(x) + self.shift[y, :, None, None]


def _upsample(c_in: int, c_out: int, n_classes: int | None = None) -> list[nn.Module]:
    norm = ClassBatchNorm2d(c_out, n_classes) if n_classes else nn.BatchNorm2d(c_out)
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), norm, nn.ReLU()]


class Generator(nn.Module):
    """DCGAN-style G: z -> 4w×s×s -> (×2 upsampling)* -> C×H×W in [-1, 1]; for 1×28×28 (s=7) and 3×32×32 (s=4).
    With `n_classes`, class-conditional: a learned embedding of the class is added to z, and with `class_norm` the
    upsampling blocks' batch norms also scale and shift per class (`ClassBatchNorm2d`)."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), z_dim: int = 64, width: int = 32,
                 n_classes: int | None = None, class_norm: bool = False):
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
            layers += _upsample(a, b, n_classes if class_norm else None)
        layers += [nn.ConvTranspose2d(blocks[-1], c, 4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.class_emb = nn.Embedding(n_classes, z_dim) if n_classes else None

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.class_emb is not None:
            z = z + self.class_emb(y)  # G(z, y): the class shifts the latent code
        h = self.project(z).view(len(z), -1, self.start, self.start)
        for layer in self.net:
            h = layer(h, y) if isinstance(layer, ClassBatchNorm2d) else layer(h)
        return h


class Critic(nn.Module):
    """WGAN critic D: strided convs with LeakyReLU and no batch norm (the gradient penalty is per sample) -> a score.
    With `n_classes`, class-aware in one of two ways: a projection critic (Miyato & Koyama 2018), D(x, y) = w·φ(x) +
    e_y·φ(x); or, with `auxiliary`, AC-GAN's (Odena et al. 2017) unconditional score w·φ(x) beside a classifier head
    C(φ(x)) over the classes."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), width: int = 32, n_classes: int | None = None,
                 auxiliary: bool = False):
        super().__init__()
        c, h, w = image_shape
        features = 2 * width * (h // 4) * (w // 4)
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(features, 1),
        )
        self.class_emb = nn.Embedding(n_classes, features) if n_classes and not auxiliary else None
        self.classifier = nn.Linear(features, n_classes) if n_classes and auxiliary else None

    def scores(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(D(x, y), the classifier's logits C(φ(x)) or None), from one pass through the convolutions."""
        phi = self.net[:-1](x)  # φ(x)
        score = self.net[-1](phi).squeeze(1)
        if self.class_emb is not None:
            score = score + (self.class_emb(y) * phi).sum(1)
        return score, None if self.classifier is None else self.classifier(phi)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.scores(x, y)[0]


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """E[(‖∇D(x̂)‖₂ − 1)²] at x̂ = εx + (1 − ε)x̃, ε ~ U[0, 1] per sample."""
    eps = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


class WGANGP:
    """A generator and its critic, trained with the WGAN-GP objective; images in [0, 1] outside, [-1, 1] inside.

    A `grlib.models.generators.Generator`. With `n_classes`, class-conditional (MeRGAN, Wu et al. 2018; `class_norm`:
    per-class batch norms) with a projection critic, or with `auxiliary` = β > 0 an AC-GAN critic. `alignment` = λ
    adds MeRGAN's replay alignment, λ E‖G(z, c) − G_prev(z, c)‖² over old classes c.
    `ema_decay` > 0 samples from a moving average of the generator's weights (Yazıcı et al. 2019); `critic_lr` is the
    critic's own learning rate (Heusel et al. 2017); `gp_every` = k puts the penalty, weighted k·λ, on every k-th
    critic step (lazy regularisation, Karras et al. 2020); `share_fakes`: one batch of fakes per generator step."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), z_dim: int = 64, width: int = 32,
                 lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.9), critic_steps: int = 5,
                 gp_weight: float = 10.0, device: torch.device | str = "cpu", seed: int = 0,
                 n_classes: int | None = None, alignment: float = 0.0, auxiliary: float = 0.0,
                 class_norm: bool = False, ema_decay: float = 0.0, critic_lr: float | None = None,
                 gp_every: int = 1, share_fakes: bool = False):
        self.settings = arguments(locals())  # every argument but the device: the checkpoint cache's key
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0: no average); got {ema_decay}")
        if critic_steps < 1 or gp_every < 1:
            raise ValueError(f"critic_steps and gp_every must be at least 1; got {critic_steps} and {gp_every}")
        check_lr(lr, "WGANGP")
        check_lr(lr if critic_lr is None else critic_lr, "WGANGP's critic")
        if (alignment or auxiliary or class_norm) and not n_classes:
            raise ValueError("replay alignment, the auxiliary classifier and class norms need class-conditional "
                             "samples: give n_classes")
        if share_fakes and n_classes:
            raise ValueError("share_fakes is for an unconditional WGAN-GP: a conditional critic scores each fake "
                             "with the classes of its real batch")
        with seeded(seed):  # the initial weights depend on the seed alone
            # channels-last: its transposed convolutions run faster so (the critic's convolutions do not)
            self.generator = Generator(image_shape, z_dim, width, n_classes, class_norm).to(
                device, memory_format=torch.channels_last)
            self.critic = Critic(image_shape, width, n_classes, auxiliary=auxiliary > 0).to(device)
        self.ema = moving_average(self.generator, ema_decay)
        self.z_dim, self.critic_steps, self.gp_weight, self.device = z_dim, critic_steps, gp_weight, torch.device(device)
        self.n_classes, self.alignment, self.auxiliary = n_classes, alignment, auxiliary
        self.gp_every, self.critic_updates = gp_every, 0  # critic steps taken: the penalty falls on every k-th
        self.share_fakes = share_fakes
        self.known: set[int] = set()  # the classes the generator has been trained on
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=lr if critic_lr is None else critic_lr, betas=betas)

    @property
    def sampling_network(self) -> nn.Module:
        """The network samples come from: the EMA of the generator's weights if there is one."""
        return self.generator if self.ema is None else self.ema.module

    @torch.no_grad()
    def fakes(self, n: int, y: Tensor | None = None) -> Tensor:
        """n fakes x̃ = G(z, y) in [-1, 1] for the critic to score, from the generator being trained."""
        return self.generator(torch.randn(n, self.z_dim, device=self.device), y)

    def critic_step(self, real: Tensor, y: Tensor | None = None, fake: Tensor | None = None) -> tuple[float, float]:
        """One critic update on real images in [-1, 1] (of classes y, if conditional) against `fake` (drawn here if
        None); returns (critic loss, Wasserstein estimate E[D(x)] − E[D(x̃)])."""
        fake = self.fakes(len(real), y) if fake is None else fake
        score_real, logits = self.critic.scores(real, y)
        d_real, d_fake = score_real.mean(), self.critic(fake, y).mean()
        loss = d_fake - d_real  # L_D = E[D(x̃)] − E[D(x)] + λ GP
        self.critic_updates += 1
        if self.critic_updates % self.gp_every == 0:  # lazily: k·λ GP on every k-th step, λ GP on average
            loss = loss + self.gp_every * self.gp_weight * gradient_penalty(lambda x: self.critic(x, y), real, fake)
        if logits is not None:  # AC-GAN: + β CE(C(x), y), the critic's classifier learns the real classes
            loss = loss + self.auxiliary * F.cross_entropy(logits, y)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.item(), (d_real - d_fake).item()

    def generator_step(self, batch_size: int, y: Tensor | None = None, previous: nn.Module | None = None,
                       old: Tensor | None = None) -> float:
        """One generator update: minimise L_G = −E[D(G(z, y))], plus the replay alignment to `previous` on the old
        classes `old` if given."""
        score, logits = self.critic.scores(self.generator(torch.randn(batch_size, self.z_dim, device=self.device), y), y)
        loss = -score.mean()
        if logits is not None:  # AC-GAN: + β CE(C(G(z, y)), y), samples the classifier reads as their class y
            loss = loss + self.auxiliary * F.cross_entropy(logits, y)
        if previous is not None:
            z = torch.randn(batch_size, self.z_dim, device=self.device)
            c = old[torch.randint(len(old), (batch_size,), device=self.device)]
            with torch.no_grad():
                target = previous(z, c)  # G_prev(z, c)
            loss = loss + self.alignment * (self.generator(z, c) - target).pow(2).flatten(1).sum(1).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update_parameters(self.generator)
        return loss.item()

    def train(self, sample_real: DataSource, iters: int, batch_size: int = 64, progress: bool = True,
              desc: str = "WGAN-GP") -> dict[str, list[float]]:
        """`iters` generator steps, each after `critic_steps` critic steps; `sample_real(n)` gives (images in [0, 1],
        labels); an unconditional GAN does not use the labels."""
        history: dict[str, list[float]] = {"critic_loss": [], "generator_loss": [], "wasserstein": []}
        hint = f"lower the learning rate (now {self.settings['lr']}) or check that the images are in [0, 1]"
        previous, old = None, None
        if self.alignment and self.known:  # a frozen copy of the generator as it replayed, for the replay alignment
            previous = copy.deepcopy(self.sampling_network).eval()
            old = torch.tensor(sorted(self.known), device=self.device)
        self.generator.train()
        y = None
        for it in paced(bar(range(iters), desc=desc, disable=not progress)):
            fake = self.fakes(batch_size) if self.share_fakes else None  # one batch for all the critic steps
            for _ in range(self.critic_steps):
                x, labels = sample_real(batch_size)
                y = labels if self.n_classes else None
                d_loss, w_est = self.critic_step(x * 2 - 1, y, fake)
                if y is not None:
                    self.known.update(y.unique().tolist())
            g_loss = self.generator_step(batch_size, y, previous, old)
            check_loss(d_loss, f"{desc} (critic)", it, hint, limit=1e6)
            check_loss(g_loss, f"{desc} (generator)", it, hint, limit=1e6)
            history["critic_loss"].append(d_loss)
            history["generator_loss"].append(g_loss)
            history["wasserstein"].append(w_est)
        return history

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | None = None, batch: int = 1000) -> Tensor:
        """n generated images in [0, 1], N×C×H×W; a conditional GAN draws the classes `y` (n labels), an unconditional
        one cannot be asked for classes."""
        if (y is None) != (self.n_classes is None):
            raise ValueError("an unconditional WGAN-GP cannot draw given classes; label its samples with a solver"
                             if y is not None else "a conditional WGAN-GP draws given classes: pass y")
        net = self.sampling_network.eval()
        out = [net(torch.randn(min(batch, n - i), self.z_dim, device=self.device),
                   None if y is None else y[i:i + batch]) for i in range(0, n, batch)]
        net.train()
        return (torch.cat(out) + 1) / 2

    def state_dict(self) -> dict:
        state = {"generator": self.generator.state_dict(), "critic": self.critic.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                 "critic_updates": self.critic_updates}
        if self.n_classes:
            state["known"] = sorted(self.known)
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.known = set(state.get("known", []))
        self.critic_updates = state.get("critic_updates", 0)
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def train_with_snapshots(wgan: WGANGP, sample_real: DataSource, iters: int, batch_size: int = 64,
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
        net = wgan.sampling_network.eval()
        with torch.no_grad():
            snapshots[start + len(chunk["wasserstein"])] = (net(fixed_z) + 1) / 2
        net.train()
    return {"wgan": wgan.state_dict(), "history": history, "snapshots": snapshots}
