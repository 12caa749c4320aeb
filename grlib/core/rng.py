"""Seeded randomness that leaves torch's global random state as it found it."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global RNG seeded by `seed`, then restore the RNG: what the block draws (initial
    weights, a task's training) depends on `seed` alone, and nothing outside the block sees a change."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
