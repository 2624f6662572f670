"""Classical CT reconstructions: the baselines scoreinv is measured against.

* FBP: ``RadonOp.pinv`` (ramp-filtered back-projection in torch).
* :func:`sirt`: ASTRA's SIRT with the same projector and geometry as the CT operator (its
  ``projection_geometry``: parallel or fan beam, any angles; CPU algorithm ``SIRT``, or
  ``SIRT_CUDA`` on a GPU), non-negativity constraint.
* :func:`tv_reconstruction`: total-variation regularised least squares,

      min_{x ≥ 0}  ½ ‖A x − y‖² + λ TV(x),   TV(x) = Σ_pixels ‖∇x‖₂ (isotropic),

  solved by the primal–dual hybrid gradient method of Chambolle & Pock (2011) in torch,
  batched, on the input's device; step sizes τ = σ = 1 / L with L = √(‖A‖² + 8) ≥ ‖[A; ∇]‖.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from scoreinv.operators import LinearOperator


def sirt(operator: LinearOperator, y: torch.Tensor, iterations: int = 300,
         use_cuda: bool | None = None) -> torch.Tensor:
    """ASTRA SIRT of sinograms y (B, 1, n_views, n_detectors) -> (B, 1, N, N), x ≥ 0.

    ``operator`` is a CT operator with a ``projection_geometry`` (:class:`RadonOp`, fan beam);
    one without a size takes it from ``y``. ``use_cuda`` defaults to True when y is on a CUDA
    device (ASTRA's ``SIRT_CUDA``).
    """
    import astra

    if not hasattr(type(operator), "projection_geometry"):
        raise ValueError(f"SIRT needs a CT operator with a projection geometry (such as RadonOp), "
                         f"got {type(operator).__name__}")
    if isinstance(y, torch.Tensor) and y.dim() == 4 and not operator.is_sized:
        operator = operator.bind(measurement_shape=tuple(y.shape[1:]))
    if tuple(y.shape[1:]) != tuple(operator.out_shape):
        raise ValueError(f"sinograms must be (B, *{tuple(operator.out_shape)}), got {tuple(y.shape)}")
    use_cuda = y.is_cuda if use_cuda is None else use_cuda
    geometry = operator.projection_geometry
    volume, projection = geometry.astra_geometries()
    projector = None if use_cuda else astra.create_projector(geometry.projector, projection, volume)
    results = []
    try:
        for sinogram in y.detach().cpu().double().numpy():
            sinogram_id = astra.data2d.create("-sino", projection, sinogram[0])
            volume_id = astra.data2d.create("-vol", volume, 0.0)
            config = astra.astra_dict("SIRT_CUDA" if use_cuda else "SIRT")
            config["ProjectionDataId"] = sinogram_id
            config["ReconstructionDataId"] = volume_id
            config["option"] = {"MinConstraint": 0.0}
            if projector is not None:
                config["ProjectorId"] = projector
            algorithm = astra.algorithm.create(config)
            try:
                astra.algorithm.run(algorithm, iterations)
                results.append(astra.data2d.get(volume_id).copy())
            finally:
                astra.algorithm.delete(algorithm)
                astra.data2d.delete([sinogram_id, volume_id])
    finally:
        if projector is not None:
            astra.projector.delete(projector)
    return torch.from_numpy(np.stack(results)[:, None]).to(device=y.device, dtype=y.dtype)


def _gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences with Neumann boundary: (B, C, H, W) -> (B, C, 2, H, W)."""
    dy = torch.zeros_like(x)
    dx = torch.zeros_like(x)
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return torch.stack([dy, dx], dim=2)


def _divergence(field: torch.Tensor) -> torch.Tensor:
    """The negative adjoint of :func:`_gradient`: ⟨∇x, p⟩ = −⟨x, div p⟩."""
    py, px = field[:, :, 0], field[:, :, 1]
    div = torch.zeros_like(py)
    div[..., :-1, :] += py[..., :-1, :]
    div[..., 1:, :] -= py[..., :-1, :]
    div[..., :, :-1] += px[..., :, :-1]
    div[..., :, 1:] -= px[..., :, :-1]
    return div


def tv_reconstruction(
    operator: LinearOperator,
    y: torch.Tensor,
    weight: float = 0.02,
    iterations: int = 300,
    x0: torch.Tensor | None = None,
) -> torch.Tensor:
    """TV-regularised reconstruction by Chambolle–Pock PDHG; (B, *out_shape) -> (B, *in_shape).

    Parameters
    ----------
    operator:
        Any linear operator (adjoint and power-method norm are used).
    y:
        Measurements.
    weight:
        λ, the TV weight, in the units of ½‖Ax − y‖² (sinogram units for CT).
    iterations:
        PDHG iterations.
    x0:
        Starting image (default 0).
    """
    if weight < 0 or iterations < 1:
        raise ValueError("weight must be >= 0 and iterations >= 1")
    with torch.no_grad():
        norm_a = operator.norm(iterations=30, generator=torch.Generator().manual_seed(0))
        step = 1.0 / math.sqrt(norm_a**2 + 8.0)
        x = torch.zeros((y.shape[0], *operator.in_shape), device=y.device, dtype=y.dtype) if x0 is None else x0.clone()
        x_bar = x.clone()
        dual_data = torch.zeros_like(y)
        dual_tv = torch.zeros((*x.shape[:2], 2, *x.shape[2:]), device=y.device, dtype=y.dtype)
        for _ in range(iterations):
            dual_data = (dual_data + step * (operator(x_bar) - y)) / (1 + step)
            dual_tv = dual_tv + step * _gradient(x_bar)
            magnitude = dual_tv.pow(2).sum(dim=2, keepdim=True).sqrt()
            dual_tv = dual_tv / torch.clamp(magnitude / max(weight, 1e-12), min=1.0)
            x_new = (x - step * (operator.adjoint(dual_data) - _divergence(dual_tv))).clamp_min(0)
            x_bar = 2 * x_new - x
            x = x_new
    return x
