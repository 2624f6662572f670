"""Sparse-view parallel-beam CT: the operator A = Λ T (``RadonOp``).

Geometry (see docs/operators.md and :mod:`~scoreinv.operators.system_matrix`): N×N unit
pixels rotated about the image's geometric centre; ``n_detectors`` unit cells centred on
the axis (default ceil(N·√2), enough to see the whole square at every angle); measured
angles θ_k = k·π/n_views; the full-view transform T has ``full_views``, a multiple of
n_views, θ_j = j·π/full_views, and the measured views are exactly its rows
``measured_views = k·(full_views/n_views)``. A sinogram entry is a line integral in pixel
units (a disk of radius r and value 1 gives 2√(r² − s²)).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

from .base import LinearOperator, Shape, SubsampledTransformOp, validate
from .fbp import filtered_back_projection, normalise_filter
from .noise import NoiseModel, make_noise, noise_from_config
from .system_matrix import Geometry, SystemMatrix, apply_matrix, check_projector, system_matrix


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"RadonOp: {name} must be a positive integer, got {value!r}")
    return int(value)


def default_full_views(n_views: int) -> int:
    """The smallest multiple of n_views that is ≥ max(180, n_views)."""
    n_views = _positive_int(n_views, "n_views")
    return n_views * max(1, math.ceil(180 / n_views))


def default_detectors(image_size: int) -> int:
    """D = ceil(N·√2): the detector cells that see an N×N image whole at every angle."""
    return math.ceil(image_size * math.sqrt(2))


def image_size_for_detectors(n_detectors: int) -> int:
    """The N with ``default_detectors(N) == n_detectors``.

    ceil(N·√2) is strictly increasing in N, so there is at most one; some D (93, say:
    N = 65 gives 92 and 66 gives 94) have none, and are a ValueError.
    """
    d = int(n_detectors)
    guess = int(d / math.sqrt(2))
    for n in (guess - 1, guess, guess + 1):
        if n >= 1 and default_detectors(n) == d:
            return n
    below = guess + 1
    while below >= 1 and default_detectors(below) >= d:
        below -= 1
    near = (f" ({below}×{below} images give {default_detectors(below)}, {below + 1}×{below + 1} give "
            f"{default_detectors(below + 1)})") if below >= 1 else ""
    raise ValueError(f"a sinogram with {d} detectors fits no N×N image with the default ceil(N·√2) "
                     f"detectors{near}: pass image_size= (and n_detectors=) to RadonOp")


class RadonOp(SubsampledTransformOp):
    """Sparse-view parallel-beam CT: A = Λ T, T the ``full_views`` Radon transform,
    Λ the ``n_views`` measured views.

    Parameters
    ----------
    n_views:
        Measured views, at θ_k = k·π/n_views (k = 0…n_views−1).
    image_size:
        N: images are (B, 1, N, N), unit pixels. None: the operator takes its size from the
        sinogram or the model (:meth:`bind`, or the first data it is called on: N is the one
        with ceil(N·√2) = D).
    n_detectors:
        D, unit-width detector cells centred on the axis; default ceil(N·√2).
    full_views:
        Views of the full transform T (``transform``, ``inverse_transform``); a
        multiple of n_views; default the smallest multiple ≥ max(180, n_views).
    projector:
        ASTRA CPU projector: ``"linear"`` (default; Joseph-style interpolation),
        ``"line"`` (intersection lengths) or ``"strip"`` (area of the strip).
    noise_std, noise:
        Gaussian noise of that std on the sinogram, or any noise model
        (e.g. :class:`PoissonNoise`); at most one of the two.
    cache_dir:
        If given, the system matrices are also stored there (one file per geometry,
        written atomically) and read back by later processes.
    fbp_filter:
        The FBP window of ``pinv``, ``inverse_transform`` and ``inverse_transform_measured``
        (the approximate T⁻¹): ``"ram-lak"`` (default), ``"shepp-logan"``, ``"cosine"`` or
        ``"hann"``; a smoother window passes less measurement noise into the image.
        ``op.with_options(fbp_filter="hann")`` is the same geometry with another window.

    Sinograms are (B, 1, n_views, D) (measured) or (B, 1, full_views, D) (full), in
    pixel units. ``pinv`` is the FBP from the measured views, ``inverse_transform``
    the FBP from the full views.
    """

    modality = "ct"

    def default_settings(self, method: str | None = None) -> dict:
        """Decomposed sampling with a fixed share ζ of fresh noise per step, the mean of 2 samples of
        50 steps (100 score evaluations). Noise-free: ζ = 0.85, and the steps below σ_t = 0.1 and
        the last one project onto {A x = y} (300 CG iterations, ``final_iterations`` /
        ``projection_noise_level``). Noisy: ζ = 0.9 and damping weight w = 0.5. Another
        ``method`` gets the consistency settings.

        Noise-free, on 8 validation anatomy phantoms (``phantoms("anatomy", 8, 64,
        seed=5_000_000)``, ct-anatomy): 40.7 dB for the former default (one sample, K = 7
        throughout), 42.0 for two such samples, 43.3 for two with K = 100 throughout (which
        amplifies rounding), 43.6 for this default; σ_p = 0.03 and 0.3 gave 43.6 too
        (docs/reconstruct.md).

        Chosen on 8 validation phantoms (``phantoms("mixed", 8, 64, seed=5_000_000)``, 23 views,
        bundled prior; docs/reconstruct.md). Noise-free, 50 steps: 45.0 dB with ζ = 0.85 against
        43.0 with DDIM's η = 1. With 1% noise: 32.7 dB / SSIM 0.962 against 31.0 / 0.942 for the
        former default (4 × 25 steps, η = 1, w = 3): re-noising most of each consistent estimate
        forgets the measurement noise its consistency step fitted, so a weaker damping (closer
        data fit) pays. ζ = 1 with w = 0.3 reached 33.0 dB but its samples spread 35% off the
        exact posterior std on the Gaussian check (ζ = 0.9, w = 0.5: 25%), so it is not the
        default.
        """
        if method in (None, "decomposed"):
            if self.noise_std > 0:
                return {"method": "decomposed", "steps": 50, "num_samples": 2, "zeta": 0.9, "damping_weight": 0.5}
            return {"method": "decomposed", "steps": 50, "num_samples": 2, "zeta": 0.85, "final_iterations": 300,
                    "projection_noise_level": 0.1}
        if self.noise_std > 0:
            return {"method": "consistency", "steps": 200, "snr": 0.246, "weight": 1.0,
                    "final_iterations": 0, "final_damping": 0.0,
                    "step_filter": "shepp-logan", "final_filter": "hann", "noise_weight": 0.25}
        return {"method": "consistency", "steps": 500, "snr": 0.246, "weight": 1.0,
                "final_iterations": 20, "final_damping": 0.0}

    def minimum_steps(self, method: str) -> tuple[int, str] | None:
        """Replacement needs 100 steps on a Radon transform: its step is x + T⁻¹Λᵀ(y − A x) with an
        FBP for T⁻¹, exact only for masks and colour. On the bundled prior (23 views, 4 held-out
        phantoms, noise-free) it gave 6.2 dB at 25 steps and 28.8 at 50, below SIRT-300's 29.7,
        and 31.9 at 100."""
        if method == "replacement":
            return 100, ("its FBP-based replacement step is inexact for a Radon transform: fewer fell below "
                         "SIRT on the bundled CT prior; method='decomposed' works from a few steps")
        return None

    def __init__(self, n_views: int, image_size: int | None = None, *, n_detectors: int | None = None,
                 full_views: int | None = None, projector: str = "linear", noise_std: float = 0.0,
                 noise: NoiseModel | None = None, cache_dir: str | os.PathLike | None = None,
                 fbp_filter: str = "ram-lak") -> None:
        n_views = _positive_int(n_views, "n_views")
        image_size = None if image_size is None else _positive_int(image_size, "image_size")
        detectors_given = None if n_detectors is None else _positive_int(n_detectors, "n_detectors")
        views_given = None if full_views is None else _positive_int(full_views, "full_views")
        full_views = default_full_views(n_views) if views_given is None else views_given
        if full_views % n_views:
            raise ValueError(f"RadonOp: full_views ({full_views}) must be a multiple of n_views "
                             f"({n_views}) so that the measured views are a subset of the full ones")
        self.projector = check_projector(projector)
        self.fbp_filter = normalise_filter(fbp_filter)
        self.n_views = n_views
        self.image_size = image_size
        self.full_views = full_views
        self.cache_dir = cache_dir
        self._given = {"n_detectors": detectors_given, "full_views": views_given}
        self.full_angles = torch.arange(full_views, dtype=torch.float64) * (math.pi / full_views)
        self.measured_views = torch.arange(n_views) * (full_views // n_views)
        self.measured_angles = self.full_angles[self.measured_views]
        self._matrices: dict[str, SystemMatrix] = {}
        noise = make_noise(noise_std, noise, "RadonOp")
        if image_size is None:
            self.n_detectors = detectors_given
            super().__init__(None, None, noise=noise)
            return
        n_detectors = default_detectors(image_size) if detectors_given is None else detectors_given
        self.n_detectors = n_detectors
        super().__init__((1, image_size, image_size), (1, n_views, n_detectors), noise=noise)
        self.full_shape = (1, full_views, n_detectors)
        mask = torch.zeros(self.full_shape)
        mask[:, self.measured_views] = 1.0
        self.mask = mask
        self._full_geometry = Geometry(image_size, n_detectors, tuple(self.full_angles.tolist()), self.projector)
        self._measured_geometry = Geometry(image_size, n_detectors, tuple(self.measured_angles.tolist()),
                                           self.projector)

    # --- sizes and options ------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        return {"n_views": self.n_views, "image_size": self.image_size,
                "n_detectors": self._given["n_detectors"], "full_views": self._given["full_views"],
                "projector": self.projector, "noise_std": 0.0, "noise": self.noise,
                "cache_dir": self.cache_dir, "fbp_filter": self.fbp_filter}

    def _share_from(self, other: LinearOperator, changes: dict[str, Any]) -> None:
        # same geometry (another window or noise model): the same system matrices, built once
        if (self.is_sized and other.is_sized and self._full_geometry == other._full_geometry
                and self._measured_geometry == other._measured_geometry):
            self._matrices = other._matrices

    def _image_size_of(self, image_shape: Shape) -> int:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or shape[0] != 1 or shape[1] != shape[2]:
            raise ValueError(f"RadonOp works on images of shape (1, N, N), not {shape}")
        return shape[1]

    def _detectors_of(self, measurement_shape: Shape) -> int:
        shape = tuple(int(s) for s in measurement_shape)
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f"RadonOp takes sinograms of shape (1, {self.n_views}, D), not {shape}")
        if shape[1] != self.n_views:
            raise ValueError(f"the sinogram has {shape[1]} views, the RadonOp measures {self.n_views} "
                             f"(sinograms of shape (1, {self.n_views}, D))")
        return shape[2]

    def bind(self, *, image_shape: Shape | None = None, measurement_shape: Shape | None = None) -> RadonOp:
        """This operator for (1, N, N) images and (1, n_views, D) sinograms (see the base class).

        Without ``image_size`` the size comes from the images, or from the sinogram's D: the
        N with ceil(N·√2) = D (with ``n_detectors`` given explicitly only the images can say).
        A ValueError names both sizes when they disagree (with each other or the operator).
        """
        n_image = None if image_shape is None else self._image_size_of(image_shape)
        d = None if measurement_shape is None else self._detectors_of(measurement_shape)
        if self.is_sized:
            size = self.image_size
            if n_image is not None and n_image != size:
                raise ValueError(f"RadonOp was built for {size}×{size} images, the model works on "
                                 f"{n_image}×{n_image}")
            if d is not None and d != self.n_detectors:
                fits = ""
                if self._given["n_detectors"] is None:
                    try:
                        n = image_size_for_detectors(d)
                        fits = f", which fit {n}×{n} images"
                    except ValueError:
                        pass
                raise ValueError(f"RadonOp was built for {size}×{size} images and produces measurements of "
                                 f"shape {tuple(self.out_shape)}, not {tuple(measurement_shape)}: the sinogram "
                                 f"has {d} detectors{fits}")
            return self
        explicit = self._given["n_detectors"]
        n_sinogram = None
        if d is not None:
            if explicit is not None:
                if d != explicit:
                    raise ValueError(f"the sinogram has {d} detectors, the RadonOp {explicit} (n_detectors)")
            else:
                n_sinogram = image_size_for_detectors(d)
        if n_image is not None and n_sinogram is not None and n_image != n_sinogram:
            raise ValueError(f"the sinogram's {d} detectors fit {n_sinogram}×{n_sinogram} images, the "
                             f"model works on {n_image}×{n_image}")
        size = n_image if n_image is not None else n_sinogram
        if size is None:
            if d is not None:
                raise ValueError(f"a RadonOp with n_detectors={explicit} cannot tell the image size from "
                                 "the sinogram: pass image_size= or the image shape")
            return self
        return self._bound_copy(size, image_size=size)

    def _bind_full(self, shape: Shape) -> RadonOp:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or shape[0] != 1 or shape[1] != self.full_views:
            raise ValueError(f"RadonOp's full sinograms have shape (1, {self.full_views}, D), not {shape}")
        return self.bind(measurement_shape=(1, self.n_views, shape[2]))

    # --- system matrices (built on first use; the full one only if T is used) ---------------------
    def _matrix(self, which: str) -> SystemMatrix:
        matrix = self._matrices.get(which)
        if matrix is None:
            geometry = self._measured_geometry if which == "measured" else self._full_geometry
            matrix = system_matrix(geometry, self.cache_dir)
            self._matrices[which] = matrix
        return matrix

    def build(self, full: bool = False) -> RadonOp:
        """Build (or load) the system matrices now rather than on first use; returns self."""
        if not self.is_sized:
            raise self._unsized_error("system matrix")
        self._matrix("measured")
        if full:
            self._matrix("full")
        return self

    # --- the transform --------------------------------------------------------------------------------
    def _forward(self, x):
        return apply_matrix(self._matrix("measured"), x, self.out_shape, transpose=False)

    def _adjoint(self, y):
        return apply_matrix(self._matrix("measured"), y, self.in_shape, transpose=True)

    def _transform(self, x):
        return apply_matrix(self._matrix("full"), x, self.full_shape, transpose=False)

    def _transform_adjoint(self, z):
        return apply_matrix(self._matrix("full"), z, self.in_shape, transpose=True)

    def _window(self, filter: str | None) -> str:
        return self.fbp_filter if filter is None else normalise_filter(filter)

    def _inverse_transform(self, z, filter: str | None = None):
        return filtered_back_projection(z, self._matrix("full"), self._full_geometry, self._window(filter))

    def _inverse_transform_measured(self, r):
        # FBP is linear and sums views with weight π/(number of views): the full-view FBP of
        # a sinogram that is zero outside the measured views equals the measured-view FBP
        # scaled by n_views / full_views, at a fraction of the cost.
        return self._pinv(r) * (self.n_views / self.full_views)

    def _pinv(self, y, filter: str | None = None):
        return filtered_back_projection(y, self._matrix("measured"), self._measured_geometry,
                                        self._window(filter))

    def inverse_transform(self, z: torch.Tensor, filter: str | None = None) -> torch.Tensor:
        """FBP from the full views: ``(B, 1, full_views, D)`` -> ``(B, 1, N, N)``.

        ``filter`` overrides the operator's ``fbp_filter`` for this call."""
        op = self._taking(z, "full")
        return op._inverse_transform(validate(z, op.full_shape, "RadonOp.inverse_transform"), filter)

    def pinv(self, y: torch.Tensor, filter: str | None = None) -> torch.Tensor:
        """FBP from the measured views: ``(B, 1, n_views, D)`` -> ``(B, 1, N, N)``.

        ``filter`` overrides the operator's ``fbp_filter`` for this call."""
        op = self._taking(y, "measurement")
        return op._pinv(validate(y, op.out_shape, "RadonOp.pinv"), filter)

    def _subsample(self, z):
        return z[:, :, self.measured_views.to(z.device)]

    def _embed(self, y):
        z = y.new_zeros((y.shape[0], *self.full_shape))
        z[:, :, self.measured_views.to(y.device)] = y
        return z

    def __getstate__(self) -> dict:
        # Pickles (DataLoader workers, multiprocessing) carry the geometry, not the matrices:
        # the receiving process takes them from its memory cache, cache_dir, or rebuilds them.
        state = super().__getstate__()
        state["_matrices"] = {}
        return state

    # --- description ------------------------------------------------------------------------------
    def config(self) -> dict:
        return {"type": "RadonOp", "n_views": self.n_views, "image_size": self.image_size,
                "n_detectors": self.n_detectors, "full_views": self.full_views,
                "projector": self.projector, "fbp_filter": self.fbp_filter,
                "noise": None if self.noise is None else self.noise.config()}

    @classmethod
    def from_config(cls, config: dict) -> RadonOp:
        """Rebuild from :meth:`config` (configurations without ``fbp_filter`` get ram-lak)."""
        n_views, image_size = config["n_views"], config.get("image_size")
        n_detectors, full_views = config.get("n_detectors"), config.get("full_views")
        if image_size is not None and n_detectors == default_detectors(image_size):
            n_detectors = None  # the default: a rebuilt operator resized by with_options follows N
        if full_views == default_full_views(n_views):
            full_views = None
        return cls(n_views, image_size, n_detectors=n_detectors, full_views=full_views,
                   projector=config.get("projector", "linear"), noise=noise_from_config(config.get("noise")),
                   fbp_filter=config.get("fbp_filter", "ram-lak"))

    def __repr__(self) -> str:
        filter_part = "" if self.fbp_filter == "ram-lak" else f", fbp_filter={self.fbp_filter!r}"
        return (f"RadonOp(n_views={self.n_views}, image_size={self.image_size}, "
                f"n_detectors={self.n_detectors}, full_views={self.full_views}, "
                f"projector={self.projector!r}, noise={self.noise!r}{filter_part})")
