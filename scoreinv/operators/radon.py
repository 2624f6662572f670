"""Parallel-beam CT: the operator A = Λ T (``RadonOp``), sparse-view or limited-angle.

Geometry (see docs/operators.md and :mod:`~scoreinv.operators.system_matrix`): N×N unit
pixels rotated about the image's geometric centre; ``n_detectors`` cells of width
``detector_spacing`` τ (pixel units, default 1) centred on the axis (default ceil(N·√2/τ),
enough to see the whole square at every angle); measured angles θ_k = k·π/n_views, or any
array of angles in radians. With equally spaced views over [0, π) the full-view transform T
has ``full_views``, a multiple of n_views, θ_j = j·π/full_views, and the measured views are
exactly its rows ``measured_views = k·(full_views/n_views)``; other angle arrays (a limited
arc) have no T. A sinogram entry is a line integral in pixel units (a disk of radius r and
value 1 gives 2√(r² − s²)).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from pydantic import Field

from .base import CoarseViews, LinearOperator, Shape, SubsampledTransformOp, bind_sinograms, validate
from .fbp import filtered_back_projection, normalise_filter
from .noise import NoiseModel, make_noise, noise_from_config
from .registry import SinogramSpec, register_family
from .system_matrix import (Geometry, SystemMatrix, apply_matrix, as_angles, check_projector, system_matrix,
                            unmeasured_arc)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"RadonOp: {name} must be a positive integer, got {value!r}")
    return int(value)


def default_full_views(n_views: int) -> int:
    """The smallest multiple of n_views that is ≥ max(180, n_views)."""
    n_views = _positive_int(n_views, "n_views")
    return n_views * max(1, math.ceil(180 / n_views))


def default_detectors(image_size: int, spacing: float = 1.0) -> int:
    """D = ceil(N·√2 / τ): the detector cells of width τ that see an N×N image whole at every angle."""
    if spacing == 1.0:
        return math.ceil(image_size * math.sqrt(2))
    return math.ceil(image_size * math.sqrt(2) / spacing - 1e-9)


def image_size_for_detectors(n_detectors: int, spacing: float = 1.0) -> int:
    """The N with ``default_detectors(N, spacing) == n_detectors``.

    ceil(N·√2/τ) is increasing in N, so for τ ≤ √2 there is at most one; some D (93, say, at
    τ = 1: N = 65 gives 92 and 66 gives 94) have none, and are a ValueError.
    """
    d = int(n_detectors)
    guess = int(d * spacing / math.sqrt(2))
    for n in (guess - 1, guess, guess + 1):
        if n >= 1 and default_detectors(n, spacing) == d:
            return n
    below = guess + 1
    while below >= 1 and default_detectors(below, spacing) >= d:
        below -= 1
    near = (f" ({below}×{below} images give {default_detectors(below, spacing)}, {below + 1}×{below + 1} give "
            f"{default_detectors(below + 1, spacing)})") if below >= 1 else ""
    raise ValueError(f"a sinogram with {d} detectors fits no N×N image with the default ceil(N·√2/τ) "
                     f"detectors{near}: pass image_size= (and detectors=) to RadonOp")


def _even_views(angles: tuple[float, ...]) -> bool:
    """Whether the angles are θ_k = k·π/V, k = 0…V−1 (the views of a full-view transform)."""
    count = len(angles)
    return bool(np.allclose(np.asarray(angles), np.arange(count) * (math.pi / count), rtol=0, atol=1e-6))


class RadonOp(CoarseViews, SubsampledTransformOp):
    """Parallel-beam CT: A = Λ T, T the ``full_views`` Radon transform, Λ the ``n_views``
    measured views; or, for any other array of angles (a limited arc), A alone.

    Parameters
    ----------
    n_views:
        Measured views, at θ_k = k·π/n_views (k = 0…n_views−1). Give this or ``angles``.
    image_size:
        N: images are (B, 1, N, N), unit pixels. None: the operator takes its size from the
        sinogram or the model (:meth:`bind`, or the first data it is called on: N is the one
        with ceil(N·√2/τ) = D).
    angles:
        The measured angles in radians, in sinogram row order (a sequence, array or tensor),
        instead of ``n_views``. Equally spaced views over [0, π) (k·π/V) are the same operator as
        ``RadonOp(V)``; any other array (``np.linspace(0, np.pi / 2, 60, endpoint=False)``, a
        limited arc) has no full-view transform T, so the methods that need one (consistency,
        replacement) refuse it, and ``pinv`` weights each view by its angular gap.
    detectors, n_detectors:
        D, detector cells centred on the axis (two names for one option; give at most one);
        default ceil(N·√2/τ).
    detector_spacing:
        τ > 0, the width of a detector cell in pixel units (default 1).
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

    def __init__(self, n_views: int | None = None, image_size: int | None = None, *, angles=None,
                 detectors: int | None = None, n_detectors: int | None = None, detector_spacing: float = 1.0,
                 full_views: int | None = None, projector: str = "linear", noise_std: float = 0.0,
                 noise: NoiseModel | None = None, cache_dir: str | os.PathLike | None = None,
                 fbp_filter: str = "ram-lak") -> None:
        if (n_views is None) == (angles is None):
            raise ValueError("RadonOp: give the number of views (RadonOp(23)) or angles=..., exactly one")
        if detectors is not None and n_detectors is not None:
            raise ValueError("RadonOp: detectors= and n_detectors= are the same option; give one")
        detectors = n_detectors if detectors is None else detectors
        irregular = None
        if angles is not None:
            values = as_angles(angles)
            if _even_views(values):
                n_views = len(values)
            else:
                irregular = values
                if full_views is not None:
                    raise ValueError("RadonOp: full_views needs views equally spaced over [0, π) (n_views=); "
                                     "these angles have no full-view transform")
                n_views = len(values)
        n_views = _positive_int(n_views, "n_views")
        image_size = None if image_size is None else _positive_int(image_size, "image_size")
        detectors_given = None if detectors is None else _positive_int(detectors, "detectors")
        if isinstance(detector_spacing, bool) or not (isinstance(detector_spacing, (int, float, np.floating))
                                                      and math.isfinite(detector_spacing) and detector_spacing > 0):
            raise ValueError(f"RadonOp: detector_spacing must be a positive number (pixel units), "
                             f"got {detector_spacing!r}")
        self.detector_spacing = float(detector_spacing)
        views_given = None if full_views is None else _positive_int(full_views, "full_views")
        self.projector = check_projector(projector)
        self.fbp_filter = normalise_filter(fbp_filter)
        self.n_views = n_views
        self.image_size = image_size
        self.cache_dir = cache_dir
        self._irregular = irregular
        self._given = {"n_detectors": detectors_given, "full_views": views_given}
        if irregular is None:
            full_views = default_full_views(n_views) if views_given is None else views_given
            if full_views % n_views:
                raise ValueError(f"RadonOp: full_views ({full_views}) must be a multiple of n_views "
                                 f"({n_views}) so that the measured views are a subset of the full ones")
            self.full_views = full_views
            self.full_angles = torch.arange(full_views, dtype=torch.float64) * (math.pi / full_views)
            self.measured_views = torch.arange(n_views) * (full_views // n_views)
            self.measured_angles = self.full_angles[self.measured_views]
        else:
            self.full_views = None
            self.full_angles = None
            self.measured_views = None
            self.measured_angles = torch.tensor(irregular, dtype=torch.float64)
        self._matrices: dict[str, SystemMatrix] = {}
        noise = make_noise(noise_std, noise, "RadonOp")
        if image_size is None:
            self.n_detectors = detectors_given
            super().__init__(None, None, noise=noise)
            return
        n_detectors = default_detectors(image_size, self.detector_spacing) if detectors_given is None \
            else detectors_given
        self.n_detectors = n_detectors
        super().__init__((1, image_size, image_size), (1, n_views, n_detectors), noise=noise)
        self._measured_geometry = Geometry(image_size, n_detectors, tuple(self.measured_angles.tolist()),
                                           self.projector, self.detector_spacing)
        if irregular is not None:
            self._full_geometry = None
            return
        self.full_shape = (1, full_views, n_detectors)
        mask = torch.zeros(self.full_shape)
        mask[:, self.measured_views] = 1.0
        self.mask = mask
        self._full_geometry = Geometry(image_size, n_detectors, tuple(self.full_angles.tolist()), self.projector,
                                       self.detector_spacing)

    @property
    def capabilities(self) -> frozenset[str]:
        if self._irregular is not None:
            return frozenset({"line-integrals", "coarse-view"})
        return frozenset({"full-transform", "line-integrals", "coarse-view"})

    @property
    def unmeasured_arc(self) -> float:
        """The widest range of ray directions (radians, modulo π) that no view measures: π/n for
        n views equally spaced over [0, π), π − α plus one spacing for a limited arc [0, α)."""
        return unmeasured_arc(self.measured_angles)

    @property
    def has_full_transform(self) -> bool:
        """Whether the views are equally spaced over [0, π), so that the full-view transform T exists."""
        return self._irregular is None

    @property
    def capability_note(self) -> str:
        if self._irregular is None:
            return ""
        return (f"its {self.n_views} angles do not fill [0, π) evenly (a limited or irregular arc), so it has "
                "no full-view transform T; method='decomposed' or 'guidance' need only A and Aᵀ")

    @property
    def projection_geometry(self) -> Geometry:
        """The geometry of the measured views (for ASTRA's own algorithms, such as SIRT)."""
        if not self.is_sized:
            raise self._unsized_error("projection geometry")
        return self._measured_geometry

    def _coarse_options(self, ratio: float) -> dict[str, Any]:
        return {"detectors": None, "n_detectors": math.ceil(self.n_detectors / ratio - 1e-9)}

    def _no_full_transform(self) -> ValueError:
        return ValueError(f"RadonOp: {self.capability_note}")

    # --- sizes and options ------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        views = {"n_views": self.n_views, "angles": None} if self._irregular is None else \
            {"n_views": None, "angles": self._irregular}
        return {**views, "image_size": self.image_size,
                "detectors": None, "n_detectors": self._given["n_detectors"],
                "full_views": self._given["full_views"], "detector_spacing": self.detector_spacing, "projector": self.projector, "noise_std": 0.0,
                "noise": self.noise, "cache_dir": self.cache_dir, "fbp_filter": self.fbp_filter}

    def _merge_options(self, current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        merged = super()._merge_options(current, changes)
        # n_views= and angles= choose the views two ways, detectors= and n_detectors= name one option
        if "angles" in changes and "n_views" not in changes:
            merged["n_views"] = None
        if "n_views" in changes and "angles" not in changes:
            merged["angles"] = None
        if "detectors" in changes:
            merged["n_detectors"] = None
        return merged

    def _share_from(self, other: LinearOperator, changes: dict[str, Any]) -> None:
        # same geometry (another window or noise model): the same system matrices, built once
        if (self.is_sized and other.is_sized and self._full_geometry == other._full_geometry
                and self._measured_geometry == other._measured_geometry):
            self._matrices = other._matrices

    def bind(self, *, image_shape: Shape | None = None, measurement_shape: Shape | None = None) -> RadonOp:
        """This operator for (1, N, N) images and (1, n_views, D) sinograms (see the base class).

        Without ``image_size`` the size comes from the images, or from the sinogram's D: the
        N with ceil(N·√2 / detector_spacing) = D (with ``n_detectors`` given explicitly only the
        images can say). A ValueError names both sizes when they disagree (with each other or the
        operator): :func:`~scoreinv.operators.base.bind_sinograms`.
        """
        return bind_sinograms(self, image_shape, measurement_shape, given_detectors=self._given["n_detectors"],
                              detectors_option="n_detectors",
                              size_for_detectors=lambda d: image_size_for_detectors(d, self.detector_spacing))

    def _bind_full(self, shape: Shape) -> RadonOp:
        if self._irregular is not None:
            raise self._no_full_transform()
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or shape[0] != 1 or shape[1] != self.full_views:
            raise ValueError(f"RadonOp's full sinograms have shape (1, {self.full_views}, D), not {shape}")
        return self.bind(measurement_shape=(1, self.n_views, shape[2]))

    # --- system matrices (built on first use; the full one only if T is used) ---------------------
    def _matrix(self, which: str) -> SystemMatrix:
        matrix = self._matrices.get(which)
        if matrix is None:
            if which == "full" and self._irregular is not None:
                raise self._no_full_transform()
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

    @property
    def full_shape(self):
        if self._irregular is not None:
            raise self._no_full_transform()
        return super().full_shape

    @full_shape.setter
    def full_shape(self, shape) -> None:
        self._full_shape = tuple(int(s) for s in shape)

    def _transform(self, x):
        return apply_matrix(self._matrix("full"), x, self.full_shape, transpose=False)

    def _transform_adjoint(self, z):
        return apply_matrix(self._matrix("full"), z, self.in_shape, transpose=True)

    def _window(self, filter: str | None) -> str:
        return self.fbp_filter if filter is None else normalise_filter(filter)

    def _inverse_transform(self, z, filter: str | None = None):
        return filtered_back_projection(z, self._matrix("full"), self._full_geometry, self._window(filter))

    def _inverse_transform_measured(self, r):
        if self._irregular is not None:
            raise self._no_full_transform()
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
        if self._irregular is not None:
            raise self._no_full_transform()
        return z[:, :, self.measured_views.to(z.device)]

    def _embed(self, y):
        if self._irregular is not None:
            raise self._no_full_transform()
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
        """The configuration (JSON-able); ``angles`` and ``detector_spacing`` only where they are not
        the defaults, so configurations of the default geometry read as before."""
        config = {"type": "RadonOp", "n_views": self.n_views, "image_size": self.image_size,
                  "n_detectors": self.n_detectors, "full_views": self.full_views,
                  "projector": self.projector, "fbp_filter": self.fbp_filter,
                  "noise": None if self.noise is None else self.noise.config()}
        if self._irregular is not None:
            config["angles"] = list(self._irregular)
        if self.detector_spacing != 1.0:
            config["detector_spacing"] = self.detector_spacing
        return config

    @classmethod
    def from_config(cls, config: dict) -> RadonOp:
        """Rebuild from :meth:`config` (configurations without ``fbp_filter`` get ram-lak)."""
        n_views, image_size = config["n_views"], config.get("image_size")
        n_detectors, full_views = config.get("n_detectors"), config.get("full_views")
        spacing = float(config.get("detector_spacing", 1.0))
        angles = config.get("angles")
        if image_size is not None and n_detectors == default_detectors(image_size, spacing):
            n_detectors = None  # the default: a rebuilt operator resized by with_options follows N
        if angles is not None:
            if len(angles) != n_views:
                raise ValueError(f"RadonOp configuration: {len(angles)} angles for n_views={n_views}")
            n_views, full_views = None, None
        elif full_views == default_full_views(n_views):
            full_views = None
        return cls(n_views, image_size, angles=angles, n_detectors=n_detectors, full_views=full_views,
                   detector_spacing=spacing, projector=config.get("projector", "linear"),
                   noise=noise_from_config(config.get("noise")), fbp_filter=config.get("fbp_filter", "ram-lak"))

    def __repr__(self) -> str:
        filter_part = "" if self.fbp_filter == "ram-lak" else f", fbp_filter={self.fbp_filter!r}"
        views = (f"n_views={self.n_views}" if self._irregular is None else
                 f"angles=[{len(self._irregular)} angles in {min(self._irregular):.4g}…{max(self._irregular):.4g}]")
        spacing = "" if self.detector_spacing == 1.0 else f", detector_spacing={self.detector_spacing:g}"
        return (f"RadonOp({views}, image_size={self.image_size}, "
                f"n_detectors={self.n_detectors}{spacing}, full_views={self.full_views}, "
                f"projector={self.projector!r}, noise={self.noise!r}{filter_part})")


class RadonSpec(SinogramSpec):
    """``--operator radon``: a :class:`RadonOp` on (1, N, N) images."""

    def build(self, image_size: int, channels: int) -> RadonOp:
        if channels != 1:
            raise ValueError(f"operator 'radon' works on 1-channel images, the model has {channels} channels")
        spacing = 1.0 if self.detector_spacing is None else self.detector_spacing
        if self.arc is None:
            return RadonOp(self.views, image_size, detectors=self.detectors, detector_spacing=spacing,
                           noise_std=self.noise_std)
        return RadonOp(angles=self.arc_angles(), image_size=image_size, detectors=self.detectors, detector_spacing=spacing,
                       noise_std=self.noise_std)


register_family("radon", RadonOp, RadonSpec)
