"""PASS (Zhu et al., CVPR 2021): no replay at all. Class prototypes in feature space stand in for old data, and
self-supervised rotations and feature distillation keep the features stable (notebook 08)."""
from __future__ import annotations

import copy
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from grlib.models.nets import RotationSolver
from grlib.continual.data import TaskStream, to_float
from grlib.continual.strategies.base import Strategy


def rotations(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Self-supervised label augmentation: every image turned by 0, 90, 180 and 270 degrees, labelled 4y + k."""
    return (torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)]),
            torch.cat([4 * y + k for k in range(4)]))


@dataclass(eq=False, repr=False)
class PASS(Strategy):
    """Prototype augmentation and self-supervision. The solver (a `grlib.models.nets.RotationSolver`) learns task t on
    rotated copies of its images (4 labels a class), and, from the second task on,
    L = L_CE(rotations) / τ + λ L_CE(head(p_c + r e) / τ, 4c) + γ ‖f(x) − f_old(x)‖₂,
    where p_c is the stored mean feature (prototype) of an old class c, e ~ N(0, I), r the features' spread on the
    first task, and f_old the feature extractor frozen after the previous task. λ = γ = 10 and τ = 0.1 are the
    paper's settings (its code's defaults)."""

    name: ClassVar[str] = "pass"
    _: KW_ONLY
    proto_weight: float = 10.0
    distill_weight: float = 10.0
    temperature: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.solver, RotationSolver):
            raise ValueError("PASS needs a solver with a head over (class, rotation) pairs: grlib.models.nets.make_rotation_solver")
        if self.proto_weight < 0 or self.distill_weight < 0 or self.temperature <= 0:
            raise ValueError("PASS needs proto_weight ≥ 0, distill_weight ≥ 0 and temperature > 0")
        self.prototypes: dict[int, Tensor] = {}  # p_c, the mean feature of every class learned
        self.radius = 0.0                        # r = √(mean over the first task's classes of tr(Σ_c) / d)
        self.old_features: torch.nn.Module | None = None

    def loss(self, x: Tensor, y: Tensor, stream: TaskStream, t: int) -> Tensor:
        x4, y4 = rotations(x, y)
        features = self.solver.features(x4)
        loss = F.cross_entropy(self.solver.head(features) / self.temperature, y4)  # classes and rotations
        if self.old_features is None:
            return loss
        classes = torch.tensor(sorted(self.prototypes), device=self.device)
        pick = classes[torch.randint(len(classes), (len(y),), generator=self.rng, device=self.device)]
        noise = torch.randn(len(y), self.solver.feature_dim, generator=self.rng, device=self.device)
        augmented = torch.stack([self.prototypes[int(c)] for c in pick]) + self.radius * noise  # p_c + r e
        proto = F.cross_entropy(self.solver.head(augmented) / self.temperature, 4 * pick)
        loss = loss + self.proto_weight * proto
        if self.distill_weight == 0:  # γ = 0: f_old is not run at all (it draws nothing, so no draw is skipped)
            return loss
        with torch.no_grad():
            old = self.old_features(x4)
        return loss + self.distill_weight * torch.dist(features, old, 2)  # γ ‖f(x) − f_old(x)‖₂ over the batch

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """f(x) for uint8 images, in chunks, with the solver in evaluation mode."""
        self.solver.eval()
        out = torch.cat([self.solver.features(to_float(x[i:i + 1000])) for i in range(0, len(x), 1000)])
        self.solver.train()
        return out

    @torch.no_grad()
    def after_task(self, stream: TaskStream, t: int) -> None:
        x, y = stream[t].train_x, stream[t].train_y
        features = self.features(x)
        spreads = []
        for c in stream[t].classes:
            mine = features[y == c]
            self.prototypes[c] = mine.mean(0)
            spreads.append(torch.cov(mine.T).trace() / mine.shape[1])
        if t == 0:
            self.radius = float(torch.stack(spreads).mean().sqrt())
        self.old_features = copy.deepcopy(self.solver.features).eval().requires_grad_(False)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "prototypes": self.prototypes, "radius": self.radius,
                "old_features": None if self.old_features is None else self.old_features.state_dict()}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.prototypes, self.radius = state["prototypes"], state["radius"]
        self.old_features = None
        if state["old_features"] is not None:
            self.old_features = copy.deepcopy(self.solver.features).eval().requires_grad_(False)
            self.old_features.load_state_dict(state["old_features"])
