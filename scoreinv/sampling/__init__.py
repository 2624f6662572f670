"""Unconditional sampling: predictors, correctors, the PC loop and the probability-flow ODE.

Everything here sees only a score callable and an SDE. :func:`sample` is the
entry point for a *prior* (a score callable carrying ``.sde``, such as a loaded
model or :class:`scoreinv.GaussianPrior`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from scoreinv.sampling.correctors import (
    CORRECTORS,
    AnnealedLangevinCorrector,
    Corrector,
    LangevinCorrector,
    NoneCorrector,
    make_corrector,
    register_corrector,
)
from scoreinv.sampling.classifier_guidance import ClassifierGuidedScore
from scoreinv.sampling.ode import ode_sample
from scoreinv.sampling.pc import (
    TIME_GRIDS,
    Conditioning,
    SampleResult,
    default_eps,
    pc_sample,
    sampling_times,
)
from scoreinv.sampling.predictors import (
    PREDICTORS,
    AncestralSamplingPredictor,
    DDIMPredictor,
    EulerMaruyamaPredictor,
    NonePredictor,
    Predictor,
    ReverseDiffusionPredictor,
    make_predictor,
    register_predictor,
)
from scoreinv.sde import SDE


def prior_device(prior: Any) -> torch.device:
    """The device a prior computes on: its parameters' for a torch module, else the CPU."""
    if isinstance(prior, torch.nn.Module):
        for parameter in prior.parameters():
            return parameter.device
    return torch.device(getattr(prior, "device", "cpu"))


def prior_item_shape(prior: Any) -> tuple[int, int, int]:
    """(C, H, W) of a prior that states ``channels`` and ``image_size``."""
    channels = getattr(prior, "channels", None)
    size = getattr(prior, "image_size", None)
    if channels is None or size is None:
        raise ValueError(
            "this prior does not state channels and image_size: pass a full shape (B, C, H, W)"
        )
    return int(channels), int(size), int(size)


def sample(
    prior: Any,
    shape: int | Sequence[int],
    method: Literal["pc", "ode"] = "pc",
    *,
    sde: SDE | None = None,
    steps: int = 1000,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    corrector_steps: int = 1,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float | None = None,
    denoise: bool = True,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    classifier: Any = None,
    label: int | torch.Tensor | None = None,
    classifier_scale: float = 1.0,
) -> torch.Tensor:
    """Draw samples from a prior, unconditionally or of one class (classifier guidance).

    Parameters
    ----------
    prior:
        A score callable ``prior(x, t)``; its SDE is ``prior.sde`` unless ``sde`` is given.
    shape:
        ``(B, C, H, W)``, or just B for a prior that states ``channels`` and ``image_size``.
    method:
        ``"pc"`` (predictor–corrector; uses steps, predictor, corrector, snr,
        corrector_steps) or ``"ode"`` (probability-flow ODE; uses rtol, atol).
    generator, seed:
        The source of randomness: a ``torch.Generator``, or a seed for a new one.
        The same seed gives the same samples.
    device:
        Defaults to the prior's device.
    classifier, label, classifier_scale:
        Class-conditional sampling: ``classifier(x, t) -> logits`` of p_t(c | x_t) (a callable;
        :func:`scoreinv.sample` also takes a registered name or a checkpoint path), the class c
        (an index, or a (B,) tensor) and the guidance scale s: the sampler follows
        s(x, t) + s ∇ₓ log p_t(c | x) (:class:`ClassifierGuidedScore`).

    Returns
    -------
    torch.Tensor
        Samples of shape ``(B, C, H, W)``. :func:`pc_sample` and :func:`ode_sample`
        return the number of score evaluations and timings too.
    """
    sde = sde if sde is not None else getattr(prior, "sde", None)
    if sde is None:
        raise ValueError("pass sde=... for a score function that does not carry its SDE")
    if isinstance(shape, int):
        shape = (shape, *prior_item_shape(prior))
    device = torch.device(device) if device is not None else prior_device(prior)
    if classifier is not None:
        if label is None:
            raise ValueError("classifier guidance needs the class: pass label=...")
        prior = ClassifierGuidedScore(prior, classifier, label, classifier_scale)
    elif label is not None:
        raise ValueError("label=... needs a classifier=... to guide the sampler")
    if generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    if method == "pc":
        result = pc_sample(
            prior, sde, shape, steps=steps, predictor=predictor, corrector=corrector, snr=snr,
            corrector_steps=corrector_steps, eps=eps, denoise=denoise, generator=generator,
            device=device, progress=progress,
        )
    elif method == "ode":
        result = ode_sample(
            prior, sde, shape, rtol=rtol, atol=atol, eps=eps, denoise=denoise,
            generator=generator, device=device, progress=progress,
        )
    else:
        raise ValueError(f"unknown sampling method {method!r}; choose 'pc' or 'ode'")
    return result.samples


__all__ = [
    "sample", "ClassifierGuidedScore", "pc_sample", "ode_sample", "SampleResult", "Conditioning", "default_eps",
    "sampling_times", "TIME_GRIDS",
    "Predictor", "NonePredictor", "EulerMaruyamaPredictor", "ReverseDiffusionPredictor",
    "AncestralSamplingPredictor", "DDIMPredictor", "PREDICTORS", "make_predictor", "register_predictor",
    "Corrector", "NoneCorrector", "LangevinCorrector", "AnnealedLangevinCorrector",
    "CORRECTORS", "make_corrector", "register_corrector", "prior_device", "prior_item_shape",
]
