"""``scoreinv.reconstruct`` and ``scoreinv.posterior``: the user-facing reconstruction.

This module is the one place that chooses defaults per operator family:

| operator                | method        | steps | λ / ζ  | final projection         |
|-------------------------|---------------|-------|--------|--------------------------|
| RadonOp, noiseless      | consistency   | 500   | λ = 1  | 20 CG iterations, δ = 0  |
| RadonOp, noise_std > 0  | consistency   | 200   | λ = 1  | FBP-based replacement *  |
| MaskOp, GrayscaleOp     | replacement   | 1000  | λ = 1  | exact replacement        |
| any other operator      | guidance      | 1000  | ζ = 1  | —                        |

\* with the FBP windows shepp-logan in the consistency steps and hann in the final step.

The noisy-CT row was measured on the bundled trained prior (docs/reconstruct.md,
``benchmarks/noisy_ct_settings.py``): 8 held-out phantoms, 1% noise, 30.3 dB / SSIM 0.84
against SIRT-300 27.5 / 0.83 and FBP 24.0 / 0.42; the noise-aware gain (κ) and the smoother
FBP windows keep the measurement noise out of the image (SSIM 0.70 without them); a damped
CG final step was worse, and guidance (the best method on a Gaussian prior, where its
Tweedie estimate is exact) diverged on some items.

Two functions with fixed return types:

* :func:`reconstruct` returns the reconstruction, the same kind as ``y`` (numpy in,
  numpy out; one item in, one item out). With ``num_samples > 1`` it is the
  posterior mean of that many samples.
* :func:`posterior` returns a :class:`Posterior` with the per-pixel posterior
  ``mean``, ``std`` and all ``samples``, each the same kind as ``y``: the
  uncertainty map.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scoreinv.operators import GrayscaleOp, LinearOperator, MaskOp, RadonOp, SubsampledTransformOp
from scoreinv.sde import ItemGenerators, item_seed
from scoreinv.solvers import METHODS, conditional_sample

# Song et al. 2022 tuned SNR = 0.246 (and λ = 0.841) for 23-view CT (320², Bayesian optimisation).
CT_SNR = 0.246
# The guidance term capped at 10× the prior score's norm: uncapped, DPS diverged on the bundled
# CT prior (5 dB on 8 noisy phantoms); capped at 10×, 26.1 dB, SSIM 0.90, while the exact-score
# closed form keeps its uncapped accuracy (0.058 / 0.15 against 0.057 / 0.21; at 1× it was 0.10).
GUIDANCE_MAX_RATIO = 10.0


@dataclass
class Posterior:
    """Posterior summary of a reconstruction, each array the same kind as the measurement.

    Attributes
    ----------
    mean:
        Per-pixel posterior mean, (B, C, H, W) or (C, H, W) for a single item.
    std:
        Per-pixel posterior standard deviation (0 when ``num_samples`` = 1).
    samples:
        All samples, (B, S, C, H, W) or (S, C, H, W).
    nfe:
        Score evaluations per sample trajectory.
    seconds:
        Wall time.
    settings:
        The method and parameters actually used (defaults resolved).
    """

    mean: Any
    std: Any
    samples: Any
    nfe: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)


def default_settings(operator: LinearOperator) -> dict[str, Any]:
    """Method, steps, SNR and consistency / guidance parameters chosen for an operator family.

    Every family carries the guidance cap ρ = 10 (``guidance_max_ratio``), used when
    ``method="guidance"`` is chosen for it.
    """
    return {**_family_settings(operator), "guidance_max_ratio": GUIDANCE_MAX_RATIO}


def _family_settings(operator: LinearOperator) -> dict[str, Any]:
    if isinstance(operator, RadonOp):
        if operator.noise_std > 0:
            # Guidance won on the Gaussian closed form but diverged on the bundled trained prior
            # (4 dB at 100 steps). The noise-aware gain and smoother FBP windows keep the
            # measurement noise out of the image: 29.5 dB / SSIM 0.70 -> 30.3 / 0.84 on 8
            # held-out phantoms at 200 steps (docs/reconstruct.md).
            return {"method": "consistency", "steps": 200, "snr": CT_SNR, "weight": 1.0,
                    "final_iterations": 0, "final_damping": 0.0,
                    "step_filter": "shepp-logan", "final_filter": "hann", "noise_weight": 0.25}
        return {"method": "consistency", "steps": 500, "snr": CT_SNR, "weight": 1.0,
                "final_iterations": 20, "final_damping": 0.0}
    if isinstance(operator, (MaskOp, GrayscaleOp)):
        return {"method": "replacement", "steps": 1000, "snr": 0.16}
    if isinstance(operator, SubsampledTransformOp):
        return {"method": "consistency", "steps": 500, "snr": 0.16, "weight": 1.0,
                "final_iterations": 20, "final_damping": 0.0}
    return {"method": "guidance", "steps": 1000, "snr": 0.16, "guidance_scale": 1.0}


def _as_tensor(y: Any) -> tuple[torch.Tensor, bool]:
    if isinstance(y, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(y)), True
    if isinstance(y, torch.Tensor):
        return y, False
    raise ValueError(f"the measurement must be a numpy array or a torch tensor, got {type(y).__name__}")


def _check_inputs(y: torch.Tensor, operator: LinearOperator, model: Any) -> bool:
    """Validate; return True if y is a single item (no batch dimension)."""
    if not (y.is_floating_point() or y.dtype in (torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"the measurement must hold real numbers, got dtype {y.dtype}")
    expected = tuple(operator.out_shape)
    if tuple(y.shape) == expected:
        single = True
    elif y.dim() == len(expected) + 1 and tuple(y.shape[1:]) == expected:
        single = False
    else:
        raise ValueError(
            f"measurement shape {tuple(y.shape)} does not match the operator: expected {expected} "
            f"or (B, {', '.join(map(str, expected))})"
        )
    if not torch.isfinite(y.double()).all():
        raise ValueError("the measurement contains NaN or inf")
    channels, size = getattr(model, "channels", None), getattr(model, "image_size", None)
    if channels is not None and size is not None:
        model_shape = (int(channels), int(size), int(size))
        if tuple(operator.in_shape) != model_shape:
            raise ValueError(
                f"the operator works on images of shape {tuple(operator.in_shape)} but the model "
                f"was trained on {model_shape}: build the operator with image_size={size}"
            )
    return single


def posterior(
    y: Any,
    operator: LinearOperator,
    model: Any = None,
    *,
    method: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    num_samples: int = 1,
    snr: float | None = None,
    weight: float | None = None,
    final_iterations: int | None = None,
    final_damping: float | None = None,
    step_filter: str | None = None,
    final_filter: str | None = None,
    noise_weight: float | None = None,
    guidance_scale: float | None = None,
    guidance_max_ratio: float | None = None,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    corrector_steps: int = 1,
    device: torch.device | str | None = None,
    progress: bool = True,
    item_seeds: Sequence[int] | None = None,
) -> Posterior:
    """Posterior samples, mean and per-pixel std for measurements ``y``.

    Parameters
    ----------
    y:
        Measurements, numpy or torch: one item of shape ``operator.out_shape`` or a
        batch (B, *operator.out_shape).
    operator:
        The forward operator (``RadonOp``, ``MaskOp``, ``GrayscaleOp`` or any
        :class:`~scoreinv.operators.LinearOperator`).
    model:
        The prior: a loaded model (:func:`scoreinv.load_model`), a bundled model
        name or checkpoint path, or any score callable with ``.sde``.
    method:
        ``"consistency"``, ``"replacement"`` or ``"guidance"``; default per operator
        (see the module docstring).
    steps, snr, weight, final_iterations, final_damping, step_filter, final_filter, guidance_scale:
        Sampler settings; ``None`` takes the operator family's default. ``step_filter`` and
        ``final_filter`` are the FBP windows (``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``,
        ``"hann"``) of a RadonOp's consistency steps and final replacement. ``noise_weight``
        κ makes the consistency steps noise-aware (see
        :class:`~scoreinv.solvers.MeasurementConsistency`; 0: off). ``guidance_max_ratio`` ρ
        caps the guidance term at ρ times the prior score's norm (default 10; a large value
        leaves it uncapped; see :class:`~scoreinv.solvers.GuidedScore`).
    seed:
        Seeds every random draw: the same seed gives the same result.
    num_samples:
        S ≥ 1 posterior samples per measurement.
    device:
        Where to compute; defaults to the model's device.
    item_seeds:
        Per-item randomness: one non-negative integer per item of the batch (typically its
        index in a data set). Row (item b, sample s) then draws every random number from its
        own generator seeded with :func:`scoreinv.sde.item_seed` ``(seed, item_seeds[b], s)``,
        so an item's result depends only on ``(seed, item_seeds[b], settings)``, not on the
        other items of the batch (:func:`scoreinv.datasets.reconstruct_h5` relies on this).
        ``None`` (default): one generator seeded with ``seed`` drives the whole batch.
    """
    from scoreinv.sampling import prior_device

    if model is None:
        raise ValueError(
            "pass model=...: a checkpoint path, a bundled model name, or a score callable with .sde"
        )
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        from scoreinv.checkpoint import load_model

        model = load_model(model, device=device)
    sde = getattr(model, "sde", None)
    if sde is None:
        raise ValueError("the model must carry its SDE (.sde): load it with scoreinv.load_model")
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")

    tensor, from_numpy = _as_tensor(y)
    single = _check_inputs(tensor, operator, model)
    settings = default_settings(operator)
    chosen = {"method": method, "steps": steps, "snr": snr, "weight": weight,
              "final_iterations": final_iterations, "final_damping": final_damping,
              "step_filter": step_filter, "final_filter": final_filter, "noise_weight": noise_weight,
              "guidance_scale": guidance_scale, "guidance_max_ratio": guidance_max_ratio}
    settings.update({key: value for key, value in chosen.items() if value is not None})
    if settings["method"] not in METHODS:
        raise ValueError(f"unknown method {settings['method']!r}; choose one of {list(METHODS)}")
    if settings["method"] in ("consistency", "replacement") and not isinstance(operator, SubsampledTransformOp):
        raise ValueError(
            f"method {settings['method']!r} needs an operator A = Λ T with transform, inverse_transform "
            f"and mask; {type(operator).__name__} has none: use method='guidance'"
        )
    settings.update(predictor=predictor, corrector=corrector, corrector_steps=corrector_steps,
                    num_samples=int(num_samples), seed=seed)

    device = torch.device(device) if device is not None else prior_device(model)
    batch = tensor.to(device=device, dtype=torch.float32)  # the models' and operators' working type
    if single:
        batch = batch.unsqueeze(0)
    items = batch.shape[0]
    repeated = batch.repeat_interleave(int(num_samples), dim=0)
    base_seed = int(seed) if seed is not None else int(torch.seed() % 2**63)
    generator: torch.Generator | ItemGenerators
    if item_seeds is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(base_seed)
    else:
        ids = [int(i) for i in item_seeds]
        if len(ids) != items:
            raise ValueError(f"item_seeds holds {len(ids)} values but the batch has {items} items")
        if any(i < 0 for i in ids):
            raise ValueError(f"item_seeds must be >= 0, got {min(ids)}")
        generator = ItemGenerators.from_seeds(
            [item_seed(base_seed, i, s) for i in ids for s in range(int(num_samples))], device=device)

    keys = ("weight", "final_iterations", "final_damping", "step_filter", "final_filter", "noise_weight",
            "guidance_scale", "guidance_max_ratio")
    start = time.perf_counter()
    result = conditional_sample(
        model, sde, operator, repeated, method=settings["method"], steps=settings["steps"],
        predictor=predictor, corrector=corrector, snr=settings["snr"], corrector_steps=corrector_steps,
        generator=generator, progress=progress, **{key: settings[key] for key in keys if key in settings},
    )
    samples = result.samples.reshape(items, int(num_samples), *operator.in_shape)
    mean = samples.mean(dim=1)
    std = samples.std(dim=1) if num_samples > 1 else torch.zeros_like(mean)
    if single:
        samples, mean, std = samples[0], mean[0], std[0]

    def convert(value: torch.Tensor) -> Any:
        if from_numpy:
            return value.detach().cpu().numpy()
        return value.to(tensor.device)

    return Posterior(mean=convert(mean), std=convert(std), samples=convert(samples), nfe=result.nfe,
                     seconds=time.perf_counter() - start, settings=settings)


def reconstruct(y: Any, operator: LinearOperator, model: Any = None, **options: Any) -> Any:
    """Reconstruct images from measurements ``y``; returns the same kind as ``y``.

    ``scoreinv.reconstruct(sinogram, operator=RadonOp(23, image_size=64), model=prior, seed=0)``.
    Accepts every option of :func:`posterior`; with ``num_samples > 1`` the result is
    the posterior mean (use :func:`posterior` for the per-pixel std as well).
    """
    return posterior(y, operator, model, **options).mean
