"""Conditional sampling for inverse problems y = A x + n: one PC loop, pluggable methods.

Methods live in a registry (:data:`METHODS`, :func:`register_method`); the built-in ones are
in :mod:`scoreinv.solvers.methods`. :func:`conditional_sample` runs one with settings that
:func:`scoreinv.reconstruct.resolve_settings` has resolved.
"""

from __future__ import annotations

from typing import Any

import torch

from scoreinv.config import ReconstructionSettings
from scoreinv.sampling.pc import SampleResult
from scoreinv.sde import SDE, ScoreFn
from scoreinv.solvers import decomposed as _decomposed  # noqa: F401  (registers "decomposed")
from scoreinv.solvers import methods as _builtin_methods  # noqa: F401  (registers the built-in methods)
from scoreinv.solvers.consistency import MeasurementConsistency
from scoreinv.solvers.decomposed import DecomposedConsistency
from scoreinv.solvers.guidance import GuidedScore
from scoreinv.solvers.registry import METHODS, Method, get_method, register_method


def conditional_sample(
    score_fn: ScoreFn,
    sde: SDE,
    operator: Any,
    y: torch.Tensor,
    settings: ReconstructionSettings,
    *,
    generator: Any = None,
    eps: float | None = None,
    progress: bool = True,
    start_image: torch.Tensor | None = None,
) -> SampleResult:
    """Draw one posterior sample per measurement: x ~ p(x | y) approximately.

    Parameters
    ----------
    score_fn, sde:
        The prior's score and SDE.
    operator:
        The forward operator, with its size bound (``operator.in_shape`` known).
    y:
        Measurements (B, *operator.out_shape), finite, on the sampling device.
    settings:
        Resolved settings (:func:`scoreinv.reconstruct.resolve_settings`): ``settings.method``
        names a registered method and every setting it reads is set.
    generator:
        A ``torch.Generator`` or per-item generators (:class:`scoreinv.seeding.ItemGenerators`).
    eps:
        Last time point (default :func:`scoreinv.sampling.pc.default_eps`).
    start_image:
        (B, *operator.in_shape), the estimate of a ``start_estimate='coarse'`` start (decomposed only).

    Returns
    -------
    SampleResult
        Samples of shape (B, *operator.in_shape), score evaluations per trajectory, wall time.
    """
    method = get_method(settings.method)
    extra = {} if start_image is None else {"start_image": start_image}
    return method.sample(score_fn, sde, operator, y, settings, generator=generator, eps=eps, progress=progress,
                         **extra)


__all__ = ["conditional_sample", "MeasurementConsistency", "DecomposedConsistency", "GuidedScore", "METHODS", "Method",
           "register_method", "get_method"]
