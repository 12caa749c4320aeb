"""How real generated images look to an independent classifier (the judge notebook 03 trains; notebooks 06 and 07 read
replay with it), measured two ways: does it read the class they were asked for, and how far is their feature
distribution from real images'."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from grlib.continual.data import to_float


@torch.no_grad()
def judge_features(judge: nn.Module, images: Tensor, chunk: int = 1000) -> Tensor:
    """The judge CNN's penultimate activations (its 128 hidden units) for images (uint8, or float in [0, 1])."""
    parts = []
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk]
        x = to_float(x) if x.dtype == torch.uint8 else x.float()
        parts.append(judge.head[:-1](judge.features(x)).double())
    return torch.cat(parts)


@torch.no_grad()
def judge_agreement(judge: nn.Module, images: Tensor, y: Tensor) -> float:
    """% of images the judge reads as the class y they were meant to show."""
    x = to_float(images) if images.dtype == torch.uint8 else images.float()
    return 100 * (judge(x).argmax(1) == y).float().mean().item()


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors (rows), as in FID (Heusel et al.
    2017): ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}). Zero only for equal statistics; on
    small samples it is biased upwards, so compare with the distance between two real samples of the same size."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)

    def sqrt_psd(m: Tensor) -> Tensor:
        values, vectors = torch.linalg.eigh(m)
        return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T

    root_a = sqrt_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()  # Tr((Σ_a^½ Σ_b Σ_a^½)^½)
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def class_frechet(judge: nn.Module, images: Tensor, y: Tensor, real: Tensor, real_y: Tensor) -> dict[int, float]:
    """Per class c: the Fréchet distance, in the judge's features, between the images meant to show c and real
    images of c."""
    fake_f, real_f = judge_features(judge, images), judge_features(judge, real)
    return {int(c): frechet_distance(fake_f[y == c], real_f[real_y == c]) for c in y.unique().tolist()}
