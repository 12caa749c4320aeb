"""Solver networks (classifiers) and the one device rule of the course."""
from __future__ import annotations

import functools
import math
from typing import Iterable

import torch
from torch import Tensor, nn

from grlib.core.rng import seeded


@functools.lru_cache(maxsize=1)
def pick_device() -> torch.device:
    """CUDA if present, else Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.lru_cache(maxsize=None)
def has_fused_adam(device_type: str) -> bool:
    """Whether this torch has a fused Adam kernel for the device type: asked by taking one step with it, as some
    versions refuse the device only then."""
    weight = torch.zeros(1, device=device_type, requires_grad=True)
    weight.grad = torch.zeros_like(weight)
    try:
        torch.optim.Adam([weight], fused=True).step()
    except RuntimeError:  # no kernel for this device in this torch (NotImplementedError is one too)
        return False
    return True


def adam(params: Iterable[nn.Parameter], **options) -> torch.optim.Adam:
    """torch's Adam, fused (one kernel updates every weight, not several operations a tensor) where this torch has
    the kernel for the weights' device, else as torch chooses; the same update either way, up to rounding."""
    params = list(params)
    fused = bool(params) and has_fused_adam(params[0].device.type)
    return torch.optim.Adam(params, fused=True if fused else None, **options)


class MLP(nn.Module):
    """The continual-learning literature's solver: flatten, 784-400-400-10 with ReLUs."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), hidden: tuple[int, ...] = (400, 400),
                 n_classes: int = 10):
        super().__init__()
        self.image_shape = tuple(image_shape)
        sizes = [math.prod(image_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Images in [0, 1], N×C×H×W -> logits N×n_classes."""
        return self.net(x)


class SmallCNN(nn.Module):
    """Two conv-pool blocks and a hidden layer: a stronger solver for 28×28 and 32×32 images."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), n_classes: int = 10, width: int = 32):
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = image_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(2 * width * (h // 4) * (w // 4), 128), nn.ReLU(), nn.Linear(128, n_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


SOLVERS = {"mlp": MLP, "cnn": SmallCNN}


def make_solver(name: str, image_shape: tuple[int, ...], n_classes: int, seed: int = 0,
                device: torch.device | None = None) -> nn.Module:
    """A freshly initialised solver whose weights depend on `seed` alone, on the course's device."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")
    with seeded(seed):
        solver = SOLVERS[name](image_shape=tuple(image_shape), n_classes=n_classes)
    return solver.to(device or pick_device())


class RotationSolver(nn.Module):
    """A solver for PASS's self-supervised label augmentation: a feature extractor f and a linear head over
    4·n_classes outputs, one per (class, rotation by 0/90/180/270 degrees), output 4c + k for class c turned k
    times. Called on images it returns the unrotated classes' logits (outputs 0, 4, 8, ...), as every solver does."""

    def __init__(self, features: nn.Module, feature_dim: int, n_classes: int):
        super().__init__()
        self.features, self.feature_dim, self.n_classes = features, feature_dim, n_classes
        self.head = nn.Linear(feature_dim, 4 * n_classes)

    def all_logits(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.all_logits(x)[:, ::4]


def make_rotation_solver(name: str, image_shape: tuple[int, ...], n_classes: int, seed: int = 0,
                         device: torch.device | None = None) -> RotationSolver:
    """The solver `name` with its last layer replaced by a head over (class, rotation) pairs, seeded like
    `make_solver`."""
    with seeded(seed):
        base = SOLVERS[name](image_shape=tuple(image_shape), n_classes=n_classes) if name in SOLVERS else None
        if base is None:
            raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")
        if isinstance(base, MLP):
            features, dim = base.net[:-1], base.net[-1].in_features
        else:
            features, dim = nn.Sequential(base.features, *base.head[:-1]), base.head[-1].in_features
        solver = RotationSolver(features, dim, n_classes)
    return solver.to(device or pick_device())


def count_parameters(model: nn.Module) -> int:
    """The number of weights (multiply by 4 for float32 bytes)."""
    return sum(p.numel() for p in model.parameters())
