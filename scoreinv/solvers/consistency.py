"""Data consistency inside the PC loop (Song, Shen, Xing & Ermon, ICLR 2022).

The operator is A = Λ T: a full transform T (identity, colour decoupling, full-view
Radon) followed by the subsampling Λ of the measured entries. With the measurement
y = A x_0 (+ noise), a state x_t ~ p_t satisfies A x_t = m(t) A x_0 + std(t) A z, so the
measurement noised to time t is

    ŷ_t = m(t) y + std(t) A z,        z ~ N(0, I) in image space.

After every predictor and corrector update the state is pulled toward ŷ_t in the
T domain, in the *residual* form

    x ← x + T⁻¹ [ λ Λᵀ (ŷ_t − Λ T x) ],        λ ∈ [0, 1],

which equals the paper's T⁻¹[λ Λ ŷ_t + (1 − λ) Λ T x + (I − Λ) T x] when T⁻¹ is exact
(inpainting, colorization) and, with an approximate T⁻¹ (FBP), does not compound
its error into the unmeasured part at every step (0.58 vs 0.11 relative error of the
posterior mean on a Gaussian prior, docs/reconstruct.md). λ = 1 with an exact T⁻¹ is hard replacement
(score_sde's inpainting and colorization samplers).

With noisy measurements y = A x_0 + n, n ~ N(0, σ_y² I), the target ŷ_t carries the noise
m(t) n on top of what A x_t carries; once std(t) falls to the noise level a full step
copies that noise into the image. ``noise_weight`` κ > 0 makes the step noise-aware, with
the scalar gain of a Kalman update in measurement space,

    λ(t) = λ · std(t)² c / (std(t)² c + κ² m(t)² σ_y²),     c = E‖A z‖² / M (z ~ N(0, I)),

c the mean squared norm of A's non-zero rows (estimated once with fixed probes): λ(t) ≈ λ while the
diffusion noise dominates and falls toward 0 when the measurement noise does, leaving the
prior in charge there. κ = 1 is the literal gain; smaller κ trusts the data more.

After the final denoising step, ``finish`` projects onto the measurements:
x ← x + d with d = argmin ‖A d − (y − A x)‖² + δ ‖d‖², by conjugate gradients on
(AᵀA + δ I) d = Aᵀ (y − A x) (δ = 0: an exact projection onto {A x = y}; δ > 0 for
noisy data keeps the prior where the data are unreliable). With an exact T⁻¹ the
λ = 1 replacement is that projection already, and it is used instead.
"""

from __future__ import annotations

import torch

from scoreinv.operators import SubsampledTransformOp, least_squares
from scoreinv.sampling.pc import Conditioning
from scoreinv.sde import SDE, expand_to
from scoreinv.seeding import standard_normal


class MeasurementConsistency(Conditioning):
    """λ-consistency steps for an operator A = Λ T and measurements y.

    Parameters
    ----------
    sde:
        The prior's SDE (for m(t) and std(t)).
    operator:
        A :class:`SubsampledTransformOp` (``transform``, ``inverse_transform``,
        ``subsample``, ``embed``).
    y:
        Measurements, shape (B, *operator.out_shape), on the sampling device.
    weight:
        λ ∈ [0, 1], the weight of the measurement in each step.
    final_iterations:
        Conjugate-gradient iterations of the final projection; 0 uses the exact
        replacement x + T⁻¹ Λᵀ (y − A x) (right when T⁻¹ is exact).
    final_damping:
        δ ≥ 0 of the final projection (0: hard; > 0: noise-aware least squares).
    noise_weight:
        κ ≥ 0 of the noise-aware gain above (0: the plain λ step; needs σ_y =
        ``operator.noise_std`` > 0 to have an effect).
    step_filter, final_filter:
        FBP window of T⁻¹ in the consistency steps and in the final replacement
        (``final_iterations`` = 0), applied as ``operator.with_options(fbp_filter=...)``
        (operators whose T⁻¹ is an FBP, such as :class:`RadonOp`; others refuse one with a
        ValueError); ``None`` keeps the operator's own window (ram-lak by default).
        A smoother window passes less of the measurement noise back into the image
        (docs/reconstruct.md, noisy CT).
    """

    def __init__(
        self,
        sde: SDE,
        operator: SubsampledTransformOp,
        y: torch.Tensor,
        weight: float = 1.0,
        final_iterations: int = 0,
        final_damping: float = 0.0,
        step_filter: str | None = None,
        final_filter: str | None = None,
        noise_weight: float = 0.0,
    ) -> None:
        if not isinstance(operator, SubsampledTransformOp):
            raise ValueError(
                f"measurement consistency needs a subsampled-transform operator (A = Λ T with "
                f"transform / inverse_transform / mask), got {type(operator).__name__}; use method='guidance'"
            )
        if "full-transform" not in operator.capabilities:
            raise ValueError(f"measurement consistency needs the full transform T of A = Λ T, which this "
                             f"{operator.name} lacks: {getattr(operator, 'capability_note', '') or 'no full transform'}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the consistency weight λ must lie in [0, 1], got {weight}")
        if final_iterations < 0 or final_damping < 0:
            raise ValueError("final_iterations and final_damping must be >= 0")
        self.sde = sde
        self.operator = operator
        self.y = y
        self.weight = float(weight)
        self.final_iterations = int(final_iterations)
        self.final_damping = float(final_damping)
        self.step_filter = step_filter
        self.final_filter = final_filter
        if not noise_weight >= 0:
            raise ValueError(f"noise_weight κ must be >= 0, got {noise_weight}")
        self.noise_variance = (float(noise_weight) * operator.noise_std) ** 2
        self.row_norm = _mean_squared_row_norm(operator, y) if self.noise_variance > 0 else 0.0
        # T⁻¹ of the steps and of the final replacement: refused now, not at the first step
        self.step_inverse = _with_window(operator, step_filter, "step_filter")
        self.final_inverse = _with_window(operator, final_filter, "final_filter")

    def _step_toward(self, x: torch.Tensor, target: torch.Tensor, weight: float | torch.Tensor,
                     inverse: SubsampledTransformOp) -> torch.Tensor:
        """x + T⁻¹[weight · Λᵀ(target − Λ T x)] with ``inverse``'s T⁻¹; ``weight`` a number or
        per item, broadcastable."""
        residual = target - self.operator(x)  # = Λ T x, without projecting the unmeasured views
        return x + inverse.inverse_transform_measured(weight * residual)

    def project(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.weight == 0.0:
            return x
        noise = standard_normal(x, generator)
        mean = expand_to(self.sde.mean_coefficient(t), self.y)
        std = expand_to(self.sde.marginal_std(t), self.y)
        noisy_measurement = mean * self.y + std * self.operator(noise)
        weight: float | torch.Tensor = self.weight
        if self.noise_variance > 0:
            signal = std**2 * self.row_norm
            weight = self.weight * signal / (signal + mean**2 * self.noise_variance)
        return self._step_toward(x, noisy_measurement, weight, self.step_inverse)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        if self.final_iterations == 0:
            return self._step_toward(x, self.y, 1.0, self.final_inverse)
        correction = least_squares(
            self.operator, self.y - self.operator(x), iterations=self.final_iterations,
            damping=self.final_damping,
        )
        return x + correction


def _with_window(operator: SubsampledTransformOp, window: str | None, setting: str) -> SubsampledTransformOp:
    """The operator with its FBP window set to ``window`` (itself when None)."""
    if window is None:
        return operator
    try:
        return operator.with_options(fbp_filter=window)
    except ValueError as error:
        raise ValueError(f"{setting}={window!r} sets an FBP window, which {operator.name} cannot use: "
                         f"{error}") from error


def _mean_squared_row_norm(operator: SubsampledTransformOp, y: torch.Tensor) -> float:
    """c = E‖A z‖² / M for z ~ N(0, I): the mean squared norm of A's non-zero rows (8 fixed probes)."""
    probe_generator = torch.Generator().manual_seed(0)  # fixed: never draws from the sampler's generator
    probes = torch.randn((8, *operator.in_shape), generator=probe_generator, dtype=y.dtype).to(y.device)
    responses = operator(probes)
    # Rows that are identically zero (a mask's unmeasured pixels, detector cells that miss
    # the image) carry no signal and no noise: average over the others.
    live = responses.ne(0).any(dim=0)
    return float(responses.pow(2).sum() / (live.sum() * responses.shape[0]).clamp_min(1))
