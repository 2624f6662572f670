"""``scoreinv.reconstruct`` and ``scoreinv.posterior``: the user-facing reconstruction.

:func:`resolve_settings` is the one place where sampler settings are completed: the method is the
user's, else the solvers' policy's (:mod:`scoreinv.solvers.policy`, which reads the operator's
capabilities, noise and image size); every field that method reads and the user left unset takes
the policy's value, then the method's own default (its typed ``settings_model``). What the policy
chooses (measured values in docs/reconstruct.md; a test checks this table against
:func:`resolve_settings`):

| operator | method | steps × samples | also set by the policy |
|---|---|---|---|
| RadonOp, noise-free | decomposed | 50 × 2 | zeta = 0.85, projection_iterations = 300, projection_noise_level = 0.1 |
| RadonOp, noise_std > 0 | decomposed | 50 × 2 | zeta = 0.9, damping_weight = 0.5 |
| RadonOp over a limited arc (> 30° of directions unmeasured), noise-free | decomposed | 50 × 2 | zeta = 0.85, projection_iterations = 300, projection_noise_level = 0.3 |
| RadonOp over a limited arc (> 30° of directions unmeasured), noise_std > 0 | decomposed | 50 × 2 | zeta = 0.9, damping_weight = 0.5, cg_iterations = 15 |
| RadonOp at 256², noise-free | decomposed | 30 × 6 | zeta = 0.85, projection_iterations = 300, start_noise_level = 0.2, start_estimate = coarse, score_precision = bfloat16 |
| RadonOp at 256², noise-free, ≥ 0.25 measurements per pixel (60 views) | decomposed | 30 × 6 | zeta = 0.85, projection_iterations = 300, start_noise_level = 0.1, start_estimate = coarse, score_precision = bfloat16, cg_iterations = 15, projection_noise_level = 0.015 |
| RadonOp at 256², noise_std > 0 | decomposed | 30 × 2 | zeta = 0.9, damping_weight = 0.5, start_noise_level = 0.5, start_estimate = coarse, score_precision = bfloat16 |
| RadonOp over a limited arc at 256², noise-free | decomposed | 30 × 2 | zeta = 0.85, projection_iterations = 300, start_noise_level = 0.3, start_estimate = coarse, score_precision = bfloat16 |
| MaskOp / GrayscaleOp, noise-free | decomposed | 100 × 1 | zeta = 0.7 |
| MaskOp / GrayscaleOp, noise_std > 0 | replacement | 1000 × 1 | snr = 0.16 |
| any other operator | guidance | 1000 × 1 | snr = 0.16, guidance_scale = 1.0 |

The RadonOp rows are those of every CT operator (``FanBeamOp`` too); the 64² rows hold up to 64², the
256² rows from 65² up (the patch prior's sizes; a coarse start reconstructs at 64² with the whole-image
prior first, :mod:`scoreinv.multiscale`). The decomposed sampler runs the ``ddim`` predictor with no corrector, K = 7 CG iterations per step
and w = 3 unless set; a method chosen by the user takes the policy's settings for it (for
example ``method="consistency"`` on a noisy RadonOp: 200 steps, FBP windows shepp-logan and hann,
κ = 0.25).

With no model given, the prior is the registered one for the operator's modality, channels and
image size (:func:`scoreinv.checkpoint.default_prior_for`); an operator built without a size
(``RadonOp(23)``, ``GrayscaleOp()``) takes it from the measurement or the model.

Two functions with fixed return types:

* :func:`reconstruct` returns the reconstruction, the same kind as ``y`` (numpy in,
  numpy out; one item in, one item out). With ``num_samples > 1`` it is the
  posterior mean of that many samples.
* :func:`posterior` returns a :class:`Posterior` with the per-pixel posterior
  ``mean``, ``std`` and all ``samples``, each the same kind as ``y``: the
  uncertainty map.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydantic
import torch

from scoreinv.config import ReconstructionSettings
from scoreinv.devices import check_device
from scoreinv.operators import LinearOperator
from scoreinv.sampling import CORRECTORS, PREDICTORS
from scoreinv.seeding import ItemGenerators, item_seed
from scoreinv.solvers import conditional_sample, get_method


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

    @property
    def evaluations_per_item(self) -> int:
        """Score evaluations spent on each measurement: ``nfe`` for each of its ``num_samples``
        trajectories (the cost to compare against another solver's)."""
        return self.nfe * int(self.settings.get("num_samples", 1))


def resolve_settings(operator: LinearOperator, settings: ReconstructionSettings | Mapping[str, Any] | None = None,
                     **overrides: Any) -> ReconstructionSettings:
    """Complete sampler settings for ``operator``: the one place defaults are filled.

    The method is the user's, else the solvers' policy's for the operator
    (:func:`scoreinv.solvers.policy.default_method`); it must suit the operator's capabilities.
    Each field the method reads (its ``settings_model``) takes the user's value, else the policy's
    (:func:`scoreinv.solvers.policy.default_settings`), else the method's own default; the method's
    typed model then checks them all. Of a pair in ``Method.exclusive_settings`` (the decomposed
    sampler's ``eta`` and ``zeta``) the user sets at most one; one of them is filled (the
    user's, else the policy's, else the method's default) and the other stays None. The fields
    the method does not read stay None, so the result names exactly what runs and resolves again
    to itself.

    Parameters
    ----------
    operator:
        The forward operator (bound to its image size where the policy depends on it).
    settings:
        A :class:`~scoreinv.config.ReconstructionSettings`, a mapping of its fields, or None.
    **overrides:
        Fields of ``ReconstructionSettings`` (``steps=100``, ...) that replace those of
        ``settings``; a value of None leaves the field as it is.

    Returns
    -------
    ReconstructionSettings
        Every field the chosen method reads is set, the others are None.

    Raises
    ------
    ValueError
        Naming the field: an unknown (misspelt) name, an invalid value, a field the method does
        not read; naming the method: one that is not registered or does not suit the operator, too
        few steps; an unregistered predictor or corrector.
    """
    from scoreinv.solvers import policy

    if settings is None:
        settings = ReconstructionSettings()
    elif isinstance(settings, Mapping):
        settings = ReconstructionSettings(**settings)
    elif not isinstance(settings, ReconstructionSettings):
        raise ValueError(f"settings must be a ReconstructionSettings or a mapping, got {type(settings).__name__}")
    chosen = {key: value for key, value in overrides.items() if value is not None}
    user = {key: value for key, value in {**settings.model_dump(exclude_unset=True), **chosen}.items()
            if value is not None}
    unknown = [key for key in user if key not in ReconstructionSettings.model_fields]
    if unknown:
        hints = {key: difflib.get_close_matches(key, ReconstructionSettings.model_fields, n=1) for key in unknown}
        raise ValueError("unknown setting " + ", ".join(
            f"{key!r}" + (f" (did you mean {hints[key][0]!r}?)" if hints[key] else "") for key in unknown)
            + "; see scoreinv.config.ReconstructionSettings")
    user = ReconstructionSettings(**user).model_dump(exclude_unset=True)  # bad values, by field
    problem = policy.Problem.of(operator)
    method = get_method(user.pop("method", None) or policy.default_method(problem))
    if not method.supports(operator):
        raise ValueError(method.refusal(operator))
    reads = method.settings_model.model_fields
    unread = sorted(set(user) - set(reads))
    if unread:
        raise ValueError(f"method {method.name!r} does not use {', '.join(unread)} (it reads "
                         f"{', '.join(sorted(reads))})")
    family = {key: value for key, value in policy.default_settings(problem, method.name).items() if key in reads}
    values = dict(user)
    for pair in method.exclusive_settings:
        given = [key for key in pair if key in user]
        if len(given) == 2:
            raise ValueError(f"method {method.name!r}: set {pair[0]} or {pair[1]}, not both")
        if not given:  # the policy's choice, else the method's default
            given = [key for key in pair if key in family][:1]
        for key in pair:
            if given and key not in given:
                values[key] = None
                family.pop(key, None)
    for key, value in family.items():
        values.setdefault(key, value)
    for key, registry in (("predictor", PREDICTORS), ("corrector", CORRECTORS)):
        if values.get(key) is not None and values[key] not in registry:
            raise ValueError(f"unknown {key} {values[key]!r}; choose one of {sorted(registry)}")
    try:
        typed = method.settings_model(**values)
    except pydantic.ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, item['loc'])) or 'settings'}: {item['msg']}"
                             for item in error.errors())
        raise ValueError(f"method {method.name!r}: {problems}") from None
    required, reason = method.minimum_steps_for(operator)
    if typed.steps < required:
        raise ValueError(f"method {method.name!r} needs at least {required} steps, got {typed.steps} ({reason})")
    return ReconstructionSettings(method=method.name, **typed.model_dump())


def _as_tensor(y: Any) -> tuple[torch.Tensor, bool]:
    if isinstance(y, np.ndarray):
        if y.dtype.kind not in "fiub":  # complex, object, strings: torch.from_numpy's error names none of them
            raise ValueError(f"the measurement must hold real numbers, got dtype {y.dtype}")
        return torch.from_numpy(np.ascontiguousarray(y)), True
    if isinstance(y, torch.Tensor):
        if y.device.type == "meta":
            raise ValueError("the measurement is a tensor on the 'meta' device, which holds no values")
        return y, False
    raise ValueError(f"the measurement must be a numpy array or a torch tensor, got {type(y).__name__}")


def _check_operator(operator: Any) -> None:
    if not isinstance(operator, LinearOperator):
        raise TypeError(f"operator must be a scoreinv LinearOperator (RadonOp(23), MaskOp(...), GrayscaleOp(), ...), "
                        f"got {type(operator).__name__}")


def _item_layout(y: torch.Tensor, operator: LinearOperator) -> tuple[torch.Tensor, str]:
    """``y`` as a batch (B, *measurement) and how it came: "batch", "item", or "bare" (one item
    without its leading channel of size 1, e.g. a (views, detectors) sinogram)."""
    if not (y.is_floating_point() or y.dtype in (torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"the measurement must hold real numbers, got dtype {y.dtype}")
    rank = operator.measurement_ndim
    if y.dim() == rank + 1:
        return y, "batch"
    if y.dim() == rank:
        return y.unsqueeze(0), "item"
    if y.dim() == rank - 1:
        return y.unsqueeze(0).unsqueeze(0), "bare"
    raise ValueError(f"the measurement has {y.dim()} dimensions; {operator.name} takes one item of "
                     f"{rank} dimensions, a batch of {rank + 1}, or one item without its channel "
                     f"({rank - 1})")


def _prior_and_operator(model: Any, operator: LinearOperator, measurement_shape: tuple[int, ...],
                        device: torch.device | str | None) -> tuple[Any, LinearOperator]:
    """The prior (given, by name or path, or the registered default) and the operator bound to
    the measurement's and the prior's image size."""
    from scoreinv.checkpoint import default_prior_for, load_model

    if model is None:
        model = default_prior_for(operator, measurement_shape)
        operator = operator.bind(measurement_shape=measurement_shape)
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        model = load_model(model, device=device)
    if getattr(model, "sde", None) is None:
        raise ValueError("the model must carry its SDE (.sde): load it with scoreinv.load_model")
    channels, size = getattr(model, "channels", None), getattr(model, "image_size", None)
    image_shape = getattr(model, "item_shape", None)  # an analytic prior of any (C, H, W)
    if image_shape is None and channels is not None and size is not None:
        image_shape = (int(channels), int(size), int(size))
    operator = operator.bind(image_shape=image_shape, measurement_shape=measurement_shape)
    serves = getattr(model, "serves_image_size", None)
    if serves is not None:  # a patch prior: a range of sizes
        channels_in, height, width = operator.in_shape
        if height != width or not serves(height) or (channels is not None and channels_in != channels):
            low, high = model.image_sizes
            raise ValueError(f"the prior serves {channels}-channel N×N images with {low} <= N <= {high}; "
                             f"the operator works on {channels_in}×{height}×{width}")
    return model, operator


def posterior(
    y: Any,
    operator: LinearOperator,
    model: Any = None,
    *,
    settings: ReconstructionSettings | Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    item_seeds: Sequence[int] | None = None,
    classifier: Any = None,
    label: int | str | torch.Tensor | None = None,
    classifier_scale: float | None = None,
    **overrides: Any,
) -> Posterior:
    """Posterior samples, mean and per-pixel std for measurements ``y``.

    Parameters
    ----------
    y:
        Measurements, numpy or torch: one item of shape ``operator.out_shape`` (a RadonOp's
        (1, views, detectors), or just (views, detectors)) or a batch (B, *operator.out_shape).
    operator:
        The forward operator (``RadonOp``, ``MaskOp``, ``GrayscaleOp``, a composition, or any
        :class:`~scoreinv.operators.LinearOperator`); one built without a size takes it from
        ``y`` and the model.
    model:
        The prior: a loaded model (:func:`scoreinv.load_model`), a registered name or checkpoint
        path, or any score callable with ``.sde``. None: the registered prior for the
        operator's modality and image size (ValueError listing them if none fits).
    settings:
        Sampler settings (:class:`~scoreinv.config.ReconstructionSettings` or a mapping).
    **overrides:
        Any field of ``ReconstructionSettings`` as a keyword (``method``, ``steps``, ``seed``,
        ``num_samples``, ``snr``, ``weight``, ...), replacing the one in ``settings``; unset
        fields take the operator family's default (:func:`resolve_settings`). ``seed``
        (default 0) seeds every random draw: the same seed gives the same result.
    device:
        Where to compute; defaults to the model's device.
    item_seeds:
        Per-item randomness: one non-negative integer per item of the batch (typically its
        index in a data set). Row (item b, sample s) then draws every random number from its
        own generator seeded with :func:`scoreinv.seeding.item_seed` ``(seed, item_seeds[b], s)``,
        so an item's result depends only on ``(seed, item_seeds[b], settings)``, not on the
        other items of the batch (batch reconstruction relies on this).
        ``None`` (default): one generator seeded with ``seed`` drives the whole batch.
    classifier, label, classifier_scale:
        Both terms of the score Bayes rule at once: the measurement's, and a class's from a
        time-dependent classifier (a loaded one, a registered name such as ``digits-classifier``, or a
        checkpoint path) that must have been trained on the prior's SDE. ``label`` is a class index
        or name (or a (B,) tensor, one per item); ``classifier_scale`` defaults to the classifier's.
        The prior's score is replaced by s(x, t) + scale ∇ₓ log p_t(label | x) before the method
        is built (docs/classifier.md); what ran is added to ``settings``.
    """
    from scoreinv.sampling import prior_device
    from scoreinv.sampling.precision import score_in_precision

    _check_operator(operator)
    device = check_device(device)
    tensor, from_numpy = _as_tensor(y)
    batch, layout = _item_layout(tensor, operator)
    if batch.shape[0] == 0:
        raise ValueError(f"the measurement batch is empty: shape {tuple(tensor.shape)} holds 0 items")
    if batch.numel() == 0:
        raise ValueError(f"the measurement holds no values: shape {tuple(tensor.shape)}")
    if not torch.isfinite(batch.double()).all():
        raise ValueError("the measurement contains NaN or inf")
    model, operator = _prior_and_operator(model, operator, tuple(batch.shape[1:]), device)
    resolved = resolve_settings(operator, settings, **overrides)
    num_samples = resolved.num_samples

    device = torch.device(device) if device is not None else prior_device(model)
    peak = float(batch.double().abs().max())
    batch = batch.to(device=device, dtype=torch.float32)  # the models' and operators' working type
    if not torch.isfinite(batch).all():
        raise ValueError(f"the measurement holds values beyond the float32 range the models compute in "
                         f"(largest |y| = {peak:.3g})")
    items = batch.shape[0]
    repeated = batch.repeat_interleave(num_samples, dim=0)
    generator: torch.Generator | ItemGenerators
    if item_seeds is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(resolved.seed)
    else:
        ids = [int(i) for i in item_seeds]
        if len(ids) != items:
            raise ValueError(f"item_seeds holds {len(ids)} values but the batch has {items} items")
        if any(i < 0 for i in ids):
            raise ValueError(f"item_seeds must be >= 0, got {min(ids)}")
        generator = ItemGenerators.from_seeds(
            [item_seed(resolved.seed, i, s) for i in ids for s in range(num_samples)], device=device)

    # Only the prior network changes number format; a classifier's gradient stays float32.
    score, guidance = score_in_precision(model, resolved.score_precision), {}
    if classifier is not None or label is not None or classifier_scale is not None:
        from scoreinv.generation import guided_prior

        if isinstance(label, torch.Tensor) and label.dim() == 1:
            if label.shape[0] != items:
                raise ValueError(f"{label.shape[0]} labels for {items} measurements")
            label = label.repeat_interleave(num_samples)
        score, guidance = guided_prior(score, classifier, label, classifier_scale, device)

    start = time.perf_counter()
    start_image, coarse = None, {}
    if resolved.start_estimate == "coarse":
        from scoreinv.multiscale import coarse_start_image

        images, coarse_prior = coarse_start_image(batch, operator, resolved, item_seeds=item_seeds, device=device)
        start_image, coarse = images.repeat_interleave(num_samples, dim=0), {"coarse_prior": coarse_prior}
    try:
        result = conditional_sample(score, model.sde, operator, repeated, resolved, generator=generator,
                                    progress=progress, start_image=start_image)
    except ValueError as error:
        # The inputs were checked above: NaN or inf inside the sampler means it diverged, which a
        # measurement far outside what the operator produces from the prior's images does (found
        # by the property tests at |y| ~ 1e18); the operator's own message would name an internal tensor.
        if "contains NaN or inf" not in str(error):
            raise
        raise ValueError(f"the reconstruction diverged (NaN or inf inside the sampler) on a measurement whose "
                         f"largest |y| is {peak:.3g}: is it in the units the operator produces?") from error
    samples = result.samples.reshape(items, num_samples, *operator.in_shape)
    mean = samples.mean(dim=1)
    std = samples.std(dim=1) if num_samples > 1 else torch.zeros_like(mean)
    if layout != "batch":
        samples, mean, std = samples[0], mean[0], std[0]
        if layout == "bare" and operator.in_shape[0] == 1:  # a bare sinogram gives a bare image
            samples, mean, std = samples[:, 0], mean[0], std[0]

    def convert(value: torch.Tensor) -> Any:
        if from_numpy:
            return value.detach().cpu().numpy()
        return value.to(tensor.device)

    return Posterior(mean=convert(mean), std=convert(std), samples=convert(samples), nfe=result.nfe,
                     seconds=time.perf_counter() - start,
                     settings={**resolved.model_dump(), **guidance, **coarse})


def reconstruct(y: Any, operator: LinearOperator, model: Any = None, **options: Any) -> Any:
    """Reconstruct images from measurements ``y``; returns the same kind as ``y``.

    ``scoreinv.reconstruct(sinogram, operator=RadonOp(23))`` reconstructs a (23, D) sinogram
    with the bundled CT prior into an (N, N) image, N fixed by D = ceil(N·√2). Accepts every
    option of :func:`posterior`; with ``num_samples > 1`` the result is the posterior mean
    (use :func:`posterior` for the per-pixel std as well).
    """
    return posterior(y, operator, model, **options).mean
