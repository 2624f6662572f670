"""Correctors: score-based MCMC steps that keep x distributed as p_t at a fixed t.

Each corrector has ``update(x, t, dt, generator) -> (x, x_mean)`` and runs its
``n_steps`` Langevin iterations at time t (``dt`` is the sampler's step size,
used only for the VP step-size factor α).
"""

from __future__ import annotations

import abc

import torch

from scoreinv.registries import register
from scoreinv.sde import SDE, ScoreFn, VPSDE, expand_to
from scoreinv.seeding import standard_normal


class Corrector(abc.ABC):
    """Base class. ``snr`` is the signal-to-noise ratio r of the step-size rule."""

    name: str = ""

    def __init__(self, sde: SDE, score_fn: ScoreFn, snr: float, n_steps: int = 1) -> None:
        if not snr > 0:
            raise ValueError(f"snr must be > 0, got {snr}")
        if n_steps < 0:
            raise ValueError(f"corrector steps must be >= 0, got {n_steps}")
        self.sde = sde
        self.score_fn = score_fn
        self.snr = float(snr)
        self.n_steps = int(n_steps)

    def alpha(self, t: torch.Tensor, dt: float) -> torch.Tensor:
        """α = 1 − β_i for the VP family (score_sde's rule), 1 otherwise; shape (B,)."""
        if isinstance(self.sde, VPSDE):
            return 1 - self.sde.step_beta(t, dt)
        return torch.ones_like(t)

    @abc.abstractmethod
    def step_size(self, score: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, dt: float) -> torch.Tensor:
        """Per-item Langevin step size ε, shape (B,)."""

    def update(
        self, x: torch.Tensor, t: torch.Tensor, dt: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n_steps of x_mean = x + ε s(x, t),  x = x_mean + √(2ε) z."""
        x_mean = x
        for _ in range(self.n_steps):
            score = self.score_fn(x, t)
            noise = standard_normal(x, generator)
            step = expand_to(self.step_size(score, noise, t, dt), x)
            x_mean = x + step * score
            x = x_mean + torch.sqrt(2 * step) * noise
        return x, x_mean


class NoneCorrector(Corrector):
    """No corrector (pure predictor sampling)."""

    name = "none"

    def __init__(self, sde: SDE, score_fn: ScoreFn, snr: float = 1.0, n_steps: int = 0) -> None:
        super().__init__(sde, score_fn, snr=1.0, n_steps=0)

    def step_size(self, score, noise, t, dt):  # never called: n_steps = 0
        return torch.zeros_like(t)


class LangevinCorrector(Corrector):
    """Langevin MCMC with the SNR rule of Song et al. (2021):

    ε = 2 α (r ‖z‖ / ‖s‖)², norms over all pixels of each item.
    """

    name = "langevin"

    def step_size(self, score, noise, t, dt):
        score_norm = score.flatten(1).norm(dim=1).clamp_min(torch.finfo(score.dtype).tiny)
        noise_norm = noise.flatten(1).norm(dim=1)
        return 2 * self.alpha(t, dt) * (self.snr * noise_norm / score_norm) ** 2


class AnnealedLangevinCorrector(Corrector):
    """Annealed Langevin dynamics (NCSN): ε = 2 α (r std(t))²."""

    name = "annealed_langevin"

    def step_size(self, score, noise, t, dt):
        return 2 * self.alpha(t, dt) * (self.snr * self.sde.marginal_std(t)) ** 2


CORRECTORS: dict[str, type[Corrector]] = {
    cls.name: cls for cls in (NoneCorrector, LangevinCorrector, AnnealedLangevinCorrector)
}


def register_corrector(cls: type[Corrector]) -> type[Corrector]:
    """Class decorator: add a :class:`Corrector` subclass to :data:`CORRECTORS` under its ``name``; a name
    already registered is a ValueError."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty name to be registered")
    return register(CORRECTORS, cls.name, cls, "corrector")


def make_corrector(name: str, sde: SDE, score_fn: ScoreFn, snr: float, n_steps: int) -> Corrector:
    """Build a corrector by name: one of :data:`CORRECTORS`."""
    if name not in CORRECTORS:
        raise ValueError(f"unknown corrector {name!r}; choose one of {sorted(CORRECTORS)}")
    return CORRECTORS[name](sde, score_fn, snr, n_steps)
