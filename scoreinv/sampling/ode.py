"""The probability-flow ODE sampler.

The ODE dx/dt = f(x, t) − ½ g(t)² ∇ₓ log p_t(x) has the same marginals p_t as
the forward SDE, so integrating it from a prior draw x_T ~ p_T down to t = ε
gives a sample of p_ε deterministically. The integration is scipy's
``solve_ivp`` (adaptive RK45 by default) on the whole batch as one system; the
number of function evaluations (NFE) it used is reported. The state crosses to
numpy once per evaluation, which is the price of scipy's controller: the
benchmark ``benchmarks/sampler_overhead.py`` measures it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from scipy.integrate import solve_ivp
from tqdm.auto import tqdm

from scoreinv.sampling.pc import SampleResult, default_eps, resolve_device
from scoreinv.sde import SDE, ScoreFn


def ode_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: Sequence[int],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "RK45",
    eps: float | None = None,
    denoise: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_init: torch.Tensor | None = None,
    progress: bool = True,
) -> SampleResult:
    """Sample by integrating the probability-flow ODE from T to ε.

    Parameters
    ----------
    score_fn, sde, shape:
        As in :func:`scoreinv.sampling.pc_sample`.
    rtol, atol:
        Tolerances of ``scipy.integrate.solve_ivp``.
    method:
        Any ``solve_ivp`` method name (``RK45``, ``RK23``, ``DOP853``, ...).
    eps:
        End time ε (default :func:`scoreinv.sampling.pc.default_eps`).
    denoise:
        Replace the final x_ε by the Tweedie mean E[x_0 | x_ε] (one more evaluation).
    generator:
        Seeds the prior draw x_T; the rest is deterministic.
    x_init:
        Start from this x_T instead (e.g. the latent of :func:`scoreinv.log_likelihood`).

    Returns
    -------
    SampleResult
        ``nfe`` counts every score evaluation, the solver's and the denoising one.
    """
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be > 0, got {rtol}, {atol}")
    eps = default_eps(sde) if eps is None else float(eps)
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps}")
    device = resolve_device(device, generator, x_init)
    shape = tuple(int(s) for s in shape)
    if x_init is not None:
        if tuple(x_init.shape) != shape:
            raise ValueError(f"x_init has shape {tuple(x_init.shape)}, expected {shape}")
        x = x_init.to(device)
    else:
        x = sde.prior_sampling(shape, generator=generator, device=device)
    dtype = x.dtype
    flow = sde.reverse(score_fn, probability_flow=True)

    evaluations = 0
    bar = tqdm(total=sde.T - eps, desc="ODE sampling", disable=not progress, leave=False,
               unit="t", bar_format="{l_bar}{bar}{postfix}")
    last_t = sde.T

    def drift(t: float, state: np.ndarray) -> np.ndarray:
        nonlocal evaluations, last_t
        evaluations += 1
        if t < last_t:
            bar.update(last_t - t)
            last_t = t
        bar.set_postfix_str(f"t={t:.4f} nfe={evaluations}", refresh=False)
        x_t = torch.from_numpy(state).to(device=device, dtype=dtype).reshape(shape)
        t_vec = torch.full((shape[0],), t, device=device, dtype=dtype)
        return flow.sde(x_t, t_vec)[0].detach().flatten().cpu().double().numpy()

    start = time.perf_counter()
    with torch.no_grad():
        solution = solve_ivp(
            drift,
            (sde.T, eps),
            x.detach().flatten().cpu().double().numpy(),
            rtol=rtol,
            atol=atol,
            method=method,
        )
        bar.close()
        if not solution.success:
            raise RuntimeError(f"probability-flow ODE integration failed: {solution.message}")
        x = torch.from_numpy(solution.y[:, -1]).to(device=device, dtype=dtype).reshape(shape)
        if denoise:
            t_eps = torch.full((shape[0],), eps, device=device, dtype=dtype)
            evaluations += 1
            x = sde.tweedie(x, t_eps, score_fn(x, t_eps))
    return SampleResult(samples=x, nfe=evaluations, seconds=time.perf_counter() - start)
