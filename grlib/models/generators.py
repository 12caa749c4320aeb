"""What generative replay needs from a generator: the `Generator` protocol.

Adding a generator (a VAE, a conditional GAN, another diffusion model) to the course means writing a class with
these four members and a `settings` dict; `grlib.continual.strategies.GenerativeReplay` asks for nothing else. The
WGAN-GP (`grlib.models.gan.WGANGP`, notebook 03) and the DDPM (`grlib.models.diffusion.Diffusion`, notebook 06)
implement it."""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

from torch import Tensor

# A sampler of training data: sample_real(n) -> (n images in [0, 1], N×C×H×W, and their n int64 labels).
DataSource = Callable[[int], tuple[Tensor, Tensor]]


@runtime_checkable
class Generator(Protocol):
    """A generative model that replay can train and draw from."""

    settings: dict  # everything that determines the model and its training (part of the checkpoint cache key)

    def train(self, sample_real: DataSource, iters: int, batch_size: int, progress: bool = True,
              desc: str = "") -> dict[str, list[float]]:
        """Take `iters` training steps on batches from `sample_real` (labels may be ignored); returns the losses."""
        ...

    def sample(self, n: int, y: Tensor | None = None) -> Tensor:
        """n images in [0, 1]; `y` (n labels) asks for those classes, which only a class-conditional or guided
        generator can honour (an unconditional one raises ValueError)."""
        ...

    def state_dict(self) -> dict:
        """Everything training changed: weights, optimiser state."""
        ...

    def load_state_dict(self, state: dict) -> None:
        ...
