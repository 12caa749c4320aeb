"""Stops for training that went wrong, shared by every training loop (solver, WGAN-GP, diffusion)."""
from __future__ import annotations

import math


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite (or exploded): the run stops instead of producing, or caching, garbage."""


def check_loss(loss: float, where: str, step: int, hint: str, limit: float = math.inf) -> None:
    """Raise TrainingDivergedError if `loss` is not finite or exceeds `limit` in size; `where` names the model and
    task, `hint` says what to try."""
    if not math.isfinite(loss) or abs(loss) > limit:
        raise TrainingDivergedError(f"{where}: the loss became {loss:.3g} at step {step}; {hint}")


def check_lr(lr: float, who: str) -> None:
    """A ValueError unless `lr` is a number in (0, 1]: Adam moves each weight by about lr a step, so a larger one
    can only diverge (and a non-finite or non-positive one cannot train)."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= 1:
        raise ValueError(f"{who}: the learning rate must be a number in (0, 1], got {lr!r}; Adam moves each weight "
                         f"by about lr a step, so a larger one can only diverge")
