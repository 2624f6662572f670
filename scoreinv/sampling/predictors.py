"""Predictors: one step of a reverse-time SDE solver, from t to t − dt.

Each predictor has ``update(x, t, dt, generator) -> (x, x_mean)``: ``x`` is the
new state (with noise), ``x_mean`` the same step without the noise term (what a
final denoising step returns). ``t`` has shape (B,), ``dt > 0`` is the step size.
Predictors see only an SDE and a score callable ``score_fn(x, t)``, plus the loop's
``conditioning`` (set by :func:`scoreinv.sampling.pc_sample`), whose ``denoised`` hook a
predictor that forms a Tweedie estimate applies to it (``ddim``).
"""

from __future__ import annotations

import abc
import math

import torch

from scoreinv.registries import register
from scoreinv.sde import SDE, ScoreFn, SubVPSDE, VESDE, VPSDE, expand_to
from scoreinv.seeding import standard_normal


class Predictor(abc.ABC):
    """Base class: a reverse step driven by ``score_fn`` under ``sde``."""

    name: str = ""
    #: The PC loop's Conditioning (``None`` outside the loop); only ``ddim`` uses it.
    conditioning = None

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


class DDIMPredictor(Predictor):
    """A DDIM step (Song, Meng & Ermon 2021) in σ = std/m units, through the Tweedie estimate.

    With a = m(t), s = std(t), σ = s/a at t and a', σ' at t' = t − dt, one score evaluation:

        x̂₀ = (x + s² s_θ(x, t)) / a,   ε̂ = (x − a x̂₀) / s,   x̂₀ ← conditioning.denoised(x̂₀, t),
        c = η σ' √(1 − σ'²/σ²),
        x_mean = a' (x̂₀ + √(σ'² − c²) ε̂),   x = x_mean + a' c z.

    η = 0 is the deterministic DDIM step (the probability-flow ODE's exponential
    integrator), η = 1 the ancestral step (VE: SMLD's; VP: DDPM's posterior variance). Written
    with m and std only, it serves VE, VP and sub-VP alike. ε̂ is taken from the estimate
    before ``denoised`` changes it, so a data-consistency hook moves the clean part only.

    ``zeta`` (ζ ∈ [0, 1]), when given, replaces η's rule by a fixed share of fresh noise,
    c = σ' √ζ (DiffPIR's ζ, Zhu et al. 2023): ζ = 1 re-noises x̂₀ to the next level with no
    memory of ε̂. η = 1 is ζ = 1 − σ'²/σ², which on a fine grid is close to 0 (about 0.3 at
    50 log-σ steps from 64 to 0.01); a larger ζ lets a data-consistency hook's corrections,
    and the noise they carry, be forgotten faster.
    """

    name = "ddim"

    def __init__(self, sde: SDE, score_fn: ScoreFn, eta: float = 1.0, zeta: float | None = None) -> None:
        eta = float(eta)
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"the ddim predictor's eta must lie in [0, 1], got {eta}")
        if zeta is not None and not 0.0 <= float(zeta) <= 1.0:
            raise ValueError(f"the ddim predictor's zeta must lie in [0, 1], got {zeta}")
        super().__init__(sde, score_fn)
        self.eta = eta
        self.zeta = None if zeta is None else float(zeta)

    def update(self, x, t, dt, generator=None):
        score = self.score_fn(x, t)
        mean, std = self.sde.mean_coefficient(t), self.sde.marginal_std(t)
        x0 = self.sde.tweedie(x, t, score)
        noise_estimate = (x - expand_to(mean, x) * x0) / expand_to(std, x)
        if self.conditioning is not None:
            x0 = self.conditioning.denoised(x0, t, generator)
        t_next = t - dt
        mean_next, std_next = self.sde.mean_coefficient(t_next), self.sde.marginal_std(t_next)
        sigma, sigma_next = std / mean, std_next / mean_next
        if self.zeta is None:
            spread = self.eta * sigma_next * torch.sqrt((1 - (sigma_next / sigma) ** 2).clamp_min(0))
        else:
            spread = sigma_next * self.zeta**0.5
        kept = torch.sqrt((sigma_next**2 - spread**2).clamp_min(0))
        x_mean = expand_to(mean_next, x) * (x0 + expand_to(kept, x) * noise_estimate)
        if (self.eta if self.zeta is None else self.zeta) == 0.0:
            return x_mean, x_mean
        noise = standard_normal(x, generator)
        return x_mean + expand_to(mean_next * spread, x) * noise, x_mean


PREDICTORS: dict[str, type[Predictor]] = {
    cls.name: cls
    for cls in (NonePredictor, EulerMaruyamaPredictor, ReverseDiffusionPredictor, AncestralSamplingPredictor,
                DDIMPredictor)
}


def register_predictor(cls: type[Predictor]) -> type[Predictor]:
    """Class decorator: add a :class:`Predictor` subclass to :data:`PREDICTORS` under its ``name``
    (from outside the package too; samplers and reconstruction settings then accept the name). A name
    already registered is a ValueError."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty name to be registered")
    return register(PREDICTORS, cls.name, cls, "predictor")


def make_predictor(name: str, sde: SDE, score_fn: ScoreFn, **options) -> Predictor:
    """Build a predictor by name: one of :data:`PREDICTORS`; ``options`` go to its constructor
    (``eta`` of ``ddim``)."""
    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}; choose one of {sorted(PREDICTORS)}")
    return PREDICTORS[name](sde, score_fn, **options)
