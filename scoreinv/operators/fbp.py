"""Filtered back-projection (FBP) of parallel-beam sinograms: ramp filters, windows, the batched FBP.

The ramp filter is the band-limited kernel sampled at the detector spacing τ (Kak & Slaney),
applied by FFT with zero padding, windowed by one of ``FILTERS``; the filtered rows are
back-projected with the stored transpose of the system matrix
(:mod:`~scoreinv.operators.system_matrix`) and weighted by the angular quadrature weight of
each view (:func:`view_weights`: π/V for V angles spread uniformly over [0, π)).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from .base import LinearOperator, validate
from .system_matrix import Geometry, SystemMatrix, apply_matrix, as_angles, check_projector, system_matrix

#: The FBP windows, by name.
FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")
_FILTER_ALIASES = {"ramp": "ram-lak", "ramlak": "ram-lak", "ram_lak": "ram-lak",
                   "shepp_logan": "shepp-logan", "shepplogan": "shepp-logan", "hanning": "hann"}


def normalise_filter(name: str) -> str:
    """The canonical name of an FBP window (``"ramp"`` -> ``"ram-lak"``, ...); ValueError if unknown."""
    key = str(name).lower()
    key = _FILTER_ALIASES.get(key, key)
    if key not in FILTERS:
        raise ValueError(f"unknown FBP filter {name!r}; expected one of {', '.join(FILTERS)}")
    return key


_filter_cache: dict[tuple[int, str], torch.Tensor] = {}


def ramp_filter(n_detectors: int, filter: str = "ram-lak") -> tuple[int, torch.Tensor]:
    """The frequency response of an FBP filter and the padded length it applies to.

    Built from the band-limited ramp kernel sampled at unit spacing (Kak & Slaney):
    h(0) = 1/4, h(n) = −1/(π n)² for odd n, 0 for even n ≠ 0, whose transform has no
    zero-frequency hole; then multiplied by the window (f = frequency in cycles per
    detector, 0…½): ram-lak 1, shepp-logan sinc(f), cosine cos(π f), hann (1 + cos(2π f))/2.

    Parameters
    ----------
    n_detectors:
        D, the sinogram's width (detector cells).
    filter:
        The window, one of ``FILTERS`` (or an alias such as ``"ramp"``).

    Returns
    -------
    padded : int
        P, a power of two ≥ max(64, 2·D), so that the convolution does not wrap around.
    response : torch.Tensor
        float64, shape (P/2 + 1,), the response at the ``rfft`` frequencies of length P.
    """
    name = normalise_filter(filter)
    padded = max(64, 1 << math.ceil(math.log2(2 * n_detectors)))
    key = (padded, name)
    response = _filter_cache.get(key)
    if response is None:
        n = np.concatenate([np.arange(0, padded // 2 + 1), np.arange(-padded // 2 + 1, 0)])
        h = np.zeros(padded)
        h[0] = 0.25
        odd = n % 2 == 1
        h[odd] = -1.0 / (np.pi * n[odd]) ** 2
        response_np = np.real(np.fft.rfft(h))
        f = np.arange(padded // 2 + 1) / padded
        if name == "shepp-logan":
            response_np = response_np * np.sinc(f)
        elif name == "cosine":
            response_np = response_np * np.cos(np.pi * f)
        elif name == "hann":
            response_np = response_np * 0.5 * (1.0 + np.cos(2 * np.pi * f))
        response = torch.from_numpy(response_np)
        _filter_cache[key] = response
    return padded, response


def filter_sinogram(sino: torch.Tensor, filter: str) -> torch.Tensor:
    """Ramp-filter each row (along the detectors) with zero padding; (..., D) -> (..., D)."""
    d = sino.shape[-1]
    padded, response = ramp_filter(d, filter)
    work = sino if sino.dtype in (torch.float32, torch.float64) else sino.float()
    spectrum = torch.fft.rfft(work, n=padded, dim=-1)
    filtered = torch.fft.irfft(spectrum * response.to(device=sino.device, dtype=work.dtype),
                               n=padded, dim=-1)
    return filtered[..., :d]


def view_weights(angles) -> float | torch.Tensor:
    """The quadrature weight Δθ of each view in the back-projection integral ∫₀^π … dθ.

    Equally spaced angles with step d: the number min(d, π/V) (π/V over [0, π); d for a limited
    arc; half of it over [0, 2π), where every line is measured twice). Otherwise per view, float64
    (V,): half the gap to each neighbour (the arc's end views: their one gap), scaled down the
    same way when the angles span more than π.
    """
    theta = np.asarray(angles, dtype=np.float64)
    count = theta.size
    if count == 1:
        return math.pi
    order = np.argsort(theta)
    gaps = np.diff(theta[order])
    if np.allclose(gaps, gaps[0], rtol=1e-9, atol=1e-12) and gaps[0] > 0:
        step = float(gaps[0])
        return math.pi / count if count * step >= math.pi * (1 - 1e-9) else step
    padded = np.concatenate([gaps[:1], gaps, gaps[-1:]])
    sorted_weights = (padded[:-1] + padded[1:]) / 2
    total = sorted_weights.sum()
    if total > math.pi:
        sorted_weights = sorted_weights * (math.pi / total)
    weights = np.empty(count)
    weights[order] = sorted_weights
    return torch.from_numpy(weights)


def filtered_back_projection(sino: torch.Tensor, matrix: SystemMatrix, geometry: Geometry,
                             filter: str) -> torch.Tensor:
    """FBP of validated sinograms with a given system matrix.

    Parameters
    ----------
    sino:
        ``(B, 1, V, D)``, V = ``geometry.n_angles``, D = ``geometry.n_detectors``, pixel units.
    matrix:
        The system matrix of ``geometry``.
    geometry:
        The projection geometry (N = ``geometry.image_size``).
    filter:
        A canonical window name (:func:`normalise_filter`).

    Returns
    -------
    torch.Tensor
        ``(B, 1, N, N)`` in the sinogram's dtype, on its device.
    """
    # The ramp kernel at spacing τ is the unit one over τ, and Aᵀ, whose rays lie τ apart, back-projects
    # 1/τ times the interpolated row: the two factors cancel, so no τ appears here.
    filtered = filter_sinogram(sino, filter)
    weights = view_weights(geometry.angles)
    if not isinstance(weights, float):
        filtered = filtered * weights.to(device=filtered.device, dtype=filtered.dtype)[:, None]
    n = geometry.image_size
    image = apply_matrix(matrix, filtered, (1, n, n), transpose=True)
    if isinstance(weights, float):
        image = image * weights
    return image.to(sino.dtype)


def fbp(sinogram: torch.Tensor, op_or_angles, *, image_size: int | None = None,
        filter: str | None = None, projector: str = "linear",
        cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """Filtered back-projection of a parallel-beam sinogram ``(B, 1, V, D)`` -> ``(B, 1, N, N)``.

    Each detector row is ramp-filtered by FFT with zero padding to a power of two
    ≥ 2D (no wrap-around), windowed, back-projected with the stored transpose of the
    system matrix and scaled by π/V. Batched, on the sinogram's device; differentiable.

    Parameters
    ----------
    sinogram:
        ``(B, 1, V, D)``, line integrals in pixel units.
    op_or_angles:
        A :class:`~scoreinv.operators.RadonOp` (the sinogram then has its ``n_views``
        measured views or its ``full_views``, and uses that geometry; an operator without
        an image size takes it from D) or the V angles in radians.
    image_size:
        N, required with angles (D is then the sinogram's width); ignored with an operator.
    filter:
        The window (``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``, ``"hann"``); None: the
        operator's ``fbp_filter``, or ram-lak with angles.
    projector, cache_dir:
        With angles: the ASTRA CPU projector and the disk cache of the system matrix.

    Returns
    -------
    torch.Tensor
        ``(B, 1, N, N)``, in the sinogram's dtype.
    """
    if isinstance(op_or_angles, LinearOperator):
        from .radon import RadonOp  # the operator module builds on this one

        if not isinstance(op_or_angles, RadonOp):
            raise ValueError(f"fbp expects a RadonOp or angles, got the operator {op_or_angles.name}")
        op = op_or_angles
        if isinstance(sinogram, torch.Tensor) and sinogram.dim() == 4 and sinogram.shape[2] == op.full_views:
            return op.inverse_transform(sinogram, filter=filter)
        return op.pinv(sinogram, filter=filter)
    angles = as_angles(op_or_angles)
    if image_size is None:
        raise ValueError("fbp: image_size is required when angles are given")
    if not isinstance(sinogram, torch.Tensor) or sinogram.dim() != 4:
        raise ValueError(f"fbp expects a sinogram of shape (B, 1, {len(angles)}, D), got "
                         f"{tuple(getattr(sinogram, 'shape', ()))}")
    geometry = Geometry(int(image_size), int(sinogram.shape[-1]), angles, check_projector(projector))
    sinogram = validate(sinogram, (1, geometry.n_angles, geometry.n_detectors), "fbp")
    return filtered_back_projection(sinogram, system_matrix(geometry, cache_dir), geometry,
                                    normalise_filter(filter if filter is not None else "ram-lak"))
