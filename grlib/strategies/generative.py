"""Generative replay: the old tasks' data is drawn from a generator instead of stored (notebooks 04 and 06)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import TaskStream, to_float
from ..diffusion import solver_guide
from .base import Strategy


def to_uint8(x: Tensor) -> Tensor:
    """Images in [0, 1] -> uint8 0..255, the format every batch in the course is drawn from."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def balanced_indices(labels: Tensor, classes: tuple[int, ...], n: int, generator: torch.Generator) -> Tensor:
    """n indices into `labels`, an equal share for each of `classes` present (drawn with replacement)."""
    present = [c for c in classes if (labels == c).any()]
    picks = []
    for k, c in enumerate(present):
        idx = (labels == c).nonzero().squeeze(1)
        share = n // len(present) + (k < n % len(present))
        picks.append(idx[torch.randint(len(idx), (share,), generator=generator, device=generator.device)])
    return torch.cat(picks)


class GenerativeReplay(Strategy):
    """The scholar of DGR: a solver plus a generator that learns the data of every task seen so far.

    Before task t, the previous scholar (today's models, before they learn task t) draws a replay pool: images
    from the generator, labelled by the solver over the classes it knows. Then, as in Shin et al. (2017),
    * the solver learns L = r·L_CE(new) + (1 − r)·L_replay with r = 1/t, and
    * the generator learns from real task-t data mixed with the pool, a fraction 1/t real,
    so each class keeps an equal share of both. Subclasses supply the generator (`train_generator`, `draw`).

    `black_point`: replayed pixels darker than this are set to black (0). Real MNIST backgrounds are exactly 0; a
    generator that leaves a faint haze there hands the solver a shortcut ("hazy means old class", notebook 06)."""

    def __init__(self, solver: nn.Module, generator, gen_iters: int, pool_size: int = 10000,
                 balance_replay: bool = False, soft_labels: bool = False, temperature: float = 2.0,
                 black_point: float = 0.0, **kwargs):
        super().__init__(solver, **kwargs)
        if gen_iters < 1 or pool_size < 1 or temperature <= 0 or not 0 <= black_point < 1:
            raise ValueError(f"gen_iters and pool_size must be positive, temperature > 0 and 0 ≤ black_point < 1; "
                             f"got {gen_iters}, {pool_size}, {temperature}, {black_point}")
        self.generator, self.gen_iters, self.pool_size = generator, gen_iters, pool_size
        self.balance_replay, self.soft_labels, self.temperature = balance_replay, soft_labels, temperature
        self.black_point = black_point
        self.pool: dict[str, Tensor] | None = None
        self.generator_history: list[dict[str, list[float]]] = []
        self.pool_label_counts: list[list[int]] = []  # the old solver's reading of each replay pool, per class
        self.samples: list[Tensor] = []  # 100 generated images (uint8) after each task
        self.pool_agreement: list[float] = []  # share of each pool whose label the old solver reads the same

    def settings(self) -> dict:
        return {**super().settings(), "generator": self.generator.settings, "gen_iters": self.gen_iters,
                "pool_size": self.pool_size, "balance_replay": self.balance_replay,
                "soft_labels": self.soft_labels, "temperature": self.temperature, "black_point": self.black_point}

    def draw(self, n: int, stream: TaskStream, t: int) -> Tensor:
        """n images in [0, 1] from the generator, replaying tasks 0..t-1 (for the sample grids)."""
        raise NotImplementedError

    def replay_pool(self, seen: list[int]) -> tuple[Tensor, Tensor]:
        """`pool_size` replayed images in [0, 1] of the classes `seen`, and their labels."""
        raise NotImplementedError

    def train_generator(self, sample_real: Callable[[int], tuple[Tensor, Tensor]], stream: TaskStream,
                        t: int) -> dict[str, list[float]]:
        """Train the generator on labelled batches from `sample_real(n)`."""
        raise NotImplementedError

    def blacken(self, x: Tensor) -> Tensor:
        """x with every pixel below the black point set to 0."""
        return x.masked_fill(x < self.black_point, 0.0)

    @torch.no_grad()
    def old_solver_logits(self, x: Tensor) -> Tensor:
        return torch.cat([self.solver(x[i:i + 1000]) for i in range(0, len(x), 1000)])

    def before_task(self, stream: TaskStream, t: int) -> None:
        if t == 0:
            self.pool = None
            return
        seen = list(stream.classes_up_to(t - 1))
        self.solver.eval()
        x, y = self.replay_pool(seen)
        x = self.blacken(x)
        logits = self.old_solver_logits(x)
        self.solver.train()
        read = torch.as_tensor(seen, device=x.device)[logits[:, seen].argmax(1)]  # what the old solver sees
        self.pool_label_counts.append(torch.bincount(read, minlength=stream.n_classes).tolist())
        self.pool_agreement.append((read == y).float().mean().item())
        self.pool = {"x": to_uint8(x), "y": y, "logits": logits}

    def replay_batch(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.randint(len(self.pool["y"]), (n,), generator=self.rng, device=self.device)
        return to_float(self.pool["x"][idx]), self.pool["y"][idx], self.pool["logits"][idx]

    def loss(self, x: Tensor, y: Tensor, stream: TaskStream, t: int) -> Tensor:
        if self.pool is None:
            return super().loss(x, y, stream, t)
        x_old, y_old, old_logits = self.replay_batch(self.batch_size)
        logits = self.solver(torch.cat([x, x_old]))
        new_loss = F.cross_entropy(logits[: len(y)], y)
        if self.soft_labels:  # distillation over all outputs: T² · KL(softmax(z_old / T) ‖ softmax(z / T))
            T = self.temperature
            replay_loss = T ** 2 * F.kl_div(F.log_softmax(logits[len(y):] / T, 1), F.softmax(old_logits / T, 1),
                                            reduction="batchmean")
        else:
            replay_loss = F.cross_entropy(logits[len(y):], y_old)
        r = 1 / (t + 1)  # the new task is one of t + 1 tasks
        return r * new_loss + (1 - r) * replay_loss

    def after_task(self, stream: TaskStream, t: int) -> None:
        real = stream[t].train_x

        def sample_real(n: int) -> tuple[Tensor, Tensor]:
            """A labelled batch for the generator: a fraction 1/t real task-t images, the rest from the replay pool."""
            n_real = n if self.pool is None else max(1, round(n / (t + 1)))
            idx = torch.randint(len(real), (n_real,), generator=self.rng, device=self.device)
            x, y = to_float(real[idx]), stream[t].train_y[idx]
            if n_real < n:
                old = torch.randint(len(self.pool["y"]), (n - n_real,), generator=self.rng, device=self.device)
                x, y = torch.cat([x, to_float(self.pool["x"][old])]), torch.cat([y, self.pool["y"][old]])
            return x, y

        self.generator_history.append(self.train_generator(sample_real, stream, t))
        with torch.no_grad():
            self.samples.append(to_uint8(self.blacken(self.draw(100, stream, t + 1))))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.state_dict(), "samples": self.samples,
                "generator_history": self.generator_history, "pool_label_counts": self.pool_label_counts,
                "pool_agreement": self.pool_agreement}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.load_state_dict(state["generator"])
        self.generator_history, self.pool_label_counts = state["generator_history"], state["pool_label_counts"]
        self.samples, self.pool_agreement = state["samples"], state["pool_agreement"]


class DGR(GenerativeReplay):
    """Deep Generative Replay (Shin et al. 2017) with a WGAN-GP generator (`grlib.gan.WGANGP`)."""

    name = "dgr"

    def __init__(self, solver: nn.Module, generator, gen_iters: int, gen_batch_size: int = 64, **kwargs):
        super().__init__(solver, generator, gen_iters, **kwargs)
        self.gen_batch_size = gen_batch_size

    def settings(self) -> dict:
        return {**super().settings(), "gen_batch_size": self.gen_batch_size}

    def draw(self, n: int, stream: TaskStream, t: int) -> Tensor:
        return self.generator.sample(n)

    def replay_pool(self, seen: list[int]) -> tuple[Tensor, Tensor]:
        """x̃ ~ G, labelled ỹ = argmax over the seen classes of the old solver S(x̃)."""
        x = self.generator.sample(self.pool_size)
        y = torch.as_tensor(seen, device=x.device)[self.old_solver_logits(x)[:, seen].argmax(1)]
        if self.balance_replay:
            keep = balanced_indices(y, tuple(seen), self.pool_size, self.rng)
            x, y = x[keep], y[keep]
        return x, y

    def train_generator(self, sample_real, stream: TaskStream, t: int) -> dict[str, list[float]]:
        return self.generator.train(lambda n: sample_real(n)[0], self.gen_iters, self.gen_batch_size,
                                    progress=self.progress, desc=f"WGAN-GP task {t + 1}/{len(stream)}")


class DDGR(GenerativeReplay):
    """Diffusion-based generative replay (Gao & Liu 2023): a DDPM (`grlib.diffusion.Diffusion`) replays the old
    classes in equal numbers, each sample guided towards its class by the old solver and labelled with that class."""

    name = "ddgr"

    def __init__(self, solver: nn.Module, generator, gen_iters: int, gen_batch_size: int = 64,
                 sample_steps: int = 20, guidance_scale: float = 1.0, **kwargs):
        super().__init__(solver, generator, gen_iters, **kwargs)
        if sample_steps < 1 or guidance_scale < 0:
            raise ValueError(f"sample_steps must be ≥ 1 and guidance_scale ≥ 0; got {sample_steps}, {guidance_scale}")
        self.gen_batch_size, self.sample_steps, self.guidance_scale = gen_batch_size, sample_steps, guidance_scale

    def settings(self) -> dict:
        return {**super().settings(), "gen_batch_size": self.gen_batch_size, "sample_steps": self.sample_steps,
                "guidance_scale": self.guidance_scale}

    def guided_samples(self, y: Tensor, scale: float | None = None) -> Tensor:
        """DDIM samples of the classes y, each pulled towards its class by the solver (at `scale`, else the
        strategy's guidance scale)."""
        return self.generator.sample(len(y), steps=self.sample_steps, y=y, guide=solver_guide(self.solver),
                                     scale=self.guidance_scale if scale is None else scale)

    def draw(self, n: int, stream: TaskStream, t: int) -> Tensor:
        seen = torch.as_tensor(stream.classes_up_to(t - 1), device=self.device)
        return self.guided_samples(seen.repeat(-(-n // len(seen)))[:n])

    def replay_pool(self, seen: list[int]) -> tuple[Tensor, Tensor]:
        """For each seen class c, pool_size/|seen| DDIM samples guided towards c by the old solver, labelled c."""
        y = torch.as_tensor(seen, device=self.device).repeat_interleave(self.pool_size // len(seen))
        return self.guided_samples(y), y

    def train_generator(self, sample_real, stream: TaskStream, t: int) -> dict[str, list[float]]:
        return self.generator.train(sample_real, self.gen_iters, self.gen_batch_size, progress=self.progress,
                                    desc=f"DDPM task {t + 1}/{len(stream)}")
