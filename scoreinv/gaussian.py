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


class GaussianClasses:
    """K classes with Gaussian class-conditionals N(μ_c, Σ) (one shared Σ) and class weights π_c.

    Every quantity of class-conditional generation is then exact under the SDE: the mixture's
    score (``classes(x, t)``), the time-dependent classifier

        log p_t(c | x) = log π_c + log N(x; m(t) μ_c, Σ_t) − log Σ_k π_k N(x; m(t) μ_k, Σ_t),

    with Σ_t = m(t)² Σ + std(t)² I (``logits``: the quadratic term in x is common to all classes
    and cancels in the softmax, leaving functions linear in x), and the class-conditional score,
    that of :class:`GaussianPrior` ``class_prior(c)``. Bayes' rule ties them:
    ∇ log p_t(x | c) = ∇ log p_t(x) + ∇ log p_t(c | x).

    Parameters
    ----------
    sde:
        The forward SDE.
    means:
        (K, *item_shape) class means, K ≥ 2.
    covariance:
        The shared covariance, as :class:`GaussianPrior` takes it (variances or a (D, D) matrix).
    weights:
        (K,) class probabilities π (default uniform).
    """

    def __init__(self, sde: SDE, means: torch.Tensor, covariance: torch.Tensor,
                 weights: torch.Tensor | None = None) -> None:
        if means.dim() < 2 or means.shape[0] < 2:
            raise ValueError(f"means must have shape (K, *item_shape) with K >= 2, got {tuple(means.shape)}")
        count = means.shape[0]
        weights = torch.full((count,), 1.0 / count, dtype=torch.float64) if weights is None else \
            weights.detach().to(torch.float64)
        if weights.shape != (count,) or (weights <= 0).any() or abs(float(weights.sum()) - 1) > 1e-9:
            raise ValueError(f"weights must be {count} positive numbers summing to 1, got {weights.tolist()}")
        self.sde = sde
        self.weights = weights
        self.classes = [GaussianPrior(sde, mean, covariance) for mean in means]
        self.item_shape = self.classes[0].item_shape
        self.channels, self.image_size = self.classes[0].channels, self.classes[0].image_size

    def class_prior(self, label: int) -> GaussianPrior:
        """The exact class-conditional prior N(μ_c, Σ)."""
        return self.classes[label]

    def logits(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log π_c + log N(x; m μ_c, Σ_t), shape (B, K): log_softmax of it is log p_t(c | x)."""
        return torch.stack([prior.log_prob(x, t) for prior in self.classes], dim=1) + self.weights.to(x).log()

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The mixture's score Σ_c p_t(c | x) ∇ log N(x; m μ_c, Σ_t), shape of x."""
        posterior = torch.softmax(self.logits(x, t), dim=1)
        scores = torch.stack([prior(x, t) for prior in self.classes], dim=1)
        return (posterior.view(*posterior.shape, *([1] * (x.dim() - 1))) * scores).sum(dim=1)

    score = __call__

    def sample(self, n: int, label: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """n draws of class ``label``: x_0 ~ N(μ_c, Σ)."""
        return self.classes[label].sample(n, generator, dtype)
