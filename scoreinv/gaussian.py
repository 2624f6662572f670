"""Gaussian data: the one prior whose diffused score and density are known exactly.

If the data are x_0 ~ N(μ, Σ) and the SDE kernel is N(m(t) x_0, std(t)² I), then
every marginal is Gaussian,

    p_t = N(m(t) μ, Σ_t),   Σ_t = m(t)² Σ + std(t)² I,

with score ∇ log p_t(x) = −Σ_t⁻¹ (x − m(t) μ). With the eigendecomposition
Σ = U diag(λ) Uᵀ, Σ_t⁻¹ = U diag(1 / (m² λ + std²)) Uᵀ, so score and log-density
cost two matrix products. :class:`GaussianPrior` is a *prior* in the package's
sense (a score callable carrying its ``sde``), so it drives every sampler, the
likelihood and the inverse-problem solvers exactly as a trained network does,
and their outputs can be checked against closed forms.
"""

from __future__ import annotations

import math

import torch

from scoreinv.sde import SDE


class GaussianPrior:
    """The exact diffused score of N(mean, covariance) data under ``sde``.

    Parameters
    ----------
    sde:
        The forward SDE.
    mean:
        Data mean, shape ``(C, H, W)`` (any item shape works).
    covariance:
        Either per-pixel variances of the same shape as ``mean`` (a diagonal
        covariance), or a full symmetric positive semi-definite matrix of shape
        ``(D, D)`` with D = mean.numel(), in the flattened C-order of the item.
    """

    def __init__(self, sde: SDE, mean: torch.Tensor, covariance: torch.Tensor) -> None:
        self.sde = sde
        self.mean = mean.detach().to(torch.float64)
        self.item_shape = tuple(mean.shape)
        dims = mean.numel()
        cov = covariance.detach().to(torch.float64)
        if cov.shape == mean.shape:
            if (cov < 0).any():
                raise ValueError("diagonal covariance (variances) must be non-negative")
            self.eigenvalues = cov.flatten()
            self.eigenvectors = None
        elif cov.shape == (dims, dims):
            if not torch.allclose(cov, cov.T, atol=1e-10 * max(1.0, cov.abs().max().item())):
                raise ValueError("covariance matrix must be symmetric")
            eigenvalues, eigenvectors = torch.linalg.eigh(cov)
            if eigenvalues.min() < -1e-8 * max(1.0, eigenvalues.max().item()):
                raise ValueError(f"covariance must be positive semi-definite, min eigenvalue {eigenvalues.min():.3g}")
            self.eigenvalues = eigenvalues.clamp_min(0)
            self.eigenvectors = eigenvectors
        else:
            raise ValueError(
                f"covariance must have the item shape {self.item_shape} (variances) or "
                f"({dims}, {dims}) (full matrix), got {tuple(cov.shape)}"
            )
        self.channels = self.item_shape[0] if len(self.item_shape) == 3 else None
        self.image_size = self.item_shape[-1] if len(self.item_shape) == 3 else None

    @property
    def dims(self) -> int:
        return self.mean.numel()

    def covariance(self) -> torch.Tensor:
        """The data covariance Σ as a (D, D) float64 matrix."""
        if self.eigenvectors is None:
            return torch.diag(self.eigenvalues)
        return self.eigenvectors @ torch.diag(self.eigenvalues) @ self.eigenvectors.T

    def _to_eigenbasis(self, flat: torch.Tensor) -> torch.Tensor:
        return flat if self.eigenvectors is None else flat @ self.eigenvectors.to(flat)

    def _from_eigenbasis(self, coords: torch.Tensor) -> torch.Tensor:
        return coords if self.eigenvectors is None else coords @ self.eigenvectors.to(coords).T

    def _marginal(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred coordinates (x − m μ) in the eigenbasis and the variances m² λ + std², both (B, D)."""
        if tuple(x.shape[1:]) != self.item_shape:
            raise ValueError(f"expected items of shape {self.item_shape}, got {tuple(x.shape[1:])}")
        m = self.sde.mean_coefficient(t).to(x.dtype)[:, None]
        std = self.sde.marginal_std(t).to(x.dtype)[:, None]
        centred = x.flatten(1) - m * self.mean.to(x).flatten()[None]
        variances = m**2 * self.eigenvalues.to(x)[None] + std**2
        return self._to_eigenbasis(centred), variances

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """∇ₓ log p_t(x) = −Σ_t⁻¹ (x − m(t) μ), shape of x."""
        coords, variances = self._marginal(x, t)
        return -self._from_eigenbasis(coords / variances).reshape(x.shape)

    score = __call__

    def log_prob(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p_t(x) in nats per item, shape (B,)."""
        coords, variances = self._marginal(x, t)
        quadratic = (coords**2 / variances).sum(dim=1)
        return -0.5 * (quadratic + torch.log(variances).sum(dim=1) + self.dims * math.log(2 * math.pi))

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """n draws of the data x_0 ~ N(μ, Σ), shape (n, *item_shape)."""
        device = generator.device if generator is not None else None
        z = torch.randn(n, self.dims, generator=generator, dtype=torch.float64, device=device)
        coords = z * self.eigenvalues.to(z).sqrt()[None]
        x = self._from_eigenbasis(coords) + self.mean.to(z).flatten()[None]
        return x.reshape(n, *self.item_shape).to(dtype)
