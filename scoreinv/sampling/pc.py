"""The predictor–corrector (PC) sampler: the one reverse-time loop of the package.

Time grid: t_0 = T > t_1 > … > t_{N−1} = ε, uniform, N = ``steps``. At each t_i
the corrector runs its Langevin steps at t_i, then the predictor moves x from
t_i to t_{i+1}. At the last time t_{N−1} = ε, instead of a predictor step, the
final denoising step returns the Tweedie mean E[x_0 | x_ε] = (x + std(ε)² s) / m(ε)
with no noise added (``denoise=True``). Score evaluations:
N (predictor and final denoising) + N × corrector steps.

Conditioning (data consistency for inverse problems) plugs into this loop
through a :class:`Conditioning` object instead of a copy of the loop: its
``project`` runs after every predictor and corrector update, its ``finish``
on the final state (after the denoising step).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

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
    sampler denoises) and returns the result.
    """

    def project(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return x


def default_eps(sde: SDE) -> float:
    """score_sde's smallest sampling time: 1e-5 for VE, 1e-3 for the VP family."""
    return 1e-5 if isinstance(sde, VESDE) else 1e-3


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
        ``none``; correctors ``langevin``, ``annealed_langevin``, ``none``.
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
        Start from this x_T instead of a prior draw (e.g. warm starts).
    conditioning:
        Data-consistency hooks; ``None`` samples unconditionally.
    dtype:
        Floating type of the prior draw (ignored with ``x_init``).

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

    step_predictor = make_predictor(predictor, sde, counted_score)
    step_corrector = make_corrector(corrector, sde, counted_score, snr, corrector_steps)

    start = time.perf_counter()
    with torch.no_grad():
        if x_init is not None:
            if tuple(x_init.shape) != shape:
                raise ValueError(f"x_init has shape {tuple(x_init.shape)}, expected {shape}")
            x = x_init.to(device)
        else:
            x = sde.prior_sampling(shape, generator=generator, device=device, dtype=dtype)
        times = torch.linspace(sde.T, eps, steps, device=device, dtype=torch.float64)
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
