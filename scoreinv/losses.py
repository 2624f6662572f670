"""Denoising score matching (Vincent 2011; Song et al., ICLR 2021, eq. 7).

For a forward SDE with Gaussian kernel p_0t(x_t | x_0) = N(m(t) x_0, std(t)² I), the
kernel's score is known in closed form,

    ∇ log p_0t(x_t | x_0) = −(x_t − m(t) x_0) / std(t)² = −z / std(t),
    x_t = m(t) x_0 + std(t) z,   z ~ N(0, I),

and minimising

    L(θ) = E_t E_{x_0} E_z  λ(t) · (1/D) ‖s_θ(x_t, t) + z / std(t)‖²,   t ~ U(eps, T),

over θ gives s_θ(·, t) = ∇ log p_t for almost every t: the conditional target differs
from the marginal score by a term that does not depend on θ. D is the number of pixels
(C·H·W); the per-pixel mean keeps the loss's scale independent of the image size.

Weightings λ(t):

* ``"std2"``: λ = std(t)² (the default). Then λ ‖s + z/std‖² = ‖std·s + z‖², the loss of
  predicting the noise: every t contributes on the same scale.
* ``"likelihood"``: λ = g(t)², the diffusion coefficient squared; with this weighting the
  loss bounds the negative log-likelihood (Song, Durkan, Murray & Ermon 2021).
* ``"edm"``: Karras et al. (2022)'s λ(σ) = (σ² + σ_d²)/(σ σ_d)² on the denoiser's error
  ‖D − x_0‖², σ = std(t)/m(t) and D the Tweedie estimate. Since std·s + z = (D − x_0)/σ, this is
  the std² loss above times (σ² + σ_d²)/σ_d²: unit-scale errors of the preconditioned network at
  every σ.

Noise levels: t ~ U(eps, T) (``"uniform"``), or Karras et al.'s log-normal ln σ ~ N(P_mean,
P_std²) mapped to t by :meth:`scoreinv.sde.SDE.time_at_noise_level` and clamped to [eps, T]
(``"lognormal"``), which spends the training on the middle noise levels where the denoiser has
the most to learn.
"""

from __future__ import annotations

from typing import Literal

import torch

from scoreinv.sde import SDE, ScoreFn, expand_to

Weighting = Literal["std2", "likelihood", "edm"]
WEIGHTINGS: tuple[str, ...] = ("std2", "likelihood", "edm")
NOISE_SAMPLINGS: tuple[str, ...] = ("uniform", "lognormal")


def _draw(
    kind: Literal["rand", "randn"],
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    like: torch.Tensor,
) -> torch.Tensor:
    """A uniform or normal draw of ``shape`` on ``like``'s device and dtype.

    With a generator the draw happens on the generator's device and is then moved, so a
    CPU generator can drive a CUDA computation reproducibly.
    """
    draw = torch.rand if kind == "rand" else torch.randn
    if generator is None:
        return draw(shape, device=like.device, dtype=like.dtype)
    values = draw(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return values.to(like.device)


def dsm_draws(
    sde: SDE,
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    like: torch.Tensor,
    eps: float = 1e-5,
    noise_sampling: str = "uniform",
    lognormal: tuple[float, float] = (-1.2, 1.2),
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random draws of :func:`dsm_loss` for a batch of ``shape`` (B, ...): t, then z.

    t has shape (B,): t ~ U(eps, T) (``noise_sampling="uniform"``) or the time of the noise
    level σ with ln σ ~ N(lognormal[0], lognormal[1]²), clamped to [eps, T] (``"lognormal"``);
    z ~ N(0, I) has ``shape``; both on ``like``'s device and dtype. Row b of both depends only
    on the generator's state and ``shape``, so rows ``i:j`` of a draw for the whole batch are
    what one slice of that batch should use.
    """
    if noise_sampling == "uniform":
        t = eps + (sde.T - eps) * _draw("rand", (shape[0],), generator, like)
    elif noise_sampling == "lognormal":
        log_sigma = lognormal[0] + lognormal[1] * _draw("randn", (shape[0],), generator, like)
        t = sde.time_at_noise_level(log_sigma.double().exp()).clamp(eps, sde.T).to(like.dtype)
    else:
        raise ValueError(f"noise_sampling must be one of {NOISE_SAMPLINGS}, got {noise_sampling!r}")
    z = _draw("randn", tuple(shape), generator, like)
    return t, z


def dsm_loss(
    score_fn: ScoreFn,
    sde: SDE,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    weighting: Weighting = "std2",
    eps: float = 1e-5,
    draws: tuple[torch.Tensor, torch.Tensor] | None = None,
    sigma_data: float = 0.5,
) -> torch.Tensor:
    """Monte-Carlo denoising score-matching loss on one batch, a scalar tensor.

    Parameters
    ----------
    score_fn:
        s(x, t) -> tensor like x, with x (B, ...) and t (B,).
    sde:
        The forward SDE: ``mean_coefficient``, ``marginal_std`` and ``sde`` (for g).
    x0:
        A batch of clean data, (B, C, H, W) (any (B, ...) works), floating.
    generator:
        Source of every random draw: t ~ U(eps, T) (shape (B,)) first, then
        z ~ N(0, I) (shape of x0). ``None`` uses the global RNG.
    weighting:
        ``"std2"`` (λ = std(t)²), ``"likelihood"`` (λ = g(t)²) or ``"edm"`` (see above).
    eps:
        Smallest time drawn, 0 < eps < T; std(t) vanishes (VP) or is tiny (VE) at t = 0.
    draws:
        ``(t, z)`` drawn beforehand (see :func:`dsm_draws`), t (B,) and z like x0; then
        ``generator`` is not used. Distributed training draws them for the global batch and
        gives each process its rows.
    sigma_data:
        σ_d of the ``"edm"`` weighting (the data's standard deviation).

    Returns
    -------
    torch.Tensor
        (1/B) Σ_b λ(t_b) · mean over pixels of (s(x_t, t)_b + z_b / std(t_b))², shape ().
        The mean over the batch (not the sum): equal shards of one batch, each averaged,
        average to the loss of the whole batch.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must satisfy 0 < eps < T = {sde.T}, got {eps}")
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.dim() < 2:
        raise ValueError(f"x0 must be a floating tensor of shape (B, ...), got {getattr(x0, 'shape', type(x0))}")

    if draws is None:
        t, z = dsm_draws(sde, tuple(x0.shape), generator, x0, eps)
    else:
        t, z = draws
        if t.shape != x0.shape[:1] or z.shape != x0.shape:
            raise ValueError(
                f"draws must be t of shape {tuple(x0.shape[:1])} and z of shape {tuple(x0.shape)}, "
                f"got {tuple(t.shape)} and {tuple(z.shape)}"
            )
    mean, std = sde.marginal_prob(x0, t)
    std_b = expand_to(std, x0)
    x_t = mean + std_b * z

    score = score_fn(x_t, t)
    if score.shape != x0.shape:
        raise ValueError(f"score_fn returned shape {tuple(score.shape)}, expected {tuple(x0.shape)}")

    # std · (s + z/std) = std·s + z: the residual of the rescaled score, O(1) at every t and
    # free of the 1/std blow-up near t = 0.
    residual = std_b * score + z
    per_item = residual.pow(2).flatten(1).mean(dim=1)  # λ/std² · mean (s − target)² with λ = std²
    if weighting == "likelihood":
        _, diffusion = sde.sde(x_t, t)
        per_item = per_item * diffusion**2 / std**2
    elif weighting == "edm":
        sigma = sde.noise_level(t).to(per_item.dtype)
        per_item = per_item * (sigma**2 + sigma_data**2) / sigma_data**2
    return per_item.mean()
