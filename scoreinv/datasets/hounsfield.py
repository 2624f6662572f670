"""The package's one CT intensity convention: Hounsfield units ↔ image values in [0, 1].

CT images in scoreinv are ``(B, 1, N, N)`` float32 in [0, 1]. For CT the value is the
Hounsfield unit (HU) mapped linearly from the window ``HU_WINDOW = (-1000, 2000)``:

.. math::

    x = \\frac{\\mathrm{HU} - (-1000)}{2000 - (-1000)} = \\frac{\\mathrm{HU} + 1000}{3000},
    \\qquad \\mathrm{HU} = 3000\\,x - 1000,

clipped to [0, 1]. Why this window:

* Its lower end is air (−1000 HU, where the linear attenuation coefficient μ is zero), so
  the image value is *proportional to μ*: x = μ / (3 μ_water). A sinogram of these images is
  then a true line integral of attenuation (up to one scale factor), as the Radon operator
  assumes, and the empty field of view is exactly 0.
* Its upper end, +2000 HU, keeps every tissue unclipped: lung, fat, soft tissue, cancellous
  bone and dense cortical bone (up to about +1900 HU) all map inside (0, 1). Metal and
  contrast-filled vessels above +2000 HU clip to 1.
* The generated phantoms the bundled CT prior was trained on already sit on it: their lung
  (0.05), soft tissue (0.35) and bone (0.85–0.95) levels are −850, +50 and +1550 to +1850
  HU under this window (see docs/datasets.md for every level).

The price is soft-tissue contrast: 1 HU is 1/3000 of the range, so fat (−100 HU, 0.300)
and muscle (+45 HU, 0.348) differ by 0.05. That is the contrast the measured sinogram has
too; a display window for soft tissue is a matter of showing the image, not of storing it.

``TISSUE_HU`` lists the reference HU of the tissues the anatomy generator draws, each as
``(typical, low, high)``: the typical value and the range it takes across patients and
scanners (unenhanced, 120 kVp).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

HU_WINDOW: tuple[float, float] = (-1000.0, 2000.0)
"""The HU mapped to 0 and to 1 (air, and above dense cortical bone)."""

TISSUE_HU: dict[str, tuple[float, float, float]] = {
    "air": (-1000.0, -1000.0, -1000.0),
    "lung": (-850.0, -900.0, -700.0),          # aerated parenchyma; denser (dependent) posteriorly
    "fat": (-100.0, -120.0, -80.0),
    "water": (0.0, -5.0, 5.0),
    "csf": (5.0, 0.0, 15.0),                   # cerebrospinal fluid, bile, simple cysts
    "white_matter": (28.0, 20.0, 35.0),
    "grey_matter": (40.0, 35.0, 45.0),
    "soft_tissue": (40.0, 20.0, 60.0),         # generic soft tissue
    "blood": (45.0, 35.0, 55.0),               # unenhanced; +150 to +300 with iodinated contrast
    "muscle": (45.0, 35.0, 55.0),
    "kidney": (30.0, 25.0, 40.0),
    "spleen": (45.0, 40.0, 50.0),
    "liver": (60.0, 50.0, 70.0),
    "cancellous_bone": (300.0, 200.0, 500.0),  # trabecular bone with marrow, averaged over a voxel
    "cortical_bone": (1500.0, 1000.0, 1900.0),
    "marrow": (-60.0, -110.0, 20.0),           # fatty (yellow) marrow of long-bone shafts
    "thyroid": (100.0, 70.0, 130.0),           # iodine-rich gland, unenhanced
}
"""Reference Hounsfield units per tissue: ``name -> (typical, low, high)``."""


def _window(window: tuple[float, float] | None) -> tuple[float, float]:
    low, high = HU_WINDOW if window is None else (float(window[0]), float(window[1]))
    if not np.isfinite(low) or not np.isfinite(high) or not low < high:
        raise ValueError(f"a HU window must be (low, high) with low < high, got {window}")
    return low, high


def hu_to_unit(hu: Any, window: tuple[float, float] | None = None, clip: bool = True) -> Any:
    """Map Hounsfield units to image values: ``(hu - low) / (high - low)``, clipped to [0, 1].

    Parameters
    ----------
    hu : torch.Tensor, numpy.ndarray or float
        Values in HU.
    window : (float, float), optional
        ``(low, high)``, the HU mapped to 0 and 1; the package's ``HU_WINDOW`` by default.
    clip : bool, optional
        Clip the result to [0, 1] (default). Without clipping the map is exactly linear.

    Returns
    -------
    torch.Tensor, numpy.ndarray or float
        The same kind as ``hu``; tensors and arrays keep a floating dtype (float32 for
        integer input).
    """
    low, high = _window(window)
    if isinstance(hu, torch.Tensor):
        values = hu if hu.is_floating_point() else hu.float()
        unit = (values - low) / (high - low)
        return unit.clamp(0, 1) if clip else unit
    if isinstance(hu, np.ndarray):
        values = hu if np.issubdtype(hu.dtype, np.floating) else hu.astype(np.float32)
        unit = (values - low) / (high - low)
        return np.clip(unit, 0, 1) if clip else unit
    unit = (float(hu) - low) / (high - low)
    return min(max(unit, 0.0), 1.0) if clip else unit


def unit_to_hu(unit: Any, window: tuple[float, float] | None = None) -> Any:
    """Map image values back to Hounsfield units: ``low + unit · (high - low)``.

    Parameters
    ----------
    unit : torch.Tensor, numpy.ndarray or float
        Image values (in [0, 1] for images made under the window).
    window : (float, float), optional
        ``(low, high)``; the package's ``HU_WINDOW`` by default.

    Returns
    -------
    torch.Tensor, numpy.ndarray or float
        The same kind as ``unit``. Values that were clipped (below ``low`` or above ``high``
        in HU) cannot be recovered: they come back as ``low`` or ``high``.
    """
    low, high = _window(window)
    if isinstance(unit, torch.Tensor):
        return low + (unit if unit.is_floating_point() else unit.float()) * (high - low)
    if isinstance(unit, np.ndarray):
        values = unit if np.issubdtype(unit.dtype, np.floating) else unit.astype(np.float32)
        return low + values * (high - low)
    return low + float(unit) * (high - low)


def tissue_unit(name: str, window: tuple[float, float] | None = None) -> float:
    """The image value of a tissue's typical HU under the window (``TISSUE_HU[name][0]``)."""
    if name not in TISSUE_HU:
        raise ValueError(f"unknown tissue {name!r}; choose one of {sorted(TISSUE_HU)}")
    return float(hu_to_unit(TISSUE_HU[name][0], window))
