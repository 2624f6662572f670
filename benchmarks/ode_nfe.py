"""Probability-flow ODE: function evaluations and accuracy against the solver tolerance.

Data: the correlated Gaussian of tests/test_likelihood.py (D = 16, item 1×4×4,
Σ = F Fᵀ / 16 + 0.05 I with F a seeded standard normal matrix, mean linspace(−0.5, 0.5)),
driven by its exact score (:class:`scoreinv.gaussian.GaussianPrior`). For each SDE
and rtol = atol:

ODE sampler (``ode_sample``, RK45, default ε, ``denoise=False``, float32 as a user gets it):
  * NFE for a batch of ``--samples`` items (one ODE system for the whole batch);
  * endpoint error: RMS over all pixels of x_ε − x_ε*, where x_ε* is the exact
    flow of the same x_T. For Gaussian data the flow is linear and known: in the
    eigenbasis of Σ, (x_t − m(t) μ)_k ∝ √(m(t)² λ_k + std(t)²) along every path;
  * sample moments of x_ε against p_ε = N(m μ, m² Σ + std² I): max_k |mean error| / std_k
    and ‖Ĉ − C‖_F / ‖C‖_F. The "exact flow" row gives the same for x_ε* (the
    statistical floor of that many samples, plus the prior mismatch p_T ≠ N(0, prior_std² I)).

Log-likelihood (``log_likelihood``, exact divergence, ε = 1e-5, 8 data items):
  * NFE (mean over the one solve for the batch);
  * mean over items of |log p − log p_ε*| / D (nats/dim) against the analytic
    ``GaussianPrior.log_prob``, in float32 and in float64;
  * the error after replacing the Gaussian prior N(0, prior_std² I) by the
    true p_T at the latent: the integration error alone (what remains above it is
    the prior mismatch p_T ≠ N(0, prior_std² I)).

Run:  python benchmarks/ode_nfe.py [--quick] [--sdes ve,vp,subvp]
"""

from __future__ import annotations

import argparse
import time

import torch
from _machine import limit_threads, machine_line

from scoreinv.gaussian import GaussianPrior
from scoreinv.likelihood import log_likelihood
from scoreinv.sampling import default_eps, ode_sample
from scoreinv.sde import SDE, SubVPSDE, VESDE, VPSDE

SDES = {"ve": lambda: VESDE(0.01, 50.0), "vp": lambda: VPSDE(0.1, 20.0), "subvp": lambda: SubVPSDE(0.1, 20.0)}


def correlated_gaussian(sde: SDE, dims: int = 16, seed: int = 0) -> GaussianPrior:
    generator = torch.Generator().manual_seed(seed)
    factor = torch.randn(dims, dims, generator=generator, dtype=torch.float64)
    covariance = factor @ factor.T / dims + 0.05 * torch.eye(dims, dtype=torch.float64)
    mean = torch.linspace(-0.5, 0.5, dims, dtype=torch.float64).reshape(1, 4, dims // 4)
    return GaussianPrior(sde, mean, covariance)


def exact_flow(prior: GaussianPrior, x_start: torch.Tensor, t_start: float, t_end: float) -> torch.Tensor:
    """The probability-flow ODE solution from t_start to t_end, exactly (float64)."""
    sde = prior.sde
    x = x_start.double().flatten(1)
    t0 = torch.tensor([t_start], dtype=torch.float64)
    t1 = torch.tensor([t_end], dtype=torch.float64)
    m0, m1 = sde.mean_coefficient(t0), sde.mean_coefficient(t1)
    v0 = m0**2 * prior.eigenvalues + sde.marginal_std(t0) ** 2
    v1 = m1**2 * prior.eigenvalues + sde.marginal_std(t1) ** 2
    mu = prior.mean.flatten()[None]
    u = prior._to_eigenbasis(x - m0 * mu) * torch.sqrt(v1 / v0)
    return (prior._from_eigenbasis(u) + m1 * mu).reshape(x_start.shape)


def moment_errors(prior: GaussianPrior, x: torch.Tensor, t: float) -> tuple[float, float]:
    """max_k |mean error| / std_k and relative Frobenius error of the covariance, against p_t."""
    sde = prior.sde
    tt = torch.tensor([t], dtype=torch.float64)
    m, std = sde.mean_coefficient(tt), sde.marginal_std(tt)
    true_mean = m * prior.mean.flatten()
    true_cov = m**2 * prior.covariance() + std**2 * torch.eye(prior.dims, dtype=torch.float64)
    flat = x.double().flatten(1)
    mean_error = ((flat.mean(0) - true_mean).abs() / true_cov.diagonal().sqrt()).max().item()
    cov_error = (torch.linalg.matrix_norm(flat.T.cov() - true_cov) / torch.linalg.matrix_norm(true_cov)).item()
    return mean_error, cov_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tolerances 1e-2..1e-4 only, fewer samples")
    parser.add_argument("--sdes", default="ve,vp", help="comma-separated: ve, vp, subvp")
    parser.add_argument("--samples", type=int, default=None, help="ODE-sampler batch (default 4000, quick 1000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--blas-threads", type=int, default=None, help="BLAS threads (default: --threads)")
    args = parser.parse_args()

    limit_threads(args.threads, args.blas_threads)
    tolerances = [1e-2, 1e-3, 1e-4] if args.quick else [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    n = args.samples or (1000 if args.quick else 4000)
    n_items = 8
    print(machine_line())
    print(f"Data: correlated Gaussian, D = 16; ODE sampler batch {n}; likelihood on {n_items} items, "
          "exact divergence, ε = 1e-5\n")

    sampler_rows, likelihood_rows = [], []
    for key in args.sdes.split(","):
        sde = SDES[key]()
        prior = correlated_gaussian(sde)
        eps = default_eps(sde)
        shape = (n, 1, 4, 4)
        x_T = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(0))
        reference = exact_flow(prior, x_T, sde.T, eps)
        floor_mean, floor_cov = moment_errors(prior, reference, eps)
        sampler_rows.append(f"| {type(sde).__name__} | exact flow (floor) | – | – | 0 | {floor_mean:.3f} "
                            f"| {floor_cov:.3f} |")

        data = prior.sample(n_items, torch.Generator().manual_seed(3))
        t_eps = torch.full((n_items,), 1e-5, dtype=torch.float64)
        analytic = prior.log_prob(data.double(), t_eps)

        for tol in tolerances:
            result = ode_sample(prior, sde, shape, rtol=tol, atol=tol, x_init=x_T, denoise=False,
                                progress=False)
            endpoint = (result.samples.double() - reference).pow(2).mean().sqrt().item()
            mean_err, cov_err = moment_errors(prior, result.samples, eps)
            sampler_rows.append(
                f"| {type(sde).__name__} | {tol:.0e} | {result.nfe} | {result.seconds:.2f} | {endpoint:.1e} "
                f"| {mean_err:.3f} | {cov_err:.3f} |")

            cells = []
            for dtype in (torch.float32, torch.float64):
                start = time.perf_counter()
                lik = log_likelihood(prior, data.to(dtype), exact_divergence=True, eps=1e-5, rtol=tol,
                                     atol=tol, progress=False)
                seconds = time.perf_counter() - start
                error = ((lik.logp - analytic).abs() / prior.dims).mean().item()
                cells += [str(lik.nfe), f"{seconds:.2f}", f"{error:.1e}"]
                true_prior = prior.log_prob(lik.latent.double(), torch.ones(n_items, dtype=torch.float64))
                corrected = lik.logp - lik.prior_logp + true_prior
                cells.append(f"{((corrected - analytic).abs() / prior.dims).mean().item():.1e}")
            likelihood_rows.append(f"| {type(sde).__name__} | {tol:.0e} | " + " | ".join(cells) + " |")
            print(f"  done {type(sde).__name__} {tol:.0e}", flush=True)

    print("\nODE sampler (float32, denoise=False, ε = default: 1e-5 VE, 1e-3 VP):\n")
    print("| SDE | rtol = atol | NFE | seconds | endpoint RMS error | mean err / std (max) | cov err (rel. Frobenius) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(sampler_rows))
    print("\nlog_likelihood (exact divergence), error vs analytic log p_ε, nats/dim (mean over items):\n")
    print("| SDE | rtol = atol | NFE f32 | s f32 | err f32 | err f32, true p_T "
          "| NFE f64 | s f64 | err f64 | err f64, true p_T |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(likelihood_rows))


if __name__ == "__main__":
    main()
