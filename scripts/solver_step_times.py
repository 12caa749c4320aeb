"""What the model perspective's importances and a solver's training step cost on this machine, two ways each.

For the 784-400-400-10 MLP on random images: EWC's Fisher diagonal and MAS's importance through per-image gradients
(torch.func) and in the closed form grlib uses for linear layers; an Adam step of training at batch 128, plain and
fused. Run it with OMP_NUM_THREADS=1 and nothing else running; docs/record.md ("Where the seconds go") quotes it.

    OMP_NUM_THREADS=1 python scripts/solver_step_times.py
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn.functional as F

from grlib.continual.strategies import regularization
from grlib.models import nets


def seconds(run: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` runs, after one to warm up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def importance_seconds(images: int, repeats: int) -> dict[str, float]:
    mlp = nets.MLP()
    x = torch.rand(images, 1, 28, 28)
    labels = torch.randint(0, 10, (images,))
    cases = {"Fisher": (regularization.log_likelihood, torch.square),
             "MAS": (regularization.squared_output_norm, torch.abs)}
    timed = {}
    for name, (scalar, size) in cases.items():
        def per_image() -> dict:
            grads = regularization.per_sample_gradients(mlp, x, labels, scalar)
            return {n: size(g).sum(0) for n, g in grads.items()}
        timed[f"{name}, per-image gradients"] = seconds(per_image, repeats)
        timed[f"{name}, closed form"] = seconds(
            lambda: regularization.summed_gradient_sizes(mlp, x, labels, scalar, size), repeats)
    return timed


def step_ms(fused: bool, steps: int) -> float:
    mlp = nets.MLP()
    optimizer = nets.adam(mlp.parameters(), lr=1e-3) if fused else torch.optim.Adam(mlp.parameters(), lr=1e-3)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def train() -> None:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(mlp(x), y).backward()
            optimizer.step()
    return seconds(train, 3) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="images the importances are measured on (500)")
    parser.add_argument("--steps", type=int, default=200, help="training steps timed (200)")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}; the 784-400-400-10 MLP")
    for name, s in importance_seconds(args.images, repeats=3).items():
        print(f"{name:30s} {s:7.3f} s for {args.images} images")
    for fused in (False, True):
        print(f"a training step, {'fused' if fused else 'plain'} Adam {step_ms(fused, args.steps):7.2f} ms at batch 128")


if __name__ == "__main__":
    main()
