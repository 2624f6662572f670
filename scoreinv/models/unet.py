"""A time-conditional U-Net for score estimation (DDPM / NCSN++-style, kept small and plain).

The network maps a noisy image and its diffusion time to an image of the same shape,

    UNet(x, t): (B, C, H, W) × (B,) -> (B, C, H, W),

with C = ``config.channels`` and H, W divisible by 2**(levels − 1). It knows nothing of
SDEs: :class:`scoreinv.models.ScoreModel` divides its output by the marginal std so that
it has the scale of the score.

Time enters through Gaussian random Fourier features (Tancik et al. 2020; Song et al. 2021),

    φ(t) = [sin(2π t w), cos(2π t w)],   w ~ N(0, fourier_scale² I) fixed,

followed by an MLP; the resulting embedding is added (after a per-block linear map) inside
every residual block.

Layout, with L = len(channel_multipliers) levels and c_k = base_channels · multiplier_k:

* stem: 3×3 conv C -> base_channels;
* down path: at level k, ``num_res_blocks`` residual blocks to c_k (each followed by
  self-attention if the level's resolution is in ``attention_resolutions``), then a
  stride-2 3×3 conv, except at the last level;
* middle: residual block, attention (if the lowest resolution is listed), residual block;
* up path: at level k (deepest first), ``num_res_blocks + 1`` residual blocks, each fed the
  concatenation with one stored skip activation, then nearest ×2 upsampling + 3×3 conv,
  except at level 0;
* head: GroupNorm, SiLU, 3×3 conv to C.

The last conv of each residual block, the output projection of each attention block and
the head conv are zero-initialised, so every block starts as the identity and the whole
network starts at output 0 (the score model then starts at the score 0): training begins
from a well-conditioned, stable point instead of from large random scores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scoreinv.config import UNetConfig

# The Fourier frequencies are drawn from their own generator so that the time features do
# not depend on (or disturb) the global RNG: two U-Nets with the same config share them.
_FOURIER_SEED = 0


def _groups(channels: int, max_groups: int) -> int:
    """The largest number of GroupNorm groups <= max_groups that divides ``channels``."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def _zero_(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class GaussianFourierFeatures(nn.Module):
    """φ(t) = [sin(2π t w), cos(2π t w)] with fixed w ~ N(0, scale²), shape (B,) -> (B, 2 n)."""

    def __init__(self, num_frequencies: int, scale: float) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(_FOURIER_SEED)
        frequencies = torch.randn(num_frequencies, generator=generator) * scale
        # A persistent buffer: saved with the weights, never optimised.
        self.register_buffer("frequencies", frequencies, persistent=True)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * t[:, None].to(self.frequencies.dtype) * self.frequencies[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResidualBlock(nn.Module):
    """h = conv(drop(SiLU(GN(conv(SiLU(GN(x))) + W e(t))))) ;  out = skip(x) + h.

    ``skip`` is a 1×1 conv when the width changes, the identity otherwise.
    """

    def __init__(
        self, in_channels: int, out_channels: int, embed_dim: int, dropout: float, max_groups: int
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_channels, max_groups), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(embed_dim, out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels, max_groups), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(F.silu(embedding))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H·W positions, with a residual connection."""

    def __init__(self, channels: int, max_groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels, max_groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = _zero_(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(dim=1)
        # (B, HW, C) each; softmax(q kᵀ / √C) v
        attended = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.out(attended.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3×3 conv: (B, c, H, W) -> (B, c, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest ×2 then 3×3 conv: (B, c, H, W) -> (B, c, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Time-conditional U-Net built from a :class:`~scoreinv.config.UNetConfig`.

    Parameters
    ----------
    config:
        The architecture. The module docstring describes the layout.

    Notes
    -----
    ``forward(x, t)`` takes x of shape (B, C, H, W) with C = ``config.channels`` (plus
    ``config.extra_input_channels``, conditioning channels that are input only) and H, W
    divisible by 2**(levels − 1) (any such size: the network is convolutional; the
    score model pins it to ``config.image_size``), and t of shape (B,) with values in
    [0, 1]. It returns a tensor of shape (B, ``config.channels``, H, W).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise ValueError(f"UNet needs a UNetConfig, got {type(config).__name__}")
        self.config = config
        base = config.base_channels
        groups = config.group_norm_groups
        dropout = config.dropout
        levels = len(config.channel_multipliers)
        embed_dim = 4 * base

        self.time_features = GaussianFourierFeatures(base, config.fourier_scale)
        self.time_mlp = nn.Sequential(nn.Linear(2 * base, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

        self.stem = nn.Conv2d(config.channels + config.extra_input_channels, base, 3, padding=1)

        # Down path. `skip_channels` records the width of every activation stored for the up
        # path, in order: the stem output, each residual block's output, each downsample.
        self.down = nn.ModuleList()
        skip_channels = [base]
        width = base
        resolution = config.image_size
        for level, multiplier in enumerate(config.channel_multipliers):
            for _ in range(config.num_res_blocks):
                out = base * multiplier
                stage = nn.ModuleList([ResidualBlock(width, out, embed_dim, dropout, groups)])
                if resolution in config.attention_resolutions:
                    stage.append(AttentionBlock(out, groups))
                self.down.append(stage)
                width = out
                skip_channels.append(width)
            if level < levels - 1:
                self.down.append(nn.ModuleList([Downsample(width)]))
                skip_channels.append(width)
                resolution //= 2

        self.middle = nn.ModuleList([ResidualBlock(width, width, embed_dim, dropout, groups)])
        if resolution in config.attention_resolutions:
            self.middle.append(AttentionBlock(width, groups))
        self.middle.append(ResidualBlock(width, width, embed_dim, dropout, groups))

        # Up path: one more block per level than on the way down, so every stored skip
        # (including the downsample outputs) is consumed exactly once.
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            out = base * config.channel_multipliers[level]
            for _ in range(config.num_res_blocks + 1):
                stage = nn.ModuleList([ResidualBlock(width + skip_channels.pop(), out, embed_dim, dropout, groups)])
                if resolution in config.attention_resolutions:
                    stage.append(AttentionBlock(out, groups))
                self.up.append(stage)
                width = out
            if level > 0:
                self.up.append(nn.ModuleList([Upsample(width)]))
                resolution *= 2
        assert not skip_channels

        self.head_norm = nn.GroupNorm(_groups(width, groups), width)
        self.head = _zero_(nn.Conv2d(width, config.channels, 3, padding=1))

    @property
    def size_factor(self) -> int:
        """H and W must be divisible by this: 2**(levels − 1)."""
        return 2 ** (len(self.config.channel_multipliers) - 1)

    def _check_input(self, x: torch.Tensor, t: torch.Tensor) -> None:
        channels = self.config.channels + self.config.extra_input_channels
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {channels}, H, W), got {got}")
        if x.shape[2] % self.size_factor or x.shape[3] % self.size_factor:
            raise ValueError(
                f"H and W must be divisible by {self.size_factor} for {len(self.config.channel_multipliers)} "
                f"levels, got {tuple(x.shape[2:])}"
            )
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must have shape (B,) = ({x.shape[0]},), got {got}")

    def _stage(self, stage: nn.ModuleList, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        for layer in stage:
            h = layer(h, embedding) if isinstance(layer, ResidualBlock) else layer(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_input(x, t)
        embedding = self.time_mlp(self.time_features(t))
        h = self.stem(x)
        skips = [h]
        for stage in self.down:
            h = self._stage(stage, h, embedding)
            skips.append(h)
        h = self._stage(self.middle, h, embedding)
        for stage in self.up:
            if not isinstance(stage[0], Upsample):
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._stage(stage, h, embedding)
        return self.head(F.silu(self.head_norm(h)))
