"""Predictors: one step of a reverse-time SDE solver, from t to t − dt.

Each predictor has ``update(x, t, dt, generator) -> (x, x_mean)``: ``x`` is the
new state (with noise), ``x_mean`` the same step without the noise term (what a
final denoising step returns). ``t`` has shape (B,), ``dt > 0`` is the step size.
Predictors see only an SDE and a score callable ``score_fn(x, t)``.
"""

from __future__ import annotations

import abc
import math

import torch

from scoreinv.sde import SDE, ScoreFn, SubVPSDE, VESDE, VPSDE, expand_to
from scoreinv.seeding import standard_normal


class Predictor(abc.ABC):
    """Base class: a reverse step driven by ``score_fn`` under ``sde``."""

    name: str = ""

    def __init__(self, sde: SDE, score_fn: ScoreFn) -> None:
        self.sde = sde
        self.score_fn = score_fn
        self.reverse_sde = sde.reverse(score_fn, probability_flow=False)

    @abc.abstractmethod
    def update(
        self, x: torch.Tensor, t: torch.Tensor, dt: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Move x from time t to t − dt; return (x, x_mean)."""


class NonePredictor(Predictor):
    """No predictor: corrector-only sampling (e.g. annealed Langevin dynamics, NCSN)."""

    name = "none"

    def update(self, x, t, dt, generator=None):
        return x, x


class EulerMaruyamaPredictor(Predictor):
    """Euler–Maruyama on the reverse SDE.

    x_mean = x − [f(x, t) − g(t)² s(x, t)] dt,   x = x_mean + g(t) √dt z.
    """

    name = "euler_maruyama"

    def update(self, x, t, dt, generator=None):
        drift, diffusion = self.reverse_sde.sde(x, t)
        x_mean = x - drift * dt
        noise = standard_normal(x, generator)
        return x_mean + expand_to(diffusion, x) * math.sqrt(dt) * noise, x_mean


class ReverseDiffusionPredictor(Predictor):
    """Reverse the forward discretisation (f_i, G_i) of :meth:`SDE.discretize`.

    x_mean = x − f_i + G_i² s(x, t),   x = x_mean + G_i z.
    For the VE SDE this is the reverse SMLD chain; its last step from t = ε with
    σ(ε − dt) = 0 lands on the Tweedie mean x + σ(ε)² s.
    """

    name = "reverse_diffusion"

    def update(self, x, t, dt, generator=None):
        rev_f, rev_G = self.reverse_sde.discretize(x, t, dt)
        x_mean = x - rev_f
        noise = standard_normal(x, generator)
        return x_mean + expand_to(rev_G, x) * noise, x_mean


class AncestralSamplingPredictor(Predictor):
    """Ancestral sampling of the discrete chains (SMLD for VE, DDPM for VP).

    VE, σ = σ(t), σ' = σ(t − dt) (0 below t = 0):
        x_mean = x + (σ² − σ'²) s,  x = x_mean + √(σ'² (σ² − σ'²) / σ²) z.
    VP, β_i = 1 − exp(−∫_{t−dt}^t β):
        x_mean = (x + β_i s) / √(1 − β_i),  x = x_mean + √β_i z.
    The sub-VP SDE has no ancestral chain and is refused.
    """

    name = "ancestral"

    def __init__(self, sde: SDE, score_fn: ScoreFn) -> None:
        if isinstance(sde, SubVPSDE) or not isinstance(sde, (VESDE, VPSDE)):
            raise ValueError(
                f"the ancestral predictor supports VESDE and VPSDE only, not {type(sde).__name__}; "
                "use 'reverse_diffusion' or 'euler_maruyama'"
            )
        super().__init__(sde, score_fn)

    def update(self, x, t, dt, generator=None):
        score = self.score_fn(x, t)
        noise = standard_normal(x, generator)
        if isinstance(self.sde, VESDE):
            sigma = self.sde.sigma(t)
            t_prev = t - dt
            sigma_prev = torch.where(t_prev > 0, self.sde.sigma(t_prev.clamp_min(0)), torch.zeros_like(sigma))
            gap = sigma**2 - sigma_prev**2
            x_mean = x + expand_to(gap, x) * score
            std = torch.sqrt(sigma_prev**2 * gap / sigma**2)
            return x_mean + expand_to(std, x) * noise, x_mean
        beta = self.sde.step_beta(t, dt)
        x_mean = (x + expand_to(beta, x) * score) / expand_to(torch.sqrt(1 - beta), x)
        return x_mean + expand_to(torch.sqrt(beta), x) * noise, x_mean


PREDICTORS: dict[str, type[Predictor]] = {
    cls.name: cls
    for cls in (NonePredictor, EulerMaruyamaPredictor, ReverseDiffusionPredictor, AncestralSamplingPredictor)
}


def register_predictor(cls: type[Predictor]) -> type[Predictor]:
    """Class decorator: add a :class:`Predictor` subclass to :data:`PREDICTORS` under its ``name``
    (from outside the package too; samplers and reconstruction settings then accept the name)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty name to be registered")
    PREDICTORS[cls.name] = cls
    return cls


def make_predictor(name: str, sde: SDE, score_fn: ScoreFn) -> Predictor:
    """Build a predictor by name: one of :data:`PREDICTORS`."""
    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}; choose one of {sorted(PREDICTORS)}")
    return PREDICTORS[name](sde, score_fn)
