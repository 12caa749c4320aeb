"""An exponential moving average of a network's weights, whose decay warms up: both generators draw their samples
from it (notebooks 05 and 06)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel


def ema_with_warmup(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """The update of `torch.optim.swa_utils.AveragedModel` for an EMA whose decay warms up:
    θ_ema ← d θ_ema + (1 − d) θ with d = min(decay, (1 + n)/(10 + n)) after n updates, so that the average does not
    cling to the random initial weights on a short budget."""
    def update(averaged: list[Tensor], current: list[Tensor], n_averaged: Tensor) -> None:
        n = int(n_averaged)
        d = min(decay, (1 + n) / (10 + n))
        for a, c in zip(averaged, current):
            if a.is_floating_point():
                a.lerp_(c, 1 - d)  # a + (1 − d)(c − a) = d·a + (1 − d)·c
            else:  # a count, such as batch norm's num_batches_tracked, is copied
                a.copy_(c)
    return update


def moving_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An EMA of `model`'s weights and buffers with the warm-up of `ema_with_warmup`; None when decay is 0."""
    return AveragedModel(model, multi_avg_fn=ema_with_warmup(decay), use_buffers=True) if decay else None
