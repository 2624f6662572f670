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
"""

from __future__ import annotations

import torch
from torch import nn

from scoreinv.config import ModelConfig
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

    @property
    def config(self) -> ModelConfig:
        return self._config

    @property
    def sde(self) -> SDE:
        return self._sde

    @property
    def image_size(self) -> int:
        return self._config.unet.image_size

    @property
    def channels(self) -> int:
        return self._config.unet.channels

    @property
    def value_range(self) -> tuple[float, float]:
        return self._config.value_range

    def _check_input(self, x: torch.Tensor, t: torch.Tensor) -> None:
        expected = f"(B, {self.channels}, {self.image_size}, {self.image_size})"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a floating tensor of shape {expected}, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating tensor of shape {expected}, got dtype {x.dtype}")
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, self.image_size, self.image_size):
            raise ValueError(f"x must have shape {expected}, got {tuple(x.shape)}")
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must have shape (B,) = ({x.shape[0]},) to match x, got {got}")
        if not t.is_floating_point():
            raise ValueError(f"t must be a floating tensor of times in [0, T], got dtype {t.dtype}")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """s_θ(x, t) ≈ ∇ₓ log p_t(x); x (B, C, N, N), t (B,) -> (B, C, N, N)."""
        self._check_input(x, t)
        # std in x's dtype: the output keeps the input's precision (float32 under bfloat16
        # autocast too, and not float64 when t happens to be float64).
        std = expand_to(self._sde.marginal_std(t).to(x.dtype), x)
        if self._config.preconditioning == "std":
            return self.unet(x, t) / std
        mean = expand_to(self._sde.mean_coefficient(t).to(x.dtype), x)
        sigma = std / mean
        sigma_data = self._config.sigma_data
        scale = (sigma**2 + sigma_data**2).rsqrt()
        scaled = x / mean
        c_noise = sigma.flatten(1)[:, 0].log() / 4
        denoised = (sigma_data**2 * scale**2) * scaled + (sigma * sigma_data * scale) * self.unet(
            scale * scaled, c_noise)
        return (mean * denoised - x) / std**2

    def extra_repr(self) -> str:
        return f"sde={self._sde!r}, image_size={self.image_size}, channels={self.channels}"
