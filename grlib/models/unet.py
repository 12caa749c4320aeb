"""The denoising network of the course's diffusion models: a small UNet with a time (and class) embedding."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grlib.core.checkpoints import arguments
from grlib.core.rng import seeded


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of integer steps t, as in the Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], 1)


GROUPS = 8  # groups in every group norm (with fewer channels, one group a channel)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(GROUPS, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time (and class) embedding added in between; a residual connection."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.block1 = nn.Sequential(group_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb = nn.Linear(emb_dim, c_out)
        self.block2 = nn.Sequential(group_norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.block1(x) + self.emb(emb)[:, :, None, None]
        return self.block2(h) + self.skip(x)


class UNet(nn.Module):
    """A three-level UNet (28→14→7 or 32→16→8) with a time embedding and optional class conditioning; its initial
    weights depend on `seed` alone.

    `patch=2` folds each 2×2 block of pixels into channels first (`F.pixel_unshuffle`) and unfolds the output
    (`F.pixel_shuffle`), so the three levels run at 14→7→4 (or 16→8→4): about a quarter of the computation for the
    same weights but the first and last layers."""

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), ch: int = 16, n_classes: int | None = None,
                 seed: int = 0, patch: int = 1):
        settings = arguments(locals())  # every argument: part of the key of a diffusion model's checkpoint
        super().__init__()
        self.settings = settings
        c = image_shape[0]
        if image_shape[1] not in (28, 32):
            raise ValueError(f"the UNet takes 28×28 or 32×32 images, not {image_shape}")
        if patch not in (1, 2):
            raise ValueError(f"the UNet's patch is 1 (pixels) or 2 (2×2 blocks of pixels), not {patch}")
        if ch < 1 or any(w > GROUPS and w % GROUPS for w in (ch, 2 * ch, 4 * ch)):  # the groups must divide w
            raise ValueError(f"the UNet's ch must be 1, 2, 4 or a multiple of {GROUPS} (its group norms use {GROUPS} "
                             f"groups), not {ch}")
        self.image_shape, self.ch, self.seed, self.patch, emb = tuple(image_shape), ch, seed, patch, 4 * ch
        with seeded(seed):
            self.time_mlp = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
            self.class_emb = nn.Embedding(n_classes, emb) if n_classes else None
            self.inp = nn.Conv2d(c * patch ** 2, ch, 3, padding=1)
            self.down1, self.pool1 = ResBlock(ch, ch, emb), nn.Conv2d(ch, ch, 3, stride=2, padding=1)
            self.down2, self.pool2 = ResBlock(ch, 2 * ch, emb), nn.Conv2d(2 * ch, 2 * ch, 3, stride=2, padding=1)
            self.down3 = ResBlock(2 * ch, 2 * ch, emb)
            self.mid = ResBlock(2 * ch, 2 * ch, emb)
            self.up3 = ResBlock(4 * ch, 2 * ch, emb)
            self.up2 = ResBlock(4 * ch, ch, emb)
            self.up1 = ResBlock(2 * ch, ch, emb)
            self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, c * patch ** 2, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.ch))
        if self.class_emb is not None and y is not None:
            emb = emb + self.class_emb(y)
        h0 = self.down1(self.inp(F.pixel_unshuffle(x, self.patch)), emb)       # ch × s, s = image size / patch
        h1 = self.down2(self.pool1(h0), emb)                                   # 2ch × s/2
        h2 = self.down3(self.pool2(h1), emb)                                   # 2ch × s/4 (rounded up: 14 → 7 → 4)
        h = self.up3(torch.cat([self.mid(h2, emb), h2], 1), emb)               # 2ch × s/4
        # upsampled to the skip connection's own size, so that 4 → 7 comes back as 7, not 8
        h = self.up2(torch.cat([F.interpolate(h, size=h1.shape[-2:]), h1], 1), emb)  # ch × s/2
        h = self.up1(torch.cat([F.interpolate(h, size=h0.shape[-2:]), h0], 1), emb)  # ch × s
        return F.pixel_shuffle(self.out(h), self.patch)
