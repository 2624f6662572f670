"""The predictor–corrector (PC) sampler: the one reverse-time loop of the package.

Time grid: t_0 = T > t_1 > … > t_{N−1} = ε, N = ``steps`` (:func:`sampling_times`: uniform in t
by default, or uniform in log σ, or Karras et al.'s ρ = 7 spacing in σ). At each t_i
the corrector runs its Langevin steps at t_i, then the predictor moves x from
t_i to t_{i+1}. At the last time t_{N−1} = ε, instead of a predictor step, the
final denoising step returns the Tweedie mean E[x_0 | x_ε] = (x + std(ε)² s) / m(ε)
with no noise added (``denoise=True``). Score evaluations:
N (predictor and final denoising) + N × corrector steps.

Conditioning (data consistency for inverse problems) plugs into this loop
through a :class:`Conditioning` object instead of a copy of the loop: its
``project`` runs after every predictor and corrector update, its ``finish``
on the final state (after the denoising step), and its ``denoised`` on the
Tweedie estimate x̂₀ of predictors that form one (the ``ddim`` predictor).
"""

from __future__ import annotations

import time
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from scoreinv.sampling.correctors import make_corrector
from scoreinv.sampling.predictors import make_predictor
from scoreinv.sde import SDE, ScoreFn, VESDE


@dataclass
class SampleResult:
    """What a sampler returns.

    Attributes
    ----------
    samples:
        The samples, shape ``(B, ...)`` as requested.
    nfe:
        Number of score-function evaluations (each on the whole batch).
    seconds:
        Wall time of the sampling loop.
    """

    samples: torch.Tensor
    nfe: int
    seconds: float


class Conditioning:
    """Hook points of the PC loop; the identity here (unconditional sampling).

    Subclasses implement data-consistency steps. ``project(x, t, generator)``
    receives the state ``x`` after every predictor and corrector update, with the
    time ``t`` (shape (B,)) the state is now at, and returns the corrected state.
    ``finish(x)`` receives the final state (the denoised estimate of x_0 when the
    sampler denoises) and returns the result. ``denoised(x0, t, generator)`` receives
    the Tweedie estimate x̂₀ = E[x_0 | x_t] formed inside a predictor step from time
    ``t`` (predictors that form one, such as ``ddim``) and returns the estimate the
    step continues from; the other predictors never call it.
    """

    def project(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x

    def denoised(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x0

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return x


def default_eps(sde: SDE) -> float:
    """score_sde's smallest sampling time: 1e-5 for VE, 1e-3 for the VP family."""
    return 1e-5 if isinstance(sde, VESDE) else 1e-3


TimeGrid = Literal["uniform", "log-sigma", "karras"]
TIME_GRIDS: tuple[str, ...] = ("uniform", "log-sigma", "karras")


def sampling_times(sde: SDE, steps: int, eps: float, kind: str = "uniform",
              device: torch.device | str | None = None, start: float | None = None) -> torch.Tensor:
    """The N = ``steps`` time points t_0 = T > … > t_{N−1} = ε of the reverse loop (float64).

    ``start`` replaces T as the first time point t_0 (a reverse process started part-way, from a
    noised estimate); the grid then spans [ε, start] by the same rule.

    With σ(t) = std(t) / m(t) (:meth:`SDE.noise_level`, increasing in t):

    * ``"uniform"``: t_i = T + i (ε − T) / (N − 1);
    * ``"log-sigma"``: log σ(t_i) uniform between log σ(T) and log σ(ε) (geometric in σ;
      for VE identical to uniform in t);
    * ``"karras"``: σ(t_i)^{1/ρ} uniform between σ(T)^{1/ρ} and σ(ε)^{1/ρ}, ρ = 7 (Karras et
      al. 2022: more points at low noise, where the detail is decided).

    The non-uniform grids map σ back to t with :meth:`SDE.time_at_noise_level` (bisection),
    so they work for any SDE whose σ(t) increases.
    """
    if kind not in TIME_GRIDS:
        raise ValueError(f"unknown time grid {kind!r}; choose one of {list(TIME_GRIDS)}")
    first = sde.T if start is None else float(start)
    if not eps < first <= sde.T:
        raise ValueError(f"the first time point must lie in (eps={eps}, T={sde.T}], got {first}")
    if kind == "uniform":
        return torch.linspace(first, eps, steps, device=device, dtype=torch.float64)
    ends = torch.tensor([first, eps], dtype=torch.float64)
    sigma_max, sigma_min = (float(v) for v in sde.noise_level(ends))
    if kind == "log-sigma":
        sigmas = torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=torch.float64))
    else:
        rho = 7.0
        sigmas = torch.linspace(sigma_max ** (1 / rho), sigma_min ** (1 / rho), steps, dtype=torch.float64) ** rho
    times = sde.time_at_noise_level(sigmas)
    times[0], times[-1] = first, eps
    return times.to(device)


def resolve_device(
    device: torch.device | str | None, generator: torch.Generator | None, x_init: torch.Tensor | None
) -> torch.device:
    """The device to sample on: explicit, else the initial state's, else the generator's, else CPU."""
    if device is not None:
        return torch.device(device)
    if x_init is not None:
        return x_init.device
    if generator is not None:
        return generator.device
    return torch.device("cpu")


def pc_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: Sequence[int],
    *,
    steps: int = 1000,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    corrector_steps: int = 1,
    eps: float | None = None,
    denoise: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_init: torch.Tensor | None = None,
    conditioning: Conditioning | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    time_grid: TimeGrid = "uniform",
    predictor_options: dict | None = None,
    start_time: float | None = None,
) -> SampleResult:
    """Draw samples from the reverse SDE with a predictor–corrector scheme.

    Parameters
    ----------
    score_fn:
        ``score_fn(x, t) -> ∇ₓ log p_t(x)``, x of shape ``shape``, t of shape (B,).
    sde:
        The forward SDE the score belongs to.
    shape:
        ``(B, C, H, W)`` (any batch-first shape works).
    steps:
        N, the number of time points (≥ 2).
    predictor, corrector:
        Names: predictors ``reverse_diffusion``, ``euler_maruyama``, ``ancestral``,
        ``ddim``, ``none``; correctors ``langevin``, ``annealed_langevin``, ``none``.
    snr:
        Signal-to-noise ratio r of the corrector step size.
    corrector_steps:
        M, Langevin steps per time point.
    eps:
        Last time point ε (default :func:`default_eps`).
    denoise:
        Finish with the Tweedie mean at t = ε (no noise).
    generator:
        Seedable source of every random draw (prior sample and noise).
    x_init:
        Start from this x_T (or x at ``start_time``) instead of a prior draw (e.g. warm starts).
    conditioning:
        Data-consistency hooks; ``None`` samples unconditionally.
    dtype:
        Floating type of the prior draw (ignored with ``x_init``).
    time_grid:
        Spacing of the N time points: ``"uniform"`` in t, ``"log-sigma"`` or ``"karras"``
        (see :func:`sampling_times`).
    predictor_options:
        Keyword arguments of the predictor's constructor (``{"eta": 0.5}`` for ``ddim``).

    Returns
    -------
    SampleResult
        Samples, number of score evaluations, wall time.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    eps = default_eps(sde) if eps is None else float(eps)
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps}")
    conditioning = conditioning or Conditioning()
    device = resolve_device(device, generator, x_init)
    shape = tuple(int(s) for s in shape)

    evaluations = 0

    def counted_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        return score_fn(x, t)

    step_predictor = make_predictor(predictor, sde, counted_score, **(predictor_options or {}))
    step_predictor.conditioning = conditioning
    step_corrector = make_corrector(corrector, sde, counted_score, snr, corrector_steps)

    start = time.perf_counter()
    with torch.no_grad():
        if x_init is not None:
            if tuple(x_init.shape) != shape:
                raise ValueError(f"x_init has shape {tuple(x_init.shape)}, expected {shape}")
            x = x_init.to(device)
        else:
            x = sde.prior_sampling(shape, generator=generator, device=device, dtype=dtype)
        times = sampling_times(sde, steps, eps, time_grid, device, start=start_time)
        bar = tqdm(range(steps), desc="PC sampling", disable=not progress, leave=False)
        for i in bar:
            t = torch.full((shape[0],), float(times[i]), device=device, dtype=x.dtype)
            dt = float(times[i] - times[i + 1]) if i + 1 < steps else float(times[i - 1] - times[i])
            if step_corrector.n_steps:
                x, _ = step_corrector.update(x, t, dt, generator)
                x = conditioning.project(x, t, generator)
            if i + 1 < steps:
                x, _ = step_predictor.update(x, t, dt, generator)
                x = conditioning.project(x, torch.full_like(t, float(times[i + 1])), generator)
            elif denoise:
                x = sde.tweedie(x, t, counted_score(x, t))
            bar.set_postfix(nfe=evaluations, refresh=False)
        x = conditioning.finish(x)
    return SampleResult(samples=x, nfe=evaluations, seconds=time.perf_counter() - start)
