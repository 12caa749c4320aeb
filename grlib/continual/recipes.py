"""One recipe per method: `build(method, profile, stream, seed, **overrides)` makes a strategy exactly as the course
does. The notebooks, `python -m grlib bench` and notebook 09 all build through here, so the same method always has
the same settings, and so the same checkpoint; a notebook passes the arguments its lesson is about as overrides.

Adding a method: see CONTRIBUTING.md."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from grlib import continual
from grlib.core.checkpoints import cached
from grlib.core.rng import seeded
from grlib.models import diffusion, gan, nets
from grlib.models.unet import UNet
from grlib.continual import data
from grlib.continual.data import TaskStream
from grlib.continual.memory import ClassBalancedBuffer, ReservoirBuffer
from grlib.continual.profiles import Profile, get_profile
from grlib.continual.strategies import DDGR, DGR, ER, EWC, IMM, MAS, PASS, SI, Finetune, Joint, MeRGAN, Strategy
from grlib.continual.tuned import tuned


@dataclass(frozen=True)
class Context:
    """What every recipe knows: the profile's budgets, the stream, the seed and the solver's architecture."""
    profile: Profile
    stream: TaskStream
    seed: int
    solver_name: str | None  # None: the course's default, the MLP

    @property
    def device(self) -> torch.device:
        return self.stream[0].train_x.device

    def solver(self) -> nn.Module:
        """A fresh solver, its initial weights set by the seed."""
        return nets.make_solver(self.solver_name or "mlp", self.stream.image_shape, self.stream.n_classes,
                                seed=self.seed, device=self.device)

    def budget(self) -> dict:
        """Solver steps, batch size, learning rate and seed: Permuted-MNIST has its own steps and rate."""
        P, permuted = self.profile, self.stream.name.startswith("permuted-")
        return {"iters": P.perm_iters if permuted else P.iters, "batch_size": P.batch_size,
                "lr": P.perm_lr if permuted else P.lr, "seed": self.seed}


def _finetune(c: Context, **kw) -> Strategy:
    return Finetune(c.solver(), **{**c.budget(), **kw})


def _joint(c: Context, **kw) -> Strategy:
    return Joint(c.solver(), **{**c.budget(), **kw})


def _ewc(c: Context, **kw) -> Strategy:
    return EWC(c.solver(), **{**c.budget(), "fisher_samples": c.profile.fisher_samples, **kw})


def _si(c: Context, **kw) -> Strategy:
    return SI(c.solver(), **{**c.budget(), **kw})


def _mas(c: Context, **kw) -> Strategy:
    return MAS(c.solver(), **{**c.budget(), "importance_samples": c.profile.fisher_samples, **kw})


def _imm(c: Context, fisher_factor: int, **kw) -> Strategy:
    """IMM with a Fisher sample `fisher_factor` times the profile's."""
    return IMM(c.solver(), **{**c.budget(), "fisher_samples": fisher_factor * c.profile.fisher_samples, **kw})


def _er(c: Context, buffer_size: int, reservoir: bool, **kw) -> Strategy:
    """`buffer_size` real samples, class-balanced (or chosen by reservoir sampling)."""
    buffer = ReservoirBuffer(buffer_size) if reservoir else ClassBalancedBuffer(buffer_size, c.stream.n_classes)
    return ER(c.solver(), kw.pop("buffer", buffer), **{**c.budget(), **kw})


def _dgr(c: Context, ema_decay: float, critic_steps: int, gan_lr: float, critic_lr: float | None, gp_every: int,
         share_fakes: bool, **kw) -> Strategy:
    """A convolutional WGAN-GP (notebook 03) whose replay the old solver labels."""
    wgan = gan.WGANGP(c.stream.image_shape, width=c.profile.gan_width, device=c.device, seed=c.seed,
                      ema_decay=ema_decay, critic_steps=critic_steps, lr=gan_lr, critic_lr=critic_lr,
                      gp_every=gp_every, share_fakes=share_fakes)
    return DGR(c.solver(), kw.pop("generator", wgan), **{**c.budget(), "gen_iters": c.profile.dgr_gen_iters,
                                                          "pool_size": c.profile.dgr_pool, **kw})


def _ddgr(c: Context, patch: int, prediction: str, ema_decay: float, min_snr_gamma: float | None,
          **kw) -> Strategy:
    """A class-conditional DDPM (notebooks 06-07) on `patch`×`patch` blocks of pixels, guided by the old solver."""
    unet = UNet(c.stream.image_shape, ch=c.profile.ddpm_ch, n_classes=c.stream.n_classes, seed=c.seed, patch=patch)
    ddpm = diffusion.Diffusion(unet, prediction=prediction, ema_decay=ema_decay, min_snr_gamma=min_snr_gamma,
                               device=c.device)
    return DDGR(c.solver(), kw.pop("generator", ddpm), **{
        **c.budget(), "gen_iters": c.profile.ddgr_gen_iters, "pool_size": c.profile.ddgr_pool,
        "sample_steps": c.profile.sample_steps, **kw})


def _mergan(c: Context, variant: str, alignment: float, auxiliary: float, class_norm: bool, ema_decay: float,
            critic_steps: int, **kw) -> Strategy:
    """A class-conditional WGAN-GP (notebook 05) that replays every old class in equal numbers: `alignment` is
    replay alignment's weight λ for the "ra" variant, `auxiliary` the weight β of the paper's AC-GAN critic instead
    of the projection critic, `class_norm` the per-class batch norms (`grlib.models.gan.ClassBatchNorm2d`),
    `ema_decay` the decay of the generator's moving average (0: the weights as trained)."""
    wgan = gan.WGANGP(c.stream.image_shape, width=c.profile.gan_width, device=c.device, seed=c.seed,
                      n_classes=c.stream.n_classes, alignment=alignment if variant == "ra" else 0.0,
                      auxiliary=auxiliary, class_norm=class_norm, ema_decay=ema_decay, critic_steps=critic_steps)
    return MeRGAN(c.solver(), kw.pop("generator", wgan), **{**c.budget(), "gen_iters": c.profile.dgr_gen_iters,
                                                             "pool_size": c.profile.dgr_pool, "variant": variant,
                                                             **kw})


def _pass(c: Context, **kw) -> Strategy:
    """The paper's loss weights on the course's solver, its last layer replaced by a head over (class, rotation)
    pairs."""
    solver = nets.make_rotation_solver(c.solver_name or "mlp", c.stream.image_shape, c.stream.n_classes, seed=c.seed,
                                       device=c.device)
    return PASS(solver, **{**c.budget(), **kw})


@dataclass(frozen=True)
class Method:
    strategy: type[Strategy]
    make: Callable[..., Strategy]
    label: str  # how tables and figures name it
    notebook: str  # the notebook that teaches it, by number


METHODS: dict[str, Method] = {
    "finetune": Method(Finetune, _finetune, "fine-tuning", "01"),
    "joint": Method(Joint, _joint, "joint (all data)", "01"),
    "ewc": Method(EWC, _ewc, "EWC", "01"),
    "si": Method(SI, _si, "SI", "01"),
    "mas": Method(MAS, _mas, "MAS", "01"),
    "imm": Method(IMM, _imm, "IMM", "01"),
    "er": Method(ER, _er, "ER", "02"),
    "dgr": Method(DGR, _dgr, "DGR (WGAN-GP)", "04"),
    "mergan": Method(MeRGAN, _mergan, "MeRGAN (conditional WGAN-GP)", "05"),
    "ddgr": Method(DDGR, _ddgr, "DDGR (DDPM + guidance)", "07"),
    "pass": Method(PASS, _pass, "PASS (prototypes, no replay)", "08"),
}


def method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def options(name: str) -> list[str]:
    """What `build` accepts as overrides for a method: its recipe's own options and its strategy's fields."""
    m = method(name)
    own = [p for p in inspect.signature(m.make).parameters if p not in ("c", "kw")]
    return own + [f.name for f in fields(m.strategy) if f.name not in ("solver", *own)]


def build(name: str, profile: Profile | str | None, stream: TaskStream, seed: int = 0, solver: str | None = None,
          **overrides) -> Strategy:
    """The strategy `name` as the course builds it for this profile, stream and seed, with its settings from
    `grlib.continual.tuned`; `overrides` replace any of them (e.g. `build("ewc", P, split, strength=1e3)`,
    `build("er", P, split, buffer_size=500)`). `solver` names the solver's architecture ("mlp" or "cnn"; None: the
    MLP)."""
    unknown = sorted(set(overrides) - set(options(name)))
    if unknown:
        raise ValueError(f"{name} has no setting {', '.join(map(repr, unknown))}; it takes {', '.join(options(name))}")
    P = profile if isinstance(profile, Profile) else get_profile(profile)
    return method(name).make(Context(P, stream, seed, solver), **{**tuned(name, stream.scenario), **overrides})


def judge(profile: Profile | str | None, seed: int = 0, device: torch.device | str | None = None) -> nn.Module:
    """A CNN trained on all of real MNIST (cached): an independent reader of generated digits, which no replay ever
    trained (notebook 03 trains it; notebooks 04-07 read replay with it)."""
    P = profile if isinstance(profile, Profile) else get_profile(profile)
    mnist = data.split_stream("mnist", groups=[list(range(10))], device=device or nets.pick_device())
    cnn = build("finetune", P, mnist, seed, solver="cnn", iters=P.chain_iters)
    continual.run(cnn, mnist, progress=False)
    return cnn.solver.eval()


def mnist_wgan(profile: Profile | str | None, seed: int = 0, iters: int | None = None, batch_size: int = 64,
               device: torch.device | str | None = None, progress: bool = True, root: Path | None = None,
               folder: Path | None = None) -> tuple[gan.WGANGP, dict]:
    """The WGAN-GP of notebook 03, trained on all of MNIST (in `root`) for `iters` generator steps (default: the
    profile's), cached (in `folder`); returns the model and {"history": losses, "snapshots": samples during
    training}."""
    P = profile if isinstance(profile, Profile) else get_profile(profile)
    device = device or nets.pick_device()
    iters = iters or P.gan_iters
    x, y = data.load("mnist", root=root, device=device)
    wgan = gan.WGANGP((1, 28, 28), width=P.gan_width, device=device, seed=seed)
    rng = torch.Generator(device=device).manual_seed(seed)

    def sample_real(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = data.batch_indices(len(y), n, rng, device)
        return data.to_float(x[idx]), y[idx]

    def train() -> dict:
        with seeded(seed):
            return gan.train_with_snapshots(wgan, sample_real, iters, batch_size, seed=seed, progress=progress)

    settings = {"model": wgan.settings, "data": data.fingerprint("mnist", root=root), "iters": iters,
                "batch_size": batch_size}
    saved = cached("wgan-gp-mnist", settings, train, folder)
    wgan.load_state_dict(saved["wgan"])
    return wgan, saved
