"""Milliseconds a WGAN-GP generator step takes (with its critic steps) on this machine, for DGR's critic schedules.

Times `WGANGP.train` on random 28×28 images after a warm-up, so it measures compute, not data loading. Run it with
OMP_NUM_THREADS=1 and nothing else running; docs/record.md ("The learning rate, and two critic steps") quotes it.

    OMP_NUM_THREADS=1 python scripts/gan_step_times.py
"""
from __future__ import annotations

import argparse
import time

import torch

from grlib.models.gan import WGANGP

SCHEDULES = [(5, 5, False), (5, 5, True), (3, 3, False), (3, 3, True), (2, 2, False), (2, 2, True), (1, 1, False)]


def ms_per_step(critic_steps: int, gp_every: int, share_fakes: bool, steps: int, warmup: int, width: int) -> float:
    images = torch.rand(10_000, 1, 28, 28)

    def sample_real(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return images[torch.randint(len(images), (n,))], torch.zeros(n, dtype=torch.long)

    wgan = WGANGP(width=width, critic_steps=critic_steps, gp_every=gp_every, share_fakes=share_fakes, ema_decay=0.995)
    wgan.train(sample_real, warmup, progress=False)
    start = time.perf_counter()
    wgan.train(sample_real, steps, progress=False)
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="generator steps timed (default 60)")
    parser.add_argument("--warmup", type=int, default=10, help="generator steps before the clock starts")
    parser.add_argument("--width", type=int, default=16, help="the GAN's width (the quick profile's: 16)")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}; width {args.width}, batch 64")
    for critic_steps, gp_every, share_fakes in SCHEDULES:
        ms = ms_per_step(critic_steps, gp_every, share_fakes, args.steps, args.warmup, args.width)
        print(f"{critic_steps} critic steps, the penalty on every {gp_every}, "
              f"{'one batch of fakes shared' if share_fakes else 'fresh fakes each critic step'}: {ms:6.1f} ms")


if __name__ == "__main__":
    main()
