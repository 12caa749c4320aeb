"""The model perspective: penalties on moving the weights that mattered — EWC, SI and MAS (notebook 01)."""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grlib.continual.data import TaskStream, to_float
from grlib.continual.strategies.base import Strategy
from grlib.models.nets import MLP


def per_sample_gradients(solver: nn.Module, images: Tensor, labels: Tensor,
                         scalar: Callable[[Tensor, Tensor], Tensor]) -> dict[str, Tensor]:
    """∇_θ scalar(f(x_k; θ), y_k) for every image x_k (in [0, 1]) at once, with torch.func: N × each weight's shape."""
    params = {name: p.detach() for name, p in solver.named_parameters()}

    def one(p: dict[str, Tensor], image: Tensor, label: Tensor) -> Tensor:
        return scalar(torch.func.functional_call(solver, p, (image.unsqueeze(0),)), label.unsqueeze(0))

    return torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(params, images, labels)


def summed_gradient_sizes(solver: nn.Module, images: Tensor, labels: Tensor,
                          scalar: Callable[[Tensor, Tensor], Tensor], size: Callable[[Tensor], Tensor]
                          ) -> dict[str, Tensor]:
    """Σ_k size(∇_θ scalar(f(x_k; θ), y_k)) for an elementwise `size` with size(ab) = size(a) size(b) (the square,
    the absolute value): in closed form for a stack of linear layers (`linear_closed_form`), else from the N
    per-image gradients."""
    stack = linear_stack(solver)
    if stack is not None:
        names = {p: name for name, p in solver.named_parameters()}
        return {names[p]: total for p, total in linear_closed_form(stack, images, labels, scalar, size)}
    return {name: size(g).sum(0) for name, g in per_sample_gradients(solver, images, labels, scalar).items()}


def linear_stack(solver: nn.Module) -> nn.Sequential | None:
    """The solver as flatten, then linear layers with weights of their own between ReLUs that are not in place, as
    the MLP is; else None: batch norm mixes images, dropout draws random masks, a forward of its own might do
    either, a shared weight's gradient is a sum of outer products."""
    stack = solver.net if type(solver) is MLP else solver
    first = stack[0] if type(stack) is nn.Sequential and len(stack) else None
    if type(first) is not nn.Flatten or (first.start_dim, first.end_dim) != (1, -1):
        return None
    elementwise = all(type(m) is nn.Linear or (type(m) is nn.ReLU and not m.inplace) for m in stack[1:])
    weights = [p for m in stack for p in m.parameters()]
    return stack if elementwise and len(set(weights)) == len(weights) else None


def linear_closed_form(stack: nn.Sequential, images: Tensor, labels: Tensor,
                       scalar: Callable[[Tensor, Tensor], Tensor], size: Callable[[Tensor], Tensor]
                       ) -> list[tuple[nn.Parameter, Tensor]]:
    """`summed_gradient_sizes` for a `linear_stack`, from one backward pass, as (weight, its sum) pairs. Image k's
    s_k depends on its own pre-activations z_k = W a_k + b alone, so the gradient of the batch's Σ_k s_k at z_k is
    δ_k = ∂s_k / ∂z_k, and the image's gradient of W is δ_k a_kᵀ: Σ_k size(δ_k a_kᵀ) = size(Δ)ᵀ size(A), with the
    δ_k and a_k as the rows of Δ and A (and Σ_k size(δ_k) for b)."""
    layers, inputs, outputs = [], [], []
    with torch.enable_grad():
        h = images.detach().requires_grad_(True)  # every z in the graph, whichever weights are frozen
        for module in stack:
            z = module(h)
            if type(module) is nn.Linear:
                layers.append(module)
                inputs.append(h.detach())  # a_k, the rows of A
                outputs.append(z)
            h = z
        s = torch.vmap(scalar)(h.unsqueeze(1), labels.unsqueeze(1))  # s_k, image by image
        deltas = torch.autograd.grad(s.sum(), outputs)  # the rows of Δ: δ_k = ∂s_k / ∂z_k
    sums = []
    for layer, a, delta in zip(layers, inputs, deltas):
        sums.append((layer.weight, size(delta).T @ size(a)))  # Σ_k size(δ_k) size(a_k)ᵀ
        if layer.bias is not None:
            sums.append((layer.bias, size(delta).sum(0)))
    return sums


def log_likelihood(logits: Tensor, label: Tensor) -> Tensor:
    """log p_θ(y | x)."""
    return -F.cross_entropy(logits, label)


def squared_output_norm(logits: Tensor, label: Tensor) -> Tensor:
    """‖f(x; θ)‖²₂, the squared L2 norm of the network's output (its logits); the label is not used."""
    return logits.pow(2).sum()


def fisher_diagonal(solver: nn.Module, x: Tensor, generator: torch.Generator, chunk: int = 128) -> dict[str, Tensor]:
    """Diagonal Fisher information F_i = E_x E_{y~p_θ(y|x)} [(∂ log p_θ(y|x) / ∂θ_i)²], one sampled y per image."""
    fisher = {name: torch.zeros_like(p) for name, p in solver.named_parameters()}
    for i in range(0, len(x), chunk):
        images = to_float(x[i:i + chunk])
        with torch.no_grad():
            probs = torch.softmax(solver(images), -1)
        labels = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # y ~ p_θ(y | x)
        for name, g in summed_gradient_sizes(solver, images, labels, log_likelihood, torch.square).items():
            fisher[name] += g / len(x)
    return fisher


def output_sensitivity(solver: nn.Module, x: Tensor, chunk: int = 128) -> dict[str, Tensor]:
    """MAS importance Ω_i = (1/N) Σ_k |∂ ‖f(x_k; θ)‖²₂ / ∂θ_i| (Aljundi et al. 2018): how much the output moves
    when weight i moves, averaged over images; unsupervised (no labels)."""
    omega = {name: torch.zeros_like(p) for name, p in solver.named_parameters()}
    for i in range(0, len(x), chunk):
        images = to_float(x[i:i + chunk])
        unused = torch.zeros(len(images), dtype=torch.long, device=images.device)
        for name, g in summed_gradient_sizes(solver, images, unused, squared_output_norm, torch.abs).items():
            omega[name] += g / len(x)
    return omega


def quadratic_penalty(solver: nn.Module, importance: dict[str, Tensor], anchor: dict[str, Tensor]) -> Tensor:
    """Σ_i Ω_i (θ_i − θ*_i)²: each weight's distance from its anchor, weighted by its importance."""
    return sum((importance[n] * (p - anchor[n]).pow(2)).sum() for n, p in solver.named_parameters())


def copy_weights(solver: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in solver.named_parameters()}


@dataclass(eq=False, repr=False)
class QuadraticPenalty(Strategy):
    """Consolidation after each task: measure each weight's importance Ω on a sample of the task just learned, fold
    it into the running importance, anchor at the weights θ* reached, and from then on add
    L = L_t + c Σ_i Ω_i (θ_i − θ*_i)². A subclass supplies only its importance measure (`measure`), how it folds
    in (`accumulate`), the sample size (`samples`) and the coefficient c (`coefficient`)."""

    state_name: ClassVar[str] = "importance"  # the entry of `state_dict` (and so of cached checkpoints) holding Ω
    _: KW_ONLY
    strength: float

    def __post_init__(self) -> None:
        super().__post_init__()
        self.importance: dict[str, Tensor] = {}  # Ω, accumulated over tasks
        self.anchor: dict[str, Tensor] = {}      # θ*, the weights after the last task

    @property
    def samples(self) -> int:
        """How many of a task's training images the importance is measured on."""
        raise NotImplementedError

    def measure(self, x: Tensor) -> dict[str, Tensor]:
        """Ω_t: each weight's importance, measured on images `x` (uint8) of the task just learned."""
        raise NotImplementedError

    def accumulate(self, new: dict[str, Tensor]) -> dict[str, Tensor]:
        """The running importance with this task's folded in; by default summed over tasks: Ω ← Ω + Ω_t."""
        return {n: self.importance.get(n, 0) + omega for n, omega in new.items()}

    def coefficient(self) -> float:
        """c, the penalty's weight in the loss."""
        return self.strength

    def loss(self, x: Tensor, y: Tensor, stream: TaskStream, t: int) -> Tensor:
        loss = super().loss(x, y, stream, t)
        if not self.importance:
            return loss
        return loss + self.coefficient() * quadratic_penalty(self.solver, self.importance, self.anchor)

    def after_task(self, stream: TaskStream, t: int) -> None:
        task = stream[t]
        idx = torch.randperm(len(task.train_y), generator=self.rng, device=self.device)[: self.samples]
        self.importance = self.accumulate(self.measure(task.train_x[idx]))
        self.anchor = copy_weights(self.solver)

    def state_dict(self) -> dict:
        return {**super().state_dict(), self.state_name: self.importance, "anchor": self.anchor}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.importance, self.anchor = state[self.state_name], state["anchor"]


@dataclass(eq=False, repr=False)
class EWC(QuadraticPenalty):
    """Online EWC (Kirkpatrick et al. 2017; Schwarz et al. 2018): hold each weight near its value after the last
    task, in proportion to its Fisher information: L = L_t + (λ/2) Σ_i F̃_i (θ_i − θ*_i)²."""

    name: ClassVar[str] = "ewc"
    state_name: ClassVar[str] = "fisher"
    _: KW_ONLY
    decay: float = 1.0
    fisher_samples: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.strength < 0 or not 0 <= self.decay <= 1 or self.fisher_samples < 1:
            raise ValueError("EWC needs strength λ ≥ 0, decay γ in [0, 1] and fisher_samples ≥ 1")

    @property
    def fisher(self) -> dict[str, Tensor]:
        """F̃, the Fisher information accumulated over tasks (the importance Ω of `QuadraticPenalty`)."""
        return self.importance

    @property
    def samples(self) -> int:
        return self.fisher_samples

    def measure(self, x: Tensor) -> dict[str, Tensor]:
        return fisher_diagonal(self.solver, x, self.rng)

    def accumulate(self, new: dict[str, Tensor]) -> dict[str, Tensor]:
        # online EWC: F̃ ← γ F̃ + F_t, one penalty anchored at the latest weights
        return {n: self.decay * self.importance.get(n, 0) + f for n, f in new.items()}

    def coefficient(self) -> float:
        return self.strength / 2


@dataclass(eq=False, repr=False)
class MAS(QuadraticPenalty):
    """Memory Aware Synapses (Aljundi et al. 2018): importance is how sensitive the output is to each weight,
    measured without labels after each task and summed over tasks; L = L_t + λ Σ_i Ω_i (θ_i − θ*_i)²."""

    name: ClassVar[str] = "mas"
    _: KW_ONLY
    importance_samples: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.strength < 0 or self.importance_samples < 1:
            raise ValueError("MAS needs strength λ ≥ 0 and importance_samples ≥ 1")

    @property
    def samples(self) -> int:
        return self.importance_samples

    def measure(self, x: Tensor) -> dict[str, Tensor]:
        return output_sensitivity(self.solver, x)


@dataclass(eq=False, repr=False)
class SI(Strategy):
    """Synaptic Intelligence (Zenke et al. 2017): each weight's importance Ω_i is its share of the loss decrease
    along the training path; L = L_t + c Σ_i Ω_i (θ_i − θ̃_i)²."""

    name: ClassVar[str] = "si"
    _: KW_ONLY
    strength: float
    damping: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.strength < 0 or self.damping <= 0:
            raise ValueError("SI needs strength c ≥ 0 and damping ξ > 0")
        self.importance = {n: torch.zeros_like(p) for n, p in self.solver.named_parameters()}  # Ω
        self.anchor = copy_weights(self.solver)        # θ̃: the weights at the task's start
        self.path: dict[str, Tensor] = {}              # ω, this task's path integral
        self.previous: dict[str, Tensor] = {}          # θ before the current step

    def loss(self, x: Tensor, y: Tensor, stream: TaskStream, t: int) -> Tensor:
        return super().loss(x, y, stream, t) + self.strength * quadratic_penalty(self.solver, self.importance,
                                                                                 self.anchor)

    def before_task(self, stream: TaskStream, t: int) -> None:
        self.path = {n: torch.zeros_like(p) for n, p in self.solver.named_parameters()}
        self.previous = copy_weights(self.solver)

    @torch.no_grad()
    def after_step(self) -> None:
        for n, p in self.solver.named_parameters():
            # gradient of L_t alone: the step's gradient minus the penalty's, 2cΩ(θ − θ̃), at the pre-step weights
            task_grad = p.grad - 2 * self.strength * self.importance[n] * (self.previous[n] - self.anchor[n])
            self.path[n] -= task_grad * (p - self.previous[n])  # ω_i += −g_i Δθ_i
            self.previous[n] = p.detach().clone()

    @torch.no_grad()
    def after_task(self, stream: TaskStream, t: int) -> None:
        for n, p in self.solver.named_parameters():
            self.importance[n] += self.path[n] / ((p - self.anchor[n]).pow(2) + self.damping)  # Ω += ω / (Δθ² + ξ)
            self.anchor[n] = p.detach().clone()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "importance": self.importance, "anchor": self.anchor}

    def restore(self, state: dict) -> None:
        super().restore(state)
        self.importance, self.anchor = state["importance"], state["anchor"]
