"""Closed-form posteriors of Gaussian priors under linear operators (shared by the benchmarks
and docs/figures/posterior_uncertainty.py).

Prior x ~ N(0, Σ) on a (C, H, W) grid, Σ = C_channels ⊗ K_space + nugget·I with a
squared-exponential spatial kernel K (the construction of tests/test_posterior_closed_form.py,
VE SDE (0.01, 20)). Measurement y = A x + n, n ~ N(0, σ_y² I); the posterior is Gaussian:

    mean = Σ Aᵀ (A Σ Aᵀ + σ_y² I)⁺ y,    cov = Σ − Σ Aᵀ (A Σ Aᵀ + σ_y² I)⁺ A Σ

(a pseudo-inverse because sparse-view CT matrices are rank deficient).

Errors of a sampler's posterior summary (S samples), as in the tests:

* mean error: ‖m̂ − m‖ / ‖m‖ over all pixels;
* std error: mean over the *unknown* pixels of |ŝ − s| / s, where pixels whose true std is
  below 1% of the largest are "determined by the data" and left out (measured pixels in
  inpainting, corner pixels crossed by a single ray in CT);
* std ratio: mean over the same pixels of ŝ / s (< 1: samples too narrow).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scoreinv.gaussian import GaussianPrior
from scoreinv.operators import LinearOperator
from scoreinv.sde import VESDE


def correlated_prior(side: int, length_scale: float, channels: int = 1,
                     channel_correlation: float = 0.0) -> GaussianPrior:
    """Zero-mean N(0, Σ), Σ = 0.25·R ⊗ K + 0.01·I on channels × side × side.

    K_ij = exp(−|p_i − p_j|² / (2 ℓ²)) over the pixel positions; R the channel correlation
    matrix with R_ij = ρ^|i−j| (ρ = ``channel_correlation``; R = [[1]] for one channel).
    """
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    points = torch.stack([rows.flatten(), cols.flatten()], dim=1).double()
    spatial = torch.exp(-torch.cdist(points, points).pow(2) / (2 * length_scale**2))
    index = torch.arange(channels, dtype=torch.float64)
    between = torch.tensor(float(channel_correlation), dtype=torch.float64) ** (index[:, None] - index[None]).abs()
    dims = channels * side * side
    covariance = 0.25 * torch.kron(between, spatial) + 0.01 * torch.eye(dims, dtype=torch.float64)
    mean = torch.zeros(channels, side, side, dtype=torch.float64)
    return GaussianPrior(VESDE(0.01, 20.0), mean, covariance)


def dense_matrix(operator: LinearOperator) -> torch.Tensor:
    """A as a (M, D) float64 matrix, column j = A applied to the j-th unit image."""
    dims = int(torch.tensor(operator.in_shape).prod())
    basis = torch.eye(dims, dtype=torch.float64).reshape(dims, *operator.in_shape)
    columns = torch.cat([operator(chunk.float()).double().reshape(chunk.shape[0], -1)
                         for chunk in basis.split(256)])
    return columns.T.contiguous()


@dataclass
class GaussianPosterior:
    """Analytic posterior: per-item means (B, D), the shared covariance (D, D) and its std (D,)."""

    mean: torch.Tensor
    covariance: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return self.covariance.diagonal().clamp_min(0).sqrt()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n exact posterior draws per item: (B, n, D) float64."""
        eigenvalues, eigenvectors = torch.linalg.eigh(self.covariance)
        root = eigenvectors * eigenvalues.clamp_min(0).sqrt()[None]
        z = torch.randn(self.mean.shape[0], n, self.mean.shape[1], generator=generator, dtype=torch.float64)
        return self.mean[:, None] + z @ root.T


def analytic_posterior(prior: GaussianPrior, matrix: torch.Tensor, y: torch.Tensor,
                       noise_std: float) -> GaussianPosterior:
    """The Gaussian posterior for measurements y of shape (B, *out_shape)."""
    sigma = prior.covariance()
    gram = matrix @ sigma @ matrix.T + noise_std**2 * torch.eye(matrix.shape[0], dtype=torch.float64)
    gain = sigma @ matrix.T @ torch.linalg.pinv(gram, hermitian=True, rtol=1e-10)
    prior_mean = prior.mean.flatten()
    mean = prior_mean[None] + (y.double().flatten(1) - (matrix @ prior_mean)[None]) @ gain.T
    covariance = sigma - gain @ matrix @ sigma
    return GaussianPosterior(mean=mean, covariance=0.5 * (covariance + covariance.T))


@dataclass
class Errors:
    mean: float
    std: float
    ratio: float


def posterior_errors(sample_mean: torch.Tensor, sample_std: torch.Tensor, truth: GaussianPosterior,
                     unknown: torch.Tensor | None = None) -> Errors:
    """Errors of sample means / stds of shape (B, D) against the analytic posterior, averaged over items."""
    std = truth.std
    keep = std >= 0.01 * std.max()
    if unknown is not None:
        keep = keep & unknown.flatten()
    mean_errors = (sample_mean.double() - truth.mean).norm(dim=1) / truth.mean.norm(dim=1)
    ratios = sample_std.double()[:, keep] / std[keep][None]
    return Errors(mean=mean_errors.mean().item(), std=(ratios - 1).abs().mean().item(),
                  ratio=ratios.mean().item())


def exact_floor(truth: GaussianPosterior, samples: int, seed: int = 0,
                unknown: torch.Tensor | None = None) -> Errors:
    """The errors of ``samples`` exact posterior draws: the Monte Carlo floor of any sampler."""
    draws = truth.sample(samples, torch.Generator().manual_seed(seed))
    return posterior_errors(draws.mean(dim=1), draws.std(dim=1), truth, unknown)
