"""Conditional sampling for inverse problems y = A x + n: one PC loop, pluggable conditioning.

Three methods, all run by :func:`scoreinv.sampling.pc_sample`:

* ``"consistency"``: measurement-consistent PC (Song et al. 2022), λ-consistency steps in
  the T domain after every predictor and corrector update, then a least-squares final
  projection (:class:`MeasurementConsistency` with ``final_iterations > 0``);
* ``"replacement"``: λ = 1 hard replacement with the exact T⁻¹ (score_sde's inpainting and
  colorization samplers), same class with ``final_iterations = 0``;
* ``"guidance"``: diffusion posterior sampling, the score replaced by
  :class:`GuidedScore` (any differentiable operator).
"""

from __future__ import annotations

from typing import Literal

import torch

from scoreinv.operators import LinearOperator
from scoreinv.sampling.pc import Conditioning, SampleResult, pc_sample
from scoreinv.sde import SDE, ScoreFn
from scoreinv.solvers.consistency import MeasurementConsistency
from scoreinv.solvers.guidance import GuidedScore

Method = Literal["consistency", "replacement", "guidance"]
METHODS: tuple[str, ...] = ("consistency", "replacement", "guidance")


def conditional_sample(
    score_fn: ScoreFn,
    sde: SDE,
    operator: LinearOperator,
    y: torch.Tensor,
    *,
    method: Method = "consistency",
    steps: int = 500,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    corrector_steps: int = 1,
    weight: float = 1.0,
    final_iterations: int = 20,
    final_damping: float = 0.0,
    step_filter: str | None = None,
    final_filter: str | None = None,
    noise_weight: float = 0.0,
    guidance_scale: float = 1.0,
    guidance_max_ratio: float | None = None,
    measurement_std: float | None = None,
    eps: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> SampleResult:
    """Draw one posterior sample per measurement: x ~ p(x | y) approximately.

    Parameters
    ----------
    score_fn, sde:
        The prior's score and SDE.
    operator:
        The forward operator; ``consistency`` and ``replacement`` need a
        :class:`~scoreinv.operators.SubsampledTransformOp`.
    y:
        Measurements (B, *operator.out_shape), finite, on the sampling device.
    method:
        ``"consistency"``, ``"replacement"`` or ``"guidance"`` (see the module docstring).
    steps, predictor, corrector, snr, corrector_steps, eps:
        As in :func:`scoreinv.sampling.pc_sample`.
    weight:
        λ of the consistency steps (``consistency`` only; ``replacement`` uses 1).
    final_iterations, final_damping:
        Conjugate-gradient iterations and damping δ of the final projection
        (``consistency`` only).
    step_filter, final_filter:
        FBP window of the consistency steps and of the final replacement (``consistency`` and
        ``replacement`` with a :class:`~scoreinv.operators.RadonOp`; other operators refuse
        one; ignored by ``guidance``; ``None``: ram-lak).
    noise_weight:
        κ ≥ 0 of the noise-aware consistency gain (``consistency`` only; see
        :class:`MeasurementConsistency`); 0 is the plain λ step.
    guidance_scale, measurement_std:
        ζ and σ_y of the guidance (``guidance`` only). σ_y defaults to the
        operator's ``noise_std``.
    guidance_max_ratio:
        ρ: caps the guidance term at ρ times the prior score's norm per item
        (``guidance`` only; ``None``: uncapped). See :class:`GuidedScore`.

    Returns
    -------
    SampleResult
        Samples of shape (B, *operator.in_shape), the number of score evaluations
        and the wall time.
    """
    shape = (y.shape[0], *operator.in_shape)
    conditioning: Conditioning | None = None
    sampler_score: ScoreFn = score_fn
    if method == "consistency":
        conditioning = MeasurementConsistency(sde, operator, y, weight, final_iterations, final_damping,
                                              step_filter, final_filter, noise_weight)
    elif method == "replacement":
        conditioning = MeasurementConsistency(sde, operator, y, 1.0, 0, 0.0, step_filter, final_filter)
    elif method == "guidance":
        if measurement_std is None:
            measurement_std = operator.noise_std
        sampler_score = GuidedScore(score_fn, sde, operator, y, measurement_std, guidance_scale,
                                    guidance_max_ratio)
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    return pc_sample(
        sampler_score, sde, shape, steps=steps, predictor=predictor, corrector=corrector, snr=snr,
        corrector_steps=corrector_steps, eps=eps, generator=generator, device=y.device,
        conditioning=conditioning, dtype=y.dtype, progress=progress,
    )


__all__ = ["conditional_sample", "MeasurementConsistency", "GuidedScore", "METHODS", "Method"]
