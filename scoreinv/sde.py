"""Forward SDEs of score-based generative models (Song et al., ICLR 2021).

Every SDE here is of the form

    dx = f(x, t) dt + g(t) dw,        t ∈ [0, T], T = 1,

with an affine drift, so its perturbation kernel p_0t(x_t | x_0) is Gaussian,
``N(m(t) x_0, std(t)² I)``. Three families:

* :class:`VESDE` (variance exploding): σ(t) = σ_min (σ_max / σ_min)^t, f = 0,
  g(t) = σ(t) √(2 log(σ_max / σ_min)); m(t) = 1, std(t) = σ(t).
  As in score_sde, the kernel std is σ(t) rather than √(σ(t)² − σ_min²): the
  process starts from the data convolved with N(0, σ_min²), which is
  indistinguishable from the data for σ_min ≪ the data's scale and keeps
  std(t) > 0 everywhere. Prior N(0, σ_max² I).
* :class:`VPSDE` (variance preserving): β(t) = β_min + t (β_max − β_min),
  f = −½ β(t) x, g = √β(t); m(t) = exp(−½ B(t)), std(t)² = 1 − exp(−B(t)),
  with B(t) = ∫₀ᵗ β(s) ds. Prior N(0, I).
* :class:`SubVPSDE`: as VP but g(t)² = β(t) (1 − exp(−2 B(t))), so
  std(t) = 1 − exp(−B(t)). Prior N(0, I).

Conventions: ``x`` is batch-first ``(B, ...)``; ``t`` is a tensor of shape
``(B,)``; every returned std / diffusion coefficient has shape ``(B,)``;
drifts and means have the shape of ``x``. Nothing here knows about networks
or operators: a *score function* is any callable ``score_fn(x, t)``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import torch

from scoreinv.seeding import Generator, randn

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def expand_to(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-item values ``(B,)`` to broadcast against ``like`` ``(B, ...)``."""
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1)))


def _check_time(x: torch.Tensor, t: torch.Tensor) -> None:
    if t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"t must have shape (B,) = ({x.shape[0]},) to match x of shape {tuple(x.shape)}, "
            f"got {tuple(t.shape)}"
        )


class SDE(abc.ABC):
    """A forward SDE dx = f(x, t) dt + g(t) dw on t ∈ [0, T] with a Gaussian kernel.

    Parameters
    ----------
    N:
        Default number of discretisation steps, used by :meth:`discretize` when
        no step size is given (score_sde's convention). Samplers pass their own.
    """

    T: float = 1.0

    def __init__(self, N: int = 1000) -> None:
        if int(N) < 1:
            raise ValueError(f"N (number of discretisation steps) must be >= 1, got {N}")
        self.N = int(N)

    # -- the process -------------------------------------------------------------
    @abc.abstractmethod
    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift f(x, t) (shape of x) and diffusion g(t) (shape (B,))."""

    @abc.abstractmethod
    def mean_coefficient(self, t: torch.Tensor) -> torch.Tensor:
        """m(t) of the kernel mean m(t) x_0, shape (B,)."""

    @abc.abstractmethod
    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        """std(t) of the perturbation kernel, shape (B,)."""

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``m(t) x0`` (shape of x0) and std ``std(t)`` (shape (B,)) of p_0t(x_t | x0)."""
        _check_time(x0, t)
        return expand_to(self.mean_coefficient(t), x0) * x0, self.marginal_std(t)

    # -- the prior p_T ----------------------------------------------------------
    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the isotropic Gaussian prior N(0, prior_std² I)."""

    def prior_sampling(
        self,
        shape: tuple[int, ...],
        generator: Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Draw x_T ~ N(0, prior_std² I) of the given shape, through ``generator``.

        ``generator`` may be an :class:`ItemGenerators` (row b from generator b).
        """
        z = randn(shape, generator, device, dtype)
        return self.prior_std * z.to(device) if device is not None else self.prior_std * z

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, prior_std² I) per item, shape (B,), in nats."""
        dims = z[0].numel()
        var = self.prior_std**2
        sq = z.flatten(1).pow(2).sum(dim=1)
        return -0.5 * dims * math.log(2 * math.pi * var) - sq / (2 * var)

    # -- discretisation ------------------------------------------------------------
    def discretize(
        self, x: torch.Tensor, t: torch.Tensor, dt: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward step x_{t+dt} = x_t + f_i + G_i z as ``(f_i, G_i)``.

        The default is Euler–Maruyama: f_i = f(x, t) dt, G_i = g(t) √dt. VE and VP
        override it with the exact kernel between t − dt and t (the SMLD / DDPM
        chains), which is what the reverse-diffusion and ancestral predictors use.
        ``dt`` defaults to T / N.
        """
        dt = self.T / self.N if dt is None else float(dt)
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    # -- time reversal ---------------------------------------------------------------
    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (or probability-flow ODE) driven by ``score_fn``."""
        return ReverseSDE(self, score_fn, probability_flow)

    def noise_level(self, t: torch.Tensor) -> torch.Tensor:
        """σ(t) = std(t) / m(t): the noise of x_t / m(t) = x_0 + σ(t) z, in data units; (B,)."""
        return self.marginal_std(t) / self.mean_coefficient(t)

    def time_at_noise_level(self, sigma: torch.Tensor, iterations: int = 60) -> torch.Tensor:
        """The t in [0, T] with :meth:`noise_level` (t) = σ (clamped to the SDE's range), by
        bisection (σ(t) increases with t for every SDE here); same shape as ``sigma``."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        low = torch.zeros_like(sigma)
        high = torch.full_like(sigma, float(self.T))
        for _ in range(iterations):
            middle = (low + high) / 2
            above = self.noise_level(middle) >= sigma
            high = torch.where(above, middle, high)
            low = torch.where(above, low, middle)
        return (low + high) / 2

    def tweedie(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """E[x_0 | x_t] = (x_t + std(t)² ∇ log p_t(x_t)) / m(t), exact for any data law."""
        std = expand_to(self.marginal_std(t), x)
        mean = expand_to(self.mean_coefficient(t), x)
        return (x + std**2 * score) / mean


class ReverseSDE:
    """The time reversal of a forward SDE, integrated from t = T down to t = 0.

    With ``probability_flow=False``: dx = [f − g² s] dt + g dw̄ (c = 1).
    With ``probability_flow=True``: dx = [f − ½ g² s] dt, no noise (diffusion 0).
    """

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False) -> None:
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.T = forward.T
        self.N = forward.N

    def _weight(self) -> float:
        return 0.5 if self.probability_flow else 1.0

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse drift f − c g² s (shape of x) and diffusion (g, or 0 for the ODE)."""
        drift, diffusion = self.forward.sde(x, t)
        score = self.score_fn(x, t)
        drift = drift - expand_to(diffusion**2, x) * score * self._weight()
        if self.probability_flow:
            diffusion = torch.zeros_like(diffusion)
        return drift, diffusion

    def discretize(
        self, x: torch.Tensor, t: torch.Tensor, dt: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Discrete reverse step: rev_f = f_i − c G_i² s, rev_G = G_i (0 for the ODE)."""
        f, G = self.forward.discretize(x, t, dt)
        score = self.score_fn(x, t)
        rev_f = f - expand_to(G**2, x) * score * self._weight()
        rev_G = torch.zeros_like(G) if self.probability_flow else G
        return rev_f, rev_G


class VESDE(SDE):
    """Variance-exploding SDE. See the module docstring for the formulas.

    Parameters
    ----------
    sigma_min, sigma_max:
        Noise scales at t = 0 and t = T; 0 < sigma_min < sigma_max. σ_max should
        be about the largest pairwise distance between training images.
    N:
        Default number of discretisation steps.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000) -> None:
        super().__init__(N)
        if not (math.isfinite(sigma_min) and math.isfinite(sigma_max)):
            raise ValueError(f"sigma_min and sigma_max must be finite, got {sigma_min}, {sigma_max}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(
                f"VESDE needs 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}"
            )
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def __repr__(self) -> str:
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, N={self.N})"

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_time(x, t)
        diffusion = self.sigma(t) * math.sqrt(2 * self._log_ratio)
        return torch.zeros_like(x), diffusion

    def mean_coefficient(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma(t)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def discretize(
        self, x: torch.Tensor, t: torch.Tensor, dt: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SMLD chain: f_i = 0, G_i = √(σ(t)² − σ(t − dt)²), with σ(t − dt) := 0 when t − dt ≤ 0.

        The last convention makes the final reverse step from t = ε land on the
        denoised mean x + σ(ε)² s (score_sde's discrete σ_{-1} = 0).
        """
        _check_time(x, t)
        dt = self.T / self.N if dt is None else float(dt)
        sigma = self.sigma(t)
        t_prev = t - dt
        sigma_prev = torch.where(t_prev > 0, self.sigma(t_prev.clamp_min(0)), torch.zeros_like(sigma))
        return torch.zeros_like(x), torch.sqrt(sigma**2 - sigma_prev**2)


class VPSDE(SDE):
    """Variance-preserving SDE (the continuous DDPM). See the module docstring.

    Parameters
    ----------
    beta_min, beta_max:
        β(0) and β(T); 0 <= beta_min < beta_max.
    N:
        Default number of discretisation steps.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000) -> None:
        super().__init__(N)
        if not (math.isfinite(beta_min) and math.isfinite(beta_max)):
            raise ValueError(f"beta_min and beta_max must be finite, got {beta_min}, {beta_max}")
        if not 0 <= beta_min < beta_max:
            raise ValueError(
                f"{type(self).__name__} needs 0 <= beta_min < beta_max, "
                f"got beta_min={beta_min}, beta_max={beta_max}"
            )
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(beta_min={self.beta_min}, beta_max={self.beta_max}, N={self.N})"

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t: torch.Tensor) -> torch.Tensor:
        """B(t) = ∫₀ᵗ β(s) ds = β_min t + ½ (β_max − β_min) t²."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_time(x, t)
        beta = self.beta(t)
        return -0.5 * expand_to(beta, x) * x, torch.sqrt(beta)

    def mean_coefficient(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * self.integrated_beta(t))

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(-self.integrated_beta(t)))

    @property
    def prior_std(self) -> float:
        return 1.0

    def step_beta(self, t: torch.Tensor, dt: float) -> torch.Tensor:
        """β_i = 1 − exp(−∫_{t−dt}^{t} β): the DDPM noise level of the step ending at t."""
        t_prev = (t - dt).clamp_min(0)
        return -torch.expm1(-(self.integrated_beta(t) - self.integrated_beta(t_prev)))

    def discretize(
        self, x: torch.Tensor, t: torch.Tensor, dt: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DDPM chain x_t = √(1 − β_i) x_{t−dt} + √β_i z, with β_i from :meth:`step_beta`.

        Returns f_i = (√(1 − β_i) − 1) x and G_i = √β_i.
        """
        _check_time(x, t)
        dt = self.T / self.N if dt is None else float(dt)
        beta = self.step_beta(t, dt)
        return (expand_to(torch.sqrt(1 - beta), x) - 1) * x, torch.sqrt(beta)


class SubVPSDE(VPSDE):
    """Sub-VP SDE: the VP drift with g(t)² = β(t)(1 − exp(−2 B(t))); std(t) = 1 − exp(−B(t)).

    Its :meth:`discretize` is Euler–Maruyama (no exact discrete chain is standard).
    """

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_time(x, t)
        beta = self.beta(t)
        diffusion = torch.sqrt(beta * -torch.expm1(-2 * self.integrated_beta(t)))
        return -0.5 * expand_to(beta, x) * x, diffusion

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(-self.integrated_beta(t))

    def discretize(
        self, x: torch.Tensor, t: torch.Tensor, dt: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return SDE.discretize(self, x, t, dt)
