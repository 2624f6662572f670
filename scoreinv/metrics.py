"""Image-quality metrics with the data range stated (scikit-image's implementations).

PSNR = 10 log₁₀(data_range² / MSE) in dB; SSIM with scikit-image's defaults (7×7
uniform window) and the same ``data_range``. Both are per image: inputs ``(B, C, H, W)``
or ``(C, H, W)`` (numpy or torch), results numpy arrays of shape (B,).
The package's images live in [0, 1], so ``data_range = 1`` is the default; pass the range
of your data otherwise. Nothing else from the package is imported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _batch(images: Any) -> np.ndarray:
    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    array = array.astype(np.float64)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W) or (C, H, W), got shape {array.shape}")
    return array


def _pair(estimate: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    estimate, reference = _batch(estimate), _batch(reference)
    if estimate.shape != reference.shape:
        raise ValueError(f"shapes differ: estimate {estimate.shape}, reference {reference.shape}")
    return estimate, reference


def psnr(estimate: Any, reference: Any, data_range: float = 1.0) -> np.ndarray:
    """Per-image PSNR in dB, shape (B,)."""
    estimate, reference = _pair(estimate, reference)
    return np.array([peak_signal_noise_ratio(r, e, data_range=data_range) for e, r in zip(estimate, reference)])


def ssim(estimate: Any, reference: Any, data_range: float = 1.0) -> np.ndarray:
    """Per-image SSIM (channels averaged), shape (B,)."""
    estimate, reference = _pair(estimate, reference)
    return np.array([
        structural_similarity(r, e, data_range=data_range, channel_axis=0) for e, r in zip(estimate, reference)
    ])
