"""Measurement noise models: additive Gaussian, and CT photon counting (log-Poisson).

A noise model is called on a clean measurement ``y = A x`` and returns a noisy one
of the same shape, device and dtype. Every random draw goes through the optional
``torch.Generator`` (a generator on another device than ``y`` is allowed: the draw
happens on the generator's device and is moved), so a seed reproduces the noise.
"""

from __future__ import annotations

import abc
import math

import torch


def _check_measurement(y) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise ValueError(f"a noise model expects a floating-point torch.Tensor, got "
                         f"{getattr(y, 'dtype', type(y).__name__)}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("a noise model's input contains NaN or inf")
    return y


class NoiseModel(abc.ABC):
    """Base class: ``noise(y, generator=None)`` -> noisy y; ``std`` a float summary."""

    @property
    @abc.abstractmethod
    def std(self) -> float: ...

    @abc.abstractmethod
    def std_at(self, y: torch.Tensor) -> torch.Tensor:
        """Per-entry standard deviation of the noise around the clean measurement y."""

    @abc.abstractmethod
    def __call__(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...

    @abc.abstractmethod
    def config(self) -> dict: ...


class GaussianNoise(NoiseModel):
    """y + σ z, z ~ N(0, I), σ = ``std`` in the units of the measurement."""

    def __init__(self, std: float) -> None:
        std = float(std)
        if not math.isfinite(std) or std < 0:
            raise ValueError(f"GaussianNoise: std must be a finite number >= 0, got {std}")
        self._std = std

    @property
    def std(self) -> float:
        return self._std

    def std_at(self, y: torch.Tensor) -> torch.Tensor:
        return torch.full_like(y, self._std)

    def __call__(self, y, generator=None):
        y = _check_measurement(y)
        if self._std == 0:
            return y.clone()
        if generator is None:
            z = torch.randn_like(y)
        else:
            z = torch.randn(y.shape, generator=generator, device=generator.device,
                            dtype=y.dtype).to(y.device)
        return y + self._std * z

    def config(self) -> dict:
        return {"type": "GaussianNoise", "std": self._std}

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self._std:g})"


class PoissonNoise(NoiseModel):
    """Photon-counting noise of a CT sinogram (log-Poisson).

    A ray with line integral p (the clean sinogram value, pixel units) is attenuated
    by Beer–Lambert with ``attenuation_scale`` (μ per unit of image value per pixel,
    so that the physical attenuation is ``attenuation_scale · p``). The detector counts

        counts ~ Poisson(I₀ · exp(−attenuation_scale · p)),   I₀ = ``incident_photons``,

    and the measurement is the log-transformed sinogram, back in the units of p:

        y = −log(max(counts, 1) / I₀) / attenuation_scale.

    (Zero counts are clamped to one photon.) For high counts y ≈ p with variance
    1 / (attenuation_scale² · I₀ · exp(−attenuation_scale · p)), returned per entry
    by :meth:`std_at`. The float :attr:`std` is that value at the line integral
    ``reference`` (default 0: the unattenuated rays, the smallest std in the sinogram).
    """

    def __init__(self, incident_photons: float, attenuation_scale: float = 1.0, *,
                 reference: float = 0.0) -> None:
        incident_photons = float(incident_photons)
        attenuation_scale = float(attenuation_scale)
        if not math.isfinite(incident_photons) or incident_photons <= 0:
            raise ValueError(f"PoissonNoise: incident_photons must be > 0, got {incident_photons}")
        if not math.isfinite(attenuation_scale) or attenuation_scale <= 0:
            raise ValueError(f"PoissonNoise: attenuation_scale must be > 0, got {attenuation_scale}")
        self.incident_photons = incident_photons
        self.attenuation_scale = attenuation_scale
        self.reference = float(reference)

    @property
    def std(self) -> float:
        return float(self.std_at(torch.tensor(self.reference, dtype=torch.float64)))

    def std_at(self, y: torch.Tensor) -> torch.Tensor:
        expected = self.incident_photons * torch.exp(-self.attenuation_scale * y)
        return 1.0 / (self.attenuation_scale * torch.sqrt(expected))

    def __call__(self, y, generator=None):
        y = _check_measurement(y)
        # float64 rates: exp(−μp) and the log of the counts lose nothing for large I₀
        rates = self.incident_photons * torch.exp(-self.attenuation_scale * y.double())
        if generator is None:
            counts = torch.poisson(rates)
        else:
            counts = torch.poisson(rates.to(generator.device), generator=generator).to(y.device)
        noisy = -torch.log(counts.clamp_min(1.0) / self.incident_photons) / self.attenuation_scale
        return noisy.to(y.dtype)

    def config(self) -> dict:
        return {"type": "PoissonNoise", "incident_photons": self.incident_photons,
                "attenuation_scale": self.attenuation_scale, "reference": self.reference}

    def __repr__(self) -> str:
        return (f"PoissonNoise(incident_photons={self.incident_photons:g}, "
                f"attenuation_scale={self.attenuation_scale:g})")


def noise_from_config(config: dict | None) -> NoiseModel | None:
    """Rebuild a noise model from its :meth:`NoiseModel.config` (None -> None)."""
    if config is None:
        return None
    kind = config.get("type")
    args = {k: v for k, v in config.items() if k != "type"}
    if kind == "GaussianNoise":
        return GaussianNoise(**args)
    if kind == "PoissonNoise":
        return PoissonNoise(**args)
    raise ValueError(f"unknown noise model type {kind!r} (expected GaussianNoise or PoissonNoise)")


def make_noise(noise_std: float, noise: NoiseModel | None, where: str) -> NoiseModel | None:
    """The operators' ``noise_std=`` / ``noise=`` arguments -> one noise model (or None)."""
    if noise is not None:
        if not isinstance(noise, NoiseModel):
            raise ValueError(f"{where}: noise must be a NoiseModel (GaussianNoise, PoissonNoise), "
                             f"got {type(noise).__name__}")
        if noise_std:
            raise ValueError(f"{where}: give either noise_std or noise, not both")
        return noise
    noise_std = float(noise_std)
    if not math.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"{where}: noise_std must be a finite number >= 0, got {noise_std}")
    return GaussianNoise(noise_std) if noise_std > 0 else None
