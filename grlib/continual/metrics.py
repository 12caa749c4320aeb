"""Continual-learning metrics on accuracy matrices (notebook 01 explains them).

R[i, j] is the accuracy (%) on task j's test set after training on tasks 0..i;
C[i, c] the same for class c. T is the number of tasks.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from grlib.core.checkpoints import tensors
from grlib.continual.strategies import Joint, Strategy


def _matrix(values) -> Tensor:
    m = torch.as_tensor(values, dtype=torch.float64)
    if m.dim() != 2:
        raise ValueError(f"expected an accuracy matrix (2-D), got shape {tuple(m.shape)}")
    return m


def accuracy_curve(R, test_sizes: Sequence[int] | None = None) -> list[float]:
    """A_i for i = 0..T-1: accuracy on the pooled test sets of tasks 0..i after task i."""
    R = _matrix(R)
    w = torch.ones(R.shape[1], dtype=torch.float64) if test_sizes is None else torch.as_tensor(test_sizes, dtype=torch.float64)
    return [float((R[i, : i + 1] * w[: i + 1]).sum() / w[: i + 1].sum()) for i in range(R.shape[0])]


def average_accuracy(R, test_sizes: Sequence[int] | None = None) -> float:
    """A_T = Σ_j n_j R[T-1, j] / Σ_j n_j: accuracy on every class seen, after the last task."""
    return accuracy_curve(R, test_sizes)[-1]


def forgetting(acc, first_seen: Sequence[int]) -> float:
    """F_T = mean over units u learned before the last task of max_{first_seen[u] <= k < T-1} acc[k, u] - acc[T-1, u].

    With per-class accuracies (units = classes) this is DDGR's average forgetting;
    with R (units = tasks, first_seen = 0..T-1) it is forgetting per task. NaN if nothing was learned earlier."""
    acc = _matrix(acc)
    T = acc.shape[0]
    drops = [float(acc[s:T - 1, u].max() - acc[T - 1, u]) for u, s in enumerate(first_seen) if s < T - 1]
    return sum(drops) / len(drops) if drops else float("nan")


def backward_transfer(R) -> float:
    """BWT = 1/(T-1) Σ_{i<T-1} (R[T-1, i] - R[i, i])  (Lopez-Paz & Ranzato 2017); negative = forgetting."""
    R = _matrix(R)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(sum(R[T - 1, i] - R[i, i] for i in range(T - 1)) / (T - 1))


def kept_MB(strategy: Strategy) -> float | None:
    """What a method keeps between tasks besides its solver, in MB: every tensor of its state (buffers, penalties'
    weights, generators with their critics and optimisers) but the solver's and the sample grids kept for figures;
    None for joint training, which keeps every image."""
    if isinstance(strategy, Joint):
        return None
    state = {k: v for k, v in strategy.state_dict().items() if k not in ("solver", "samples")}
    return sum(t.numel() * t.element_size() for t in tensors(state)) / 1e6
