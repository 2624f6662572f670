"""The trained prior: a U-Net scaled by the SDE's marginal std.

    s_θ(x, t) = UNet_θ(x, t) / std(t),        x: (B, C, N, N), t: (B,)

The perturbation kernel's score is −z / std(t) with z ~ N(0, I), so dividing by std(t) lets
the network predict a quantity of unit scale at every t (Song et al. 2021, the
"scale by sigma" trick) while the model's output has the scale of the true score
∇ₓ log p_t(x).

With ``preconditioning="edm"`` (Karras, Aittala, Aila & Laine 2022) the network is wrapped as
a denoiser of x̃ = x / m(t) = x_0 + σ z, σ = std(t)/m(t), with the data's std σ_d:

    D(x̃, σ) = c_skip x̃ + c_out F_θ(c_in x̃, c_noise),
    c_skip = σ_d² / (σ² + σ_d²),  c_out = σ σ_d / √(σ² + σ_d²),  c_in = 1 / √(σ² + σ_d²),
    c_noise = ¼ ln σ,

and the score follows from Tweedie's formula, s_θ(x, t) = (m(t) D − x) / std(t)². Input and
target of F keep unit variance at every noise level, and at small σ the skip connection carries
the signal (D → x̃), so the network only learns the residual.

A :class:`ScoreModel` is a *prior* in the package's sense: a score callable
that carries its ``sde``, ``image_size``, ``channels``, ``value_range`` and ``config``.

A *patch prior* (``config.patch`` set, :mod:`scoreinv.models.patch`) scores P×P patches given
two position channels, ``model(p, t, positions)``; called on whole images, ``model(x, t)``
with x (B, C, N, N) for any N in [``patch.min_image_size``, ``patch.max_image_size``], it
assembles their score from the patches of a tiling whose offset moves with t. Its
``image_size`` is None (it has no single size) and ``image_sizes`` gives the range it serves.
"""

from __future__ import annotations

import torch
from torch import nn

from scoreinv.config import ModelConfig
from scoreinv.models.patch import (cut_patches, distinct_starts, paste_patches, tile_starts, tiling_offsets,
                                   tiling_positions)
from scoreinv.models.unet import UNet
from scoreinv.sde import SDE, expand_to


class ScoreModel(nn.Module):
    """Score network s_θ(x, t) ≈ ∇ₓ log p_t(x) built from a :class:`~scoreinv.config.ModelConfig`.

    Parameters
    ----------
    config:
        SDE, U-Net architecture and the data's value range.
    seed:
        Seeds the initial weights (and the fixed random Fourier time features), so a
        training run is reproducible from its configuration; ``None`` draws them from
        torch's global generator. The caller's global RNG state is left as it was.
    """

    def __init__(self, config: ModelConfig, seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ValueError(f"ScoreModel needs a ModelConfig, got {type(config).__name__}")
        self._config = config
        self._sde = config.sde.build()
        if seed is None:
            self.unet = UNet(config.unet)
        else:
            # Layer initialisers draw from the global generator: seed it inside a fork.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                self.unet = UNet(config.unet)
        # Channels-last (NHWC) convolution weights: oneDNN's CPU convolutions run this U-Net about
        # twice as fast in that layout as in NCHW, for the same scores to float32 rounding. Inputs
        # may come in either layout; loading weights and moving devices keep it.
        self.to(memory_format=torch.channels_last)

    @property
    def config(self) -> ModelConfig:
        return self._config

    @property
    def sde(self) -> SDE:
        return self._sde

    @property
    def image_size(self) -> int | None:
        """Height = width of the images it scores; None for a patch prior (see ``image_sizes``)."""
        return None if self.is_patch_prior else self._config.unet.image_size

    @property
    def is_patch_prior(self) -> bool:
        return self._config.patch is not None

    @property
    def patch_size(self) -> int | None:
        """P of a patch prior (None otherwise)."""
        return self._config.unet.image_size if self.is_patch_prior else None

    @property
    def image_sizes(self) -> tuple[int, int]:
        """(smallest, largest) image size N it serves: (N, N) for a whole-image prior."""
        patch = self._config.patch
        if patch is None:
            return (self._config.unet.image_size, self._config.unet.image_size)
        return (patch.min_image_size, patch.max_image_size)

    def serves_image_size(self, size: int) -> bool:
        low, high = self.image_sizes
        return low <= int(size) <= high

    def serves(self, shape: tuple[int, ...]) -> bool:
        """Whether it scores images of ``shape`` (C, H, W): its channels, square, a size it serves."""
        channels, height, width = (int(v) for v in shape)
        return channels == self.channels and height == width and self.serves_image_size(height)

    def describe_images(self) -> str:
        """The images it scores, for messages: "(1, 64, 64)" or "(1, N, N), 64 <= N <= 512"."""
        low, high = self.image_sizes
        if low == high:
            return f"({self.channels}, {low}, {low})"
        return f"({self.channels}, N, N), {low} <= N <= {high}"

    @property
    def channels(self) -> int:
        return self._config.unet.channels

    @property
    def value_range(self) -> tuple[float, float]:
        return self._config.value_range

    def _check_input(self, x: torch.Tensor, t: torch.Tensor) -> None:
        low, high = self.image_sizes
        if low == high:
            expected = f"(B, {self.channels}, {low}, {low})"
        else:
            expected = f"(B, {self.channels}, N, N) with {low} <= N <= {high}"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a floating tensor of shape {expected}, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating tensor of shape {expected}, got dtype {x.dtype}")
        if (x.dim() != 4 or x.shape[1] != self.channels or x.shape[2] != x.shape[3]
                or not self.serves_image_size(x.shape[2])):
            raise ValueError(f"x must have shape {expected}, got {tuple(x.shape)}")
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must have shape (B,) = ({x.shape[0]},) to match x, got {got}")
        if not t.is_floating_point():
            raise ValueError(f"t must be a floating tensor of times in [0, T], got dtype {t.dtype}")

    #: Most network inputs (whole images, or a patch prior's patches) per network call: a large
    #: batch is split by itself, so the activations' memory does not grow with the batch.
    network_batch: int = 64

    def forward(self, x: torch.Tensor, t: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """s_θ(x, t) ≈ ∇ₓ log p_t(x); x (B, C, N, N), t (B,) -> (B, C, N, N).

        A patch prior also takes ``positions`` (B, 2, P, P) with x the patches (B, C, P, P)
        (:func:`scoreinv.models.patch.position_channels`); without them x is whole images.
        """
        if self.is_patch_prior:
            if positions is None:
                return self._whole_image_score(x, t)
            return self._patch_score(x, t, positions)
        if positions is not None:
            raise ValueError("positions are an input of patch priors only; this prior scores whole images")
        self._check_input(x, t)
        return self._network_score_in_chunks(x, t)

    def _patch_score(self, x: torch.Tensor, t: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        patch = self.patch_size
        expected = (x.shape[0], 2, patch, patch)
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, patch, patch):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"patches must have shape (B, {self.channels}, {patch}, {patch}), got {got}")
        if not isinstance(positions, torch.Tensor) or tuple(positions.shape) != expected:
            got = tuple(positions.shape) if isinstance(positions, torch.Tensor) else type(positions).__name__
            raise ValueError(f"positions must have shape {expected}, got {got}")
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must have shape (B,) = ({x.shape[0]},) to match x, got {got}")
        return self._network_score_in_chunks(x, t, positions.to(x.dtype))

    def _whole_image_score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The patch prior's score of whole images: one tiling per distinct offset in the batch."""
        self._check_input(x, t)
        patch, size = self.patch_size, x.shape[-1]
        offsets = tiling_offsets(t, patch)
        out = torch.empty_like(x)
        for offset in sorted(set(offsets)):
            items = [b for b, o in enumerate(offsets) if o == offset]
            index = torch.tensor(items, device=x.device)
            rows, cols = tile_starts(size, patch, offset[0]), tile_starts(size, patch, offset[1])
            row_starts, col_starts = distinct_starts(rows), distinct_starts(cols)
            patches = cut_patches(x[index], row_starts, col_starts, patch)
            per_item = len(row_starts) * len(col_starts)
            positions = tiling_positions(row_starts, col_starts, patch, size, x.device).repeat(len(items), 1, 1, 1)
            times = t[index].repeat_interleave(per_item)
            scores = self._network_score_in_chunks(patches, times, positions.to(x.dtype))
            out[index] = paste_patches(scores, x[index], rows, cols)
        return out

    def _network_score_in_chunks(self, x: torch.Tensor, t: torch.Tensor,
                                 positions: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`_network_score` over at most :attr:`network_batch` inputs per call (each input's
        score depends on that input only, so the split changes no value)."""
        if x.shape[0] <= self.network_batch:
            return self._network_score(x, t, positions)
        step = self.network_batch
        return torch.cat([
            self._network_score(x[i:i + step], t[i:i + step], None if positions is None else positions[i:i + step])
            for i in range(0, x.shape[0], step)])

    def _network_score(self, x: torch.Tensor, t: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """The preconditioned network's score on inputs of the network's own size (patches or images)."""
        # std in x's dtype: the output keeps the input's precision (float32 under bfloat16
        # autocast too, and not float64 when t happens to be float64).
        std = expand_to(self._sde.marginal_std(t).to(x.dtype), x)

        def network(inputs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
            if positions is None:
                return self.unet(inputs, times)
            return self.unet(torch.cat([inputs, positions], dim=1), times)

        if self._config.preconditioning == "std":
            return network(x, t) / std
        mean = expand_to(self._sde.mean_coefficient(t).to(x.dtype), x)
        sigma = std / mean
        sigma_data = self._config.sigma_data
        scale = (sigma**2 + sigma_data**2).rsqrt()
        scaled = x / mean
        c_noise = sigma.flatten(1)[:, 0].log() / 4
        denoised = (sigma_data**2 * scale**2) * scaled + (sigma * sigma_data * scale) * network(
            scale * scaled, c_noise)
        return (mean * denoised - x) / std**2

    def extra_repr(self) -> str:
        if self.is_patch_prior:
            low, high = self.image_sizes
            return f"sde={self._sde!r}, patch_size={self.patch_size}, image_sizes={low}..{high}, channels={self.channels}"
        return f"sde={self._sde!r}, image_size={self.image_size}, channels={self.channels}"
