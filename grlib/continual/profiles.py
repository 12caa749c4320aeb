"""Budgets: smoke (tests, seconds), quick (a laptop CPU, minutes), full (a GPU, paper scale)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from grlib.core.config import profile_name


@dataclass(frozen=True)
class Profile:
    """Training budgets shared by the notebooks; a notebook's parameters cell picks one by name."""
    name: str
    iters: int          # solver Adam steps per Split-MNIST task
    batch_size: int
    lr: float
    perm_tasks: int     # Permuted-MNIST: number of tasks
    perm_iters: int     # ... and solver steps per task
    perm_lr: float
    buffer_sizes: tuple[int, ...]  # experience replay: the sweep of stored samples (notebook 02)
    fisher_samples: int            # EWC: images used to estimate the Fisher information after each task
    gan_width: int                 # WGAN-GP: channels of the first conv layer (G and critic)
    gan_iters: int                 # WGAN-GP generator steps on all of MNIST (notebook 03, DGR's Table 1)
    dgr_gen_iters: int             # DGR: generator steps per task
    dgr_pool: int                  # DGR: replayed images drawn before each task
    chain_iters: int               # DGR Table 1: solver steps per scholar in the chain
    chain_pool: int                # DGR Table 1: generated images each scholar teaches from
    ddpm_ch: int                   # DDPM: UNet channels at full resolution
    ddpm_iters: int                # DDPM steps on all of MNIST (notebook 06)
    ddgr_gen_iters: int            # DDGR: diffusion steps per task
    ddgr_pool: int                 # DDGR: replayed images drawn before each task
    sample_steps: int              # DDGR: sampler steps when replaying
    ancestral_samples: int         # notebook 06: images drawn with all T steps, to compare with DDIM

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", iters=60, batch_size=128, lr=1e-3, perm_tasks=3, perm_iters=60, perm_lr=1e-3,
                     buffer_sizes=(100, 1000), fisher_samples=200,
                     gan_width=16, gan_iters=40, dgr_gen_iters=20, dgr_pool=500, chain_iters=60,
                     chain_pool=1000, ddpm_ch=16, ddpm_iters=30, ddgr_gen_iters=20, ddgr_pool=200,
                     sample_steps=5, ancestral_samples=10),
    "quick": Profile("quick", iters=500, batch_size=128, lr=1e-3, perm_tasks=10, perm_iters=500, perm_lr=1e-3,
                     buffer_sizes=(100, 500, 1000, 5000), fisher_samples=500,
                     gan_width=16, gan_iters=2000, dgr_gen_iters=1000, dgr_pool=10000, chain_iters=2000,
                     chain_pool=20000, ddpm_ch=16, ddpm_iters=1500, ddgr_gen_iters=900, ddgr_pool=5000,
                     sample_steps=10, ancestral_samples=200),
    # van de Ven, Siegelmann & Tolias (2020): 2,000 steps a Split-MNIST task, 5,000 a Permuted-MNIST task.
    "full": Profile("full", iters=2000, batch_size=128, lr=1e-3, perm_tasks=10, perm_iters=5000, perm_lr=1e-4,
                    buffer_sizes=(100, 200, 500, 1000, 2000, 5000, 10000), fisher_samples=1000,
                    gan_width=32, gan_iters=10000, dgr_gen_iters=5000, dgr_pool=20000, chain_iters=5000,
                    chain_pool=50000, ddpm_ch=32, ddpm_iters=20000, ddgr_gen_iters=5000, ddgr_pool=20000,
                    sample_steps=50, ancestral_samples=2000),
}


def get_profile(name: str | None = None) -> Profile:
    """A profile by name; None means $GRLIB_PROFILE, else "auto" (full on CUDA, quick elsewhere)."""
    name = profile_name(name)
    if name == "auto":
        name = "full" if torch.cuda.is_available() else "quick"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join([*PROFILES, 'auto'])}")
    return PROFILES[name]
