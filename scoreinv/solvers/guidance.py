"""Gradient guidance through the Tweedie estimate (diffusion posterior sampling).

The score Bayes rule ∇ log p_t(x | y) = ∇ log p_t(x) + ∇ log p_t(y | x) needs the
likelihood score of the *noisy* state, which is intractable. Diffusion posterior
sampling (Chung et al., 2023) replaces p_t(y | x_t) by p(y | x̂₀(x_t)), with the
Tweedie estimate x̂₀(x) = (x + std(t)² s_θ(x, t)) / m(t), and a Gaussian
measurement model whose variance is the larger of the measurement noise σ_y² and the
current mean squared residual,

    ∇ₓ log p_t(y | x) ≈ −ζ ∇ₓ ‖y − A x̂₀(x)‖² / (2 s²),   s² = max(σ_y², ‖y − A x̂₀‖² / M),

M the number of measurements. Early in the reverse process x̂₀ is poor, the residual is
large and the plug-in variance keeps the guidance from overwhelming the prior (the
usual failure of a fixed small σ_y); as the residual falls to the noise level, s → σ_y.
ζ > 0 scales the guidance. The gradient flows through the score model and the operator by
autograd, so any differentiable A works, including operators outside the
subsampled-transform family.

A trained network's Tweedie estimate is not the exact, nearly constant one of the theory at
large noise: its Jacobian ∂x̂₀/∂x = I + std² ∂s/∂x multiplies the network's errors by std²,
and the guidance term came out 36× the prior score at t = T on the bundled CT prior, which
the predictor's g² dt (≈ 660 there) turned into a jump the sampler never recovered from
(5 dB). ``max_ratio`` ρ caps the guidance per item at ρ times the prior score's norm,
‖ζ ∇‖ ≤ ρ ‖s‖, a trust region that leaves well-behaved steps alone: with ρ = 10 (the default
of :func:`scoreinv.posterior`) the bundled prior reached 26.1 dB, SSIM 0.90, on 8 noisy
held-out phantoms, and the exact-score closed form kept its uncapped accuracy
(docs/reconstruct.md).
"""

from __future__ import annotations

import torch

from scoreinv.operators import LinearOperator
from scoreinv.sde import SDE, ScoreFn


class GuidedScore:
    """s(x, t) + the DPS likelihood score; a score callable for the PC sampler.

    Parameters
    ----------
    score_fn, sde:
        The prior's score and SDE.
    operator:
        A differentiable operator A (a :class:`LinearOperator` or any callable).
    y:
        Measurements (B, *out_shape) on the sampling device.
    measurement_std:
        σ_y ≥ 0 of the Gaussian measurement model (0 for noiseless data).
    scale:
        ζ, the guidance scale.
    max_ratio:
        ρ > 0: the guidance term is scaled down per item where its norm exceeds ρ times
        the prior score's; ``None`` leaves it uncapped (the literal DPS step).
    """

    def __init__(
        self,
        score_fn: ScoreFn,
        sde: SDE,
        operator: LinearOperator,
        y: torch.Tensor,
        measurement_std: float,
        scale: float = 1.0,
        max_ratio: float | None = None,
    ) -> None:
        if not measurement_std >= 0:
            raise ValueError(f"the measurement std σ_y must be >= 0, got {measurement_std}")
        if not scale >= 0:
            raise ValueError(f"the guidance scale ζ must be >= 0, got {scale}")
        self.score_fn = score_fn
        self.sde = sde
        self.operator = operator
        self.y = y
        self.measurement_std = float(measurement_std)
        self.scale = float(scale)
        if max_ratio is not None and not max_ratio > 0:
            raise ValueError(f"the guidance cap ρ (max_ratio) must be > 0 or None, got {max_ratio}")
        self.max_ratio = None if max_ratio is None else float(max_ratio)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            score = self.score_fn(x, t)
            denoised = self.sde.tweedie(x, t, score)
            residual = (self.y - self.operator(denoised)).flatten(1)
            squared = residual.pow(2).sum(dim=1)
            variance = (squared.detach() / residual.shape[1]).clamp_min(self.measurement_std**2)
            variance = variance.clamp_min(torch.finfo(variance.dtype).tiny)
            (gradient,) = torch.autograd.grad((squared / (2 * variance)).sum(), x)
        score = score.detach()
        guidance = self.scale * gradient
        if self.max_ratio is not None:
            allowed = self.max_ratio * score.flatten(1).norm(dim=1)
            actual = guidance.flatten(1).norm(dim=1).clamp_min(torch.finfo(guidance.dtype).tiny)
            guidance = guidance * (allowed / actual).clamp(max=1.0).view(-1, *([1] * (guidance.dim() - 1)))
        return score - guidance
