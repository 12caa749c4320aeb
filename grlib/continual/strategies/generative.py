"""Generative replay: the old tasks' data is drawn from a generator instead of stored (notebooks 04, 05 and 07)."""
from __future__ import annotations

import copy
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from grlib.models.generators import Generator, DataSource
from grlib.models.guidance import SolverGuide
from grlib.models.samplers import make_sampler
from grlib.continual.data import TaskStream, to_float
from grlib.continual.strategies.replay import Replay, distillation


def to_uint8(x: Tensor) -> Tensor:
    """Images in [0, 1] -> uint8 0..255, the format every batch in the course is drawn from."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def match_histogram(x: Tensor, reference: Tensor) -> Tensor:
    """Images x in [0, 1] with their grey levels remapped so that their histogram matches `reference` (counts of the
    256 levels): each level goes to the reference level at the same place in the cumulative distribution."""
    levels = to_uint8(x).long()
    counts = torch.bincount(levels.flatten(), minlength=256).double()
    mid_cdf = (counts.cumsum(0) - counts / 2) / counts.sum()  # F_replay at the middle of each level's mass
    reference_cdf = reference.to(x.device).double().cumsum(0) / reference.sum()  # F_real
    table = torch.searchsorted(reference_cdf, mid_cdf).clamp(max=255)  # F_real⁻¹(F_replay(v))
    return table[levels].to(x.dtype) / 255


def balanced_indices(labels: Tensor, classes: tuple[int, ...], n: int, generator: torch.Generator) -> Tensor:
    """n indices into `labels`, an equal share for each of `classes` present (drawn with replacement)."""
    present = [c for c in classes if (labels == c).any()]
    picks = []
    for k, c in enumerate(present):
        idx = (labels == c).nonzero().squeeze(1)
        share = n // len(present) + (k < n % len(present))
        picks.append(idx[torch.randint(len(idx), (share,), generator=generator, device=generator.device)])
    return torch.cat(picks)


@dataclass(eq=False, repr=False)
class GenerativeReplay(Replay):
    """The scholar of DGR: a solver plus a generator (`grlib.models.generators.Generator`) of every task seen so far.

    Before task t the previous scholar draws a replay pool (`replay_pool`): generated images labelled by the old
    solver. As in Shin et al. (2017), the solver learns r·L_CE(new) + (1 − r)·L_replay (the `Replay` loss; with
    `soft_labels`, L_replay distils the old solver) and the generator learns from task t's data mixed with the
    pool, a fraction r real; the course sets r = 1/t. The last task's generator is not trained: nothing comes after
    it. `match_levels` matches the replay's grey levels to the real images seen (`match_histogram`), removing a
    generator's faint background haze, a shortcut for the solver."""

    name: ClassVar[str] = "generative-replay"
    generator: Generator
    _: KW_ONLY
    gen_iters: int
    gen_batch_size: int = 64
    pool_size: int = 10000
    soft_labels: bool = False
    temperature: float = 2.0
    match_levels: bool = False
    new_task_weight: str | float = "1/t"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gen_iters < 1 or self.gen_batch_size < 1 or self.pool_size < 1 or self.temperature <= 0:
            raise ValueError(f"gen_iters, gen_batch_size and pool_size must be positive and temperature > 0; got "
                             f"{self.gen_iters}, {self.gen_batch_size}, {self.pool_size}, {self.temperature}")
        self.pool: dict[str, Tensor] | None = None
        self.generator_history: list[dict[str, list[float]]] = []
        self.pool_label_counts: list[list[int]] = []  # the old solver's reading of each replay pool, per class
        self.samples: list[Tensor] = []  # 100 generated images (uint8) after each task but the last
        self.pool_agreement: list[float] = []  # share of each pool whose label the old solver reads the same
        self.level_counts = torch.zeros(256, dtype=torch.long)  # grey levels of the real training images seen

    def replay_pool(self, seen: list[int]) -> tuple[Tensor, Tensor]:
        """`pool_size` replayed images in [0, 1] of the classes `seen`, and their labels."""
        raise NotImplementedError

    def draw(self, n: int, seen: tuple[int, ...]) -> Tensor:
        """n images in [0, 1] as the generator replays the classes `seen` (for the sample grids)."""
        raise NotImplementedError

    def to_real_levels(self, x: Tensor) -> Tensor:
        """Replayed images x as replay uses them: with `match_levels`, their grey levels matched to the real images
        seen so far; otherwise unchanged."""
        return match_histogram(x, self.level_counts) if self.match_levels and self.level_counts.any() else x

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
        x = self.to_real_levels(x)
        logits = self.old_solver_logits(x)
        self.solver.train()
        read = torch.as_tensor(seen, device=x.device)[logits[:, seen].argmax(1)]  # what the old solver sees
        self.pool_label_counts.append(torch.bincount(read, minlength=stream.n_classes).tolist())
        self.pool_agreement.append((read == y).float().mean().item())
        self.pool = {"x": to_uint8(x), "y": y, "logits": logits}

    def replay_batch(self, n: int) -> tuple[Tensor, Tensor, Tensor] | None:
        if self.pool is None:
            return None
        idx = torch.randint(len(self.pool["y"]), (n,), generator=self.rng, device=self.device)
        return to_float(self.pool["x"][idx]), self.pool["y"][idx], self.pool["logits"][idx]

    def replay_loss(self, logits: Tensor, y_old: Tensor, teacher: Tensor | None) -> Tensor:
        """Hard labels: cross-entropy with the pool's labels; `soft_labels`: distillation of the old solver."""
        if self.soft_labels:
            return distillation(logits, teacher, self.temperature)
        return F.cross_entropy(logits, y_old)

    def generator_data(self, stream: TaskStream, t: int, replay: bool = True) -> DataSource:
        """What the generator learns from: labelled batches of real task-t images and, with `replay`, the old
        classes' replay (`generator_replay`), a fraction 1/t real."""
        real_x, real_y = stream[t].train_x, stream[t].train_y
        replayed = self.generator_replay(stream, t) if replay and t > 0 else None

        def sample_real(n: int) -> tuple[Tensor, Tensor]:
            n_real = n if replayed is None else max(1, round(n / (t + 1)))
            idx = torch.randint(len(real_x), (n_real,), generator=self.rng, device=self.device)
            x, y = to_float(real_x[idx]), real_y[idx]
            if n_real < n:
                old_x, old_y = replayed(n - n_real)
                x, y = torch.cat([x, old_x]), torch.cat([y, old_y])
            return x, y

        return sample_real

    def generator_replay(self, stream: TaskStream, t: int) -> DataSource:
        """The old classes' share of the generator's batches: draws from the replay pool."""
        def from_pool(n: int) -> tuple[Tensor, Tensor]:
            old = torch.randint(len(self.pool["y"]), (n,), generator=self.rng, device=self.device)
            return to_float(self.pool["x"][old]), self.pool["y"][old]

        return from_pool

    def after_task(self, stream: TaskStream, t: int) -> None:
        """The generator learns task t so that later tasks can replay it; after the stream's last task nothing
        will, so it is not trained there (its weights stay those that drew the last pool)."""
        self.level_counts += torch.bincount(stream[t].train_x.flatten().long(), minlength=256).cpu()
        if t == len(stream) - 1:
            return
        self.generator_history.append(self.generator.train(
            self.generator_data(stream, t), self.gen_iters, self.gen_batch_size, progress=self.progress,
            desc=f"{self.name} generator, task {t + 1}/{len(stream)}"))
        with torch.no_grad():
            self.samples.append(to_uint8(self.to_real_levels(self.draw(100, stream.classes_up_to(t)))))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.state_dict(), "samples": self.samples,
                "generator_history": self.generator_history, "pool_label_counts": self.pool_label_counts,
                "pool_agreement": self.pool_agreement, "level_counts": self.level_counts}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.generator.load_state_dict(state["generator"])
        self.generator_history, self.pool_label_counts = state["generator_history"], state["pool_label_counts"]
        self.samples, self.pool_agreement = state["samples"], state["pool_agreement"]
        self.level_counts = state["level_counts"]


@dataclass(eq=False, repr=False)
class DGR(GenerativeReplay):
    """Deep Generative Replay (Shin et al. 2017) with an unconditional generator (the WGAN-GP, `grlib.models.gan.WGANGP`):
    replay is labelled by the old solver. `balance_replay` resamples the pool to equal shares per class."""

    name: ClassVar[str] = "dgr"
    _: KW_ONLY
    balance_replay: bool = False

    def draw(self, n: int, seen: tuple[int, ...]) -> Tensor:
        return self.generator.sample(n)

    def replay_pool(self, seen: list[int]) -> tuple[Tensor, Tensor]:
        """x̃ ~ G, labelled ỹ = argmax over the seen classes of the old solver S(x̃), read as replay shows x̃ (its
        grey levels matched with `match_levels`)."""
        x = self.generator.sample(self.pool_size)
        read = self.old_solver_logits(self.to_real_levels(x))
        y = torch.as_tensor(seen, device=x.device)[read[:, seen].argmax(1)]
        if self.balance_replay:
            keep = balanced_indices(y, tuple(seen), self.pool_size, self.rng)
            x, y = x[keep], y[keep]
        return x, y


@dataclass(eq=False, repr=False)
class DDGR(GenerativeReplay):
    """Diffusion-based generative replay (Gao & Liu 2023): a DDPM (`grlib.models.diffusion.Diffusion`) replays the old
    classes in equal numbers, each sample guided towards its class by the old solver
    (`grlib.models.guidance.SolverGuide`) and labelled with that class. `sampler` (a name in
    `grlib.models.samplers.SAMPLERS`), `sample_steps` and `eta` say how it is drawn (`grlib.models.samplers.draw`)."""

    name: ClassVar[str] = "ddgr"
    _: KW_ONLY
    sample_steps: int = 20
    guidance_scale: float = 1.0
    eta: float = 0.0
    sampler: str = "ddim"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sample_steps < 1 or self.guidance_scale < 0:
            raise ValueError(f"sample_steps must be ≥ 1 and guidance_scale ≥ 0; "
                             f"got {self.sample_steps}, {self.guidance_scale}")
        make_sampler(self.sampler, self.sample_steps, self.eta)  # raises before any training, not at the first replay

    def guided_samples(self, y: Tensor, scale: float | None = None) -> Tensor:
        """Samples of the classes y (DDIM with noise η, or DPM-Solver++(2M)), each step pulled towards its class by
        the solver (at `scale`, else the strategy's guidance scale)."""
        guide = SolverGuide(self.solver, self.guidance_scale if scale is None else scale)
        return self.generator.sample(len(y), y, steps=self.sample_steps, eta=self.eta, guide=guide,
                                     sampler=self.sampler)

    def draw(self, n: int, seen: tuple[int, ...]) -> Tensor:
        classes = torch.as_tensor(seen, device=self.device)
        return self.guided_samples(classes.repeat(-(-n // len(classes)))[:n])

    def replay_pool(self, seen: list[int]) -> tuple[Tensor, Tensor]:
        """For each seen class c, pool_size/|seen| samples guided towards c by the old solver, labelled c."""
        y = torch.as_tensor(seen, device=self.device).repeat_interleave(self.pool_size // len(seen))
        return self.guided_samples(y), y


@dataclass(eq=False, repr=False)
class MeRGAN(GenerativeReplay):
    """Memory replay GANs (Wu et al. 2018): a class-conditional WGAN-GP (`grlib.models.gan.WGANGP(n_classes=...)`) replays
    every old class in the numbers asked for, each sample labelled with the class it was drawn for.

    `variant="jtr"` (joint training with replay): the generator learns from real task-t data mixed with its own
    replay of the old classes, drawn from the replay pool or, with `fresh_replay`, freshly from a frozen copy of the
    previous generator at every step (as the paper's replay generator does). `"ra"` (replay alignment): it learns
    from real task-t data only, while its outputs for the old classes are held to the previous generator's for the
    same noise and class (the generator's `alignment` weight)."""

    name: ClassVar[str] = "mergan"
    _: KW_ONLY
    variant: str = "jtr"
    fresh_replay: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in ("jtr", "ra"):
            raise ValueError(f"MeRGAN's variant is 'jtr' or 'ra', got {self.variant!r}")
        if self.variant == "ra" and not getattr(self.generator, "alignment", 0):
            raise ValueError("MeRGAN-RA needs a generator with replay alignment: WGANGP(n_classes=..., alignment=λ > 0)")

    def draw(self, n: int, seen: tuple[int, ...]) -> Tensor:
        classes = torch.as_tensor(seen, device=self.device)
        return self.generator.sample(n, classes.repeat(-(-n // len(classes)))[:n])

    def replay_pool(self, seen: list[int]) -> tuple[Tensor, Tensor]:
        """pool_size/|seen| samples of each seen class c, drawn by G(z, c) and labelled c."""
        y = torch.as_tensor(seen, device=self.device).repeat_interleave(self.pool_size // len(seen))
        return self.generator.sample(len(y), y), y

    def generator_data(self, stream: TaskStream, t: int, replay: bool = True) -> DataSource:
        return super().generator_data(stream, t, replay=self.variant == "jtr")

    def generator_replay(self, stream: TaskStream, t: int) -> DataSource:
        """The pool, or with `fresh_replay` G_{t-1}(z, c) drawn anew for old classes c taken uniformly."""
        if not self.fresh_replay:
            return super().generator_replay(stream, t)
        previous = copy.deepcopy(self.generator)  # G_{t-1}: the generator has not started task t yet
        old = torch.as_tensor(stream.classes_up_to(t - 1), device=self.device)

        def fresh(n: int) -> tuple[Tensor, Tensor]:
            c = old[torch.randint(len(old), (n,), generator=self.rng, device=self.device)]
            return previous.sample(n, c), c

        return fresh
