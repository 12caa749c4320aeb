"""Drawing images from a DDPM (notebook 06). A sampler visits some of the T steps, from T − 1 down to 0, and at each
turns the network's (x̂₀, ε̂) into a less noisy image. Each is a small object, as diffusers' schedulers are:
`set_timesteps` says which steps it visits, `step` takes one and keeps what the next step needs. `draw` runs one
loop for all of them, classifier guidance (`grlib.models.guidance`) shifting each step's (x̂₀, ε̂) first; notebook
07's DDGR replays this way. The registry `SAMPLERS` and `make_sampler` turn a name into a sampler."""
from __future__ import annotations

import torch
from torch import Tensor

from grlib.core.progress import bar
from grlib.core.threads import paced
from grlib.models.guidance import DiffusionModel, Guide


def ddim_times(T: int, steps: int) -> list[int]:
    """The `steps` evenly spaced steps DDIM visits, from T − 1 down to 0."""
    return torch.linspace(T - 1, 0, steps).round().long().tolist()


def log_snr(ddpm: DiffusionModel, i: int) -> Tensor:
    """λ_t = log(α_t / σ_t) with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t): the log signal-to-noise ratio at step i."""
    return 0.5 * ddpm.snr(i).log()  # λ = ½ log SNR_t


def check_eta(eta: float) -> None:
    """DDIM's noise η runs from 0 (deterministic) to 1 (DDPM-like); above 1, σ² would exceed the noise left."""
    if not 0 <= eta <= 1:
        raise ValueError(f"DDIM's eta must satisfy 0 ≤ eta ≤ 1 (0: deterministic, 1: DDPM-like); got {eta}")


class Sampler:
    """Which steps to visit (`set_timesteps`) and one step from each to the next (`step`), in order."""

    desc = "sampler"  # its progress bar's label

    def __init__(self, eta: float = 0.0):
        check_eta(eta)
        self.eta = eta
        self.timesteps: list[int] = []
        self.position = 0  # the index in `timesteps` of the next step to take

    def set_timesteps(self, T: int, steps: int | None = None, timesteps: list[int] | None = None) -> list[int]:
        """Visit `timesteps` if given, else `steps` evenly spaced from T − 1 down to 0; forgets any earlier run."""
        if timesteps is None and steps is None:
            raise ValueError(f"{type(self).__name__} needs the number of steps (or the steps) to visit")
        self.timesteps = list(timesteps) if timesteps is not None else ddim_times(T, steps)
        self.position = 0
        return self.timesteps

    def next_timestep(self, i: int) -> int | None:
        """The step visited after i (None after the last: the clean image), moving on to it."""
        if self.position >= len(self.timesteps) or self.timesteps[self.position] != i:
            expected = self.timesteps[self.position] if self.position < len(self.timesteps) else "none"
            raise ValueError(f"{type(self).__name__} got step {i} out of turn (next: {expected}); call set_timesteps "
                             f"first and step through its steps in order")
        self.position += 1
        return self.timesteps[self.position] if self.position < len(self.timesteps) else None

    def step(self, ddpm: DiffusionModel, x_t: Tensor, i: int, x0: Tensor, eps: Tensor) -> Tensor:
        """The image at the next step, from x_t at step i and the network's (x̂₀, ε̂) there."""
        raise NotImplementedError


class Ancestral(Sampler):
    """DDPM's sampler (Ho et al. 2020), over all T steps: x_{t−1} ~ q(x_{t−1} | x_t, x̂₀) = N(μ̃_t, β̃_t I), the
    posterior of the forward process at x₀ = x̂₀:
    μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x̂₀ + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t,  β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t.
    (Steps are 0-based: i = T − 1 is the noisiest; at i = 0 the mean is returned.) The next step is always i − 1,
    so a step needs no state, and η has no say: the noise is the posterior's."""

    desc = "DDPM"

    def set_timesteps(self, T: int, steps: int | None = None, timesteps: list[int] | None = None) -> list[int]:
        """All T steps, from T − 1 down to 0."""
        if timesteps is not None or steps not in (None, T):
            raise ValueError(f"ancestral sampling visits all {T} steps; for fewer, use DDIM (eta=1 is DDPM-like)")
        return super().set_timesteps(T, timesteps=list(range(T - 1, -1, -1)))

    def step(self, ddpm: DiffusionModel, x_t: Tensor, i: int, x0: Tensor, eps: Tensor) -> Tensor:
        ab, beta = ddpm.alpha_bar[i], ddpm.betas[i]
        ab_prev = ddpm.alpha_bar[i - 1] if i > 0 else torch.ones((), device=x_t.device)
        mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x_t
        if i == 0:
            return mean
        return mean + ((1 - ab_prev) / (1 - ab) * beta).sqrt() * torch.randn_like(x_t)


class DDIM(Sampler):
    """DDIM (Song et al. 2021), from step i to the next step visited, i' (after the last: the clean image):
    x_{t'} = √ᾱ_{t'} x̂₀ + √(1 − ᾱ_{t'} − σ²) ε̂ + σ z,  σ = η √((1 − ᾱ_{t'}) / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ_{t'}).
    η = 0 is deterministic, η = 1 DDPM-like."""

    desc = "ddim"

    def step(self, ddpm: DiffusionModel, x_t: Tensor, i: int, x0: Tensor, eps: Tensor) -> Tensor:
        return self.jump(ddpm, x_t, i, self.next_timestep(i), x0, eps)

    def jump(self, ddpm: DiffusionModel, x_t: Tensor, i: int, i_prev: int | None, x0: Tensor, eps: Tensor) -> Tensor:
        """The DDIM step from i to i_prev (None: to the clean image)."""
        ab = ddpm.alpha_bar[i]
        ab_prev = ddpm.alpha_bar[i_prev] if i_prev is not None else torch.ones((), device=x_t.device)
        sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        x = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps
        if self.eta > 0 and i_prev is not None:
            x = x + sigma * torch.randn_like(x)
        return x


class DPMSolver2M(DDIM):
    """DPM-Solver++(2M) (Lu et al. 2022) from step i to the next step visited, i', with h = λ_{t'} − λ_t:
    x_{t'} = (σ_{t'} / σ_t) x_t − α_{t'} (e^{−h} − 1) D. With D = x̂₀ this is DDIM with η = 0 (the first step, which
    has no step before it); given the step before (its step and x̂₀, kept from it), D = (1 + 1/2r) x̂₀ −
    (1/2r) x̂₀_before with r = h_before / h, a second-order extrapolation of x̂₀ along λ. The last step, to the clean
    image, is DDIM's. Deterministic: η = 0 only."""

    desc = "dpm++2m"

    def __init__(self, eta: float = 0.0):
        super().__init__(eta)
        if eta != 0:
            raise ValueError(f"DPM-Solver++(2M) is deterministic: use eta=0 with it (got eta={eta}), or sampler='ddim'")
        self.before: tuple[int, Tensor] | None = None  # the step before and its x̂₀

    def set_timesteps(self, T: int, steps: int | None = None, timesteps: list[int] | None = None) -> list[int]:
        self.before = None
        return super().set_timesteps(T, steps, timesteps)

    def step(self, ddpm: DiffusionModel, x_t: Tensor, i: int, x0: Tensor, eps: Tensor) -> Tensor:
        i_prev = self.next_timestep(i)
        if i_prev is None:
            return self.jump(ddpm, x_t, i, None, x0, eps)
        ab, ab_prev = ddpm.alpha_bar[i], ddpm.alpha_bar[i_prev]
        h = log_snr(ddpm, i_prev) - log_snr(ddpm, i)
        d = x0
        if self.before is not None:
            i_before, x0_before = self.before
            r = (log_snr(ddpm, i) - log_snr(ddpm, i_before)) / h
            d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_before
        self.before = (i, x0)
        return ((1 - ab_prev) / (1 - ab)).sqrt() * x_t - ab_prev.sqrt() * torch.expm1(-h) * d


SAMPLERS: dict[str, type[Sampler]] = {"ancestral": Ancestral, "ddim": DDIM, "dpm++2m": DPMSolver2M}


def make_sampler(name: str, steps: int | None, eta: float = 0.0) -> Sampler:
    """The sampler `name` with noise η over `steps` steps; steps=None asks for ancestral sampling over all T steps,
    whatever the name (`Diffusion.sample`'s default). One-line ValueErrors for an unknown name, an η the sampler does
    not take, or a number of steps it cannot visit, before anything is drawn."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    sampler = SAMPLERS[name](eta)  # checks η
    if steps is None:
        return sampler if name == "ancestral" else Ancestral(eta)
    if name == "ancestral" or steps < 1:
        raise ValueError(f"{name} cannot visit {steps} steps: give steps ≥ 1 to DDIM or DPM-Solver++(2M), or "
                         f"steps=None for ancestral sampling over all T steps")
    return sampler


def denoise(ddpm: DiffusionModel, x_t: Tensor, i: int, y: Tensor | None,
            guide: Guide | None) -> tuple[Tensor, Tensor]:
    """The network's (x̂₀, ε̂) at step i, shifted by the guide towards y if there is one."""
    t = torch.full((len(x_t),), i, device=x_t.device, dtype=torch.long)
    x0, eps = ddpm.predict(x_t, t, y if ddpm.conditional else None)
    return (x0, eps) if guide is None else guide(ddpm, x_t, t, x0, eps, y)


def draw(ddpm: DiffusionModel, n: int, y: Tensor | None = None, steps: int | None = None, eta: float = 0.0,
         guide: Guide | None = None, progress: bool = False, sampler: str = "ddim") -> Tensor:
    """n images in [-1, 1] from pure noise x_T ~ N(0, I): ancestral sampling over all T steps (steps=None), else
    `sampler` over `steps` evenly spaced steps. Each step denoises (network, then guide) and steps."""
    stepper = make_sampler(sampler, steps, eta)
    x = torch.randn(n, *ddpm.model.image_shape, device=ddpm.device)
    for i in paced(bar(stepper.set_timesteps(ddpm.T, steps), desc=stepper.desc, disable=not progress)):
        x0, eps = denoise(ddpm, x, i, y, guide)
        x = stepper.step(ddpm, x, i, x0, eps)
    return x
