"""The coarse start of a reconstruction at clinical size: a whole-image prior's view of the whole slice.

A patch prior scores a large image from 64² tiles, so nothing in it sees structure wider than a
tile; where the data leave such structure open (a limited arc's missing wedge spans the image)
the reverse process fills it patch by patch. A whole-image prior at n² (the bundled one of
that size) sees it all. The coarse start reconstructs the slice at n² from the same scan seen
by detector cells N/n times wider (:meth:`scoreinv.operators.base.CoarseViews.coarsened`),
upsamples that image to N² (bicubic), and hands it to the decomposed sampler, whose part-way
start runs its CG on A x = y from there and noises the result to σ_s. The fine sampler then
restores the detail and the exact data consistency.

The binned sinogram is not exactly the coarse geometry's sinogram of any image (the projector's
discretisation differs between sizes), so the coarse reconstruction treats it as noisy:
σ_coarse² = (σ_y / r^1.5)² + (``coarse_noise`` · peak)², r = N / n, σ_y the fine operator's noise
std (binning averages r cells of width τ and divides by r), peak the largest |value| of the item's
binned sinogram. Each item runs on its own, so that its start depends on its measurement and seed only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from scoreinv.config import ReconstructionSettings
from scoreinv.operators import LinearOperator


def coarse_start_image(y: torch.Tensor, operator: LinearOperator, settings: ReconstructionSettings, *,
                       item_seeds: Sequence[int] | None = None, device: torch.device | None = None,
                       ) -> tuple[torch.Tensor, str]:
    """The upsampled coarse reconstruction of each measurement, and the name of the prior that made it.

    Parameters
    ----------
    y:
        Measurements (B, *operator.out_shape) of a CT family with the ``coarse-view`` capability.
    operator:
        The bound fine operator (images (1, N, N)).
    settings:
        Resolved settings with ``start_estimate='coarse'``, ``coarse_size`` n and ``coarse_noise``;
        ``seed`` seeds the coarse reconstruction.
    item_seeds:
        Per-item seeds as in :func:`scoreinv.posterior` (None: ``seed`` alone).
    device:
        Where the coarse reconstruction runs (default: ``y``'s device).

    Returns
    -------
    (torch.Tensor, str)
        Images (B, 1, N, N) on ``y``'s device, and the coarse prior's registered name.
    """
    from scoreinv.checkpoint import default_prior_for, load_model
    from scoreinv.reconstruct import posterior

    if "coarse-view" not in operator.capabilities:
        raise ValueError(f"start_estimate='coarse' needs an operator with a coarse view (RadonOp, FanBeamOp), "
                         f"not {operator.name}")
    size = int(operator.in_shape[-1])
    coarse_size = int(settings.coarse_size)
    if coarse_size >= size:
        raise ValueError(f"coarse_size ({coarse_size}) must be smaller than the image ({size}×{size})")
    ratio = size / coarse_size
    fine_noise = float(operator.noise_std) / ratio ** 1.5
    noise_free = operator.coarsened(coarse_size)
    prior = default_prior_for(noise_free)
    model = load_model(prior, device=device if device is not None else y.device)
    images = []
    for index in range(y.shape[0]):
        coarse_y = operator.coarse_measurement(y[index:index + 1], noise_free)
        peak = float(coarse_y.abs().max())
        coarse = noise_free.with_options(noise_std=math.hypot(fine_noise, float(settings.coarse_noise) * peak))
        seeds = None if item_seeds is None else [int(item_seeds[index])]
        result = posterior(coarse_y, coarse, model, seed=settings.seed, item_seeds=seeds, device=device,
                           progress=False)
        images.append(result.mean.to(y.device))
    coarse_images = torch.cat(images)
    return F.interpolate(coarse_images, size=(size, size), mode="bicubic", align_corners=False), prior
