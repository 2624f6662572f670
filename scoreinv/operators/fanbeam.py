"""Fan-beam CT with a flat detector: the operator ``FanBeamOp`` and its filtered back-projection.

Geometry (lengths in pixel units, angles in radians; see docs/operators.md): the N×N image of
unit pixels as for :class:`~scoreinv.operators.RadonOp`; a point source at distance R
(``source_distance``) from the isocentre and a flat detector of D cells of width τ
(``detector_spacing``) at distance D' (``detector_distance``) beyond it. At angle β the detector
axis is (cos β, sin β), the central ray runs along (−sin β, cos β) and the source sits at
−R (−sin β, cos β): a point (x, y) has t = x cos β + y sin β across the central ray and
U = R − x sin β + y cos β along it, and meets the detector at u = t (R + D') / U. The ray of the
cell at u passes the isocentre at the distance s = R u / √((R + D')² + u²), so a disk of radius r
and value 1 at the isocentre projects to 2√(r² − s²).

The forward operator is ASTRA's CPU ``line_fanflat`` (or ``strip_fanflat``) projection matrix,
held as torch CSR with its stored exact transpose as the adjoint (the machinery of
:mod:`~scoreinv.operators.system_matrix`). ``pinv`` is a fan-beam FBP in torch (Kak & Slaney,
ch. 3, equally spaced collinear detectors): rescale to the virtual detector through the
isocentre (u' = u R / (R + D'), pitch τ' = τ R / (R + D')), pre-weight by R / √(R² + u'²),
ramp-filter (the kernel at spacing τ', windowed as for RadonOp), and back-project pixel by pixel
with the distance weight R² / U², each view weighted by Δβ / 2 over a full turn, or by Δβ times
Parker's weight for a short scan (an arc shorter than 2π: each line is then measured once or
twice, and the weights make the pairs sum to one).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from pydantic import Field

from .base import CoarseViews, LinearOperator, Shape, bind_sinograms, validate
from .fbp import filter_sinogram, normalise_filter
from .noise import NoiseModel, make_noise, noise_from_config
from .registry import SinogramSpec, register_family
from .system_matrix import Geometry, SystemMatrix, apply_matrix, as_angles, system_matrix, unmeasured_arc

#: Our projector names and ASTRA's fan-beam CPU projectors.
FAN_PROJECTORS = {"line": "line_fanflat", "strip": "strip_fanflat"}
_VIEWS_PER_CHUNK = 64  # back-projection works on this many views at a time (memory: chunk × N² × B)


def _positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"FanBeamOp: {name} must be a positive number (pixel units), got {value!r}")
    return float(value)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"FanBeamOp: {name} must be a positive integer, got {value!r}")
    return int(value)


def fan_detectors(image_size: int, source_distance: float, detector_distance: float,
                  detector_spacing: float) -> int:
    """D: the cells that see the whole N×N image at every angle.

    The image's circumscribed circle (radius ρ = N/√2) subtends u' = ± R ρ / √(R² − ρ²) on the
    virtual detector, whose pitch is τ R / (R + D'); ValueError when the source is inside it.
    """
    radius = image_size / math.sqrt(2)
    if source_distance <= radius:
        raise ValueError(f"FanBeamOp: the source (source_distance={source_distance:g}) must lie outside the "
                         f"{image_size}×{image_size} image's circumscribed circle (radius {radius:.4g} pixels)")
    half_width = source_distance * radius / math.sqrt(source_distance**2 - radius**2)
    virtual_pitch = detector_spacing * source_distance / (source_distance + detector_distance)
    return math.ceil(2 * half_width / virtual_pitch - 1e-9)


class FanBeamOp(CoarseViews, LinearOperator):
    """Fan-beam CT with a flat detector, full or short scan.

    Parameters
    ----------
    n_views:
        Views equally spaced over a full turn, β_k = 2πk / n_views. Give this or ``angles``.
    image_size:
        N: images are (B, 1, N, N), unit pixels. None: taken from the sinogram's detector count
        (the N whose default count it is) or from the model (:meth:`bind`).
    source_distance:
        R, source to isocentre, pixel units; it must exceed N/√2.
    detector_distance:
        D', isocentre to the flat detector, pixel units (≥ 0).
    angles:
        The source angles β in radians, in sinogram row order, instead of ``n_views``: a short
        scan is an arc of at least π + the fan angle (``FanBeamOp.short_scan``), which ``pinv``
        weights with Parker's weights.
    detectors:
        D, detector cells centred on the central ray; default :func:`fan_detectors` (the whole
        image seen at every angle).
    detector_spacing:
        τ, the cell width on the detector, pixel units; default the magnification (R + D') / R,
        one pixel at the isocentre.
    projector:
        ``"line"`` (ASTRA ``line_fanflat``, default) or ``"strip"`` (``strip_fanflat``).
    noise_std, noise:
        Gaussian noise of that std on the sinogram, or any noise model; at most one.
    cache_dir:
        If given, the system matrix is also stored there (atomically) and read back later.
    fbp_filter:
        The window of the FBP (``pinv``): ``"ram-lak"`` (default), ``"shepp-logan"``,
        ``"cosine"`` or ``"hann"``.

    Sinograms are (B, 1, n_views, D) line integrals in pixel units.
    """

    modality = "ct"

    def __init__(self, n_views: int | None = None, image_size: int | None = None, *, source_distance: float,
                 detector_distance: float, angles=None, detectors: int | None = None,
                 detector_spacing: float | None = None, projector: str = "line", noise_std: float = 0.0,
                 noise: NoiseModel | None = None, cache_dir: str | os.PathLike | None = None,
                 fbp_filter: str = "ram-lak") -> None:
        if (n_views is None) == (angles is None):
            raise ValueError("FanBeamOp: give the number of views (FanBeamOp(23, ...)) or angles=..., exactly one")
        self.source_distance = _positive_number(source_distance, "source_distance")
        if isinstance(detector_distance, bool) or not isinstance(detector_distance, (int, float, np.integer,
                                                                                      np.floating)) \
                or not math.isfinite(detector_distance) or detector_distance < 0:
            raise ValueError(f"FanBeamOp: detector_distance must be a number >= 0 (pixel units), "
                             f"got {detector_distance!r}")
        self.detector_distance = float(detector_distance)
        magnification = (self.source_distance + self.detector_distance) / self.source_distance
        self.detector_spacing = magnification if detector_spacing is None else \
            _positive_number(detector_spacing, "detector_spacing")
        self._spacing_given = detector_spacing is not None
        if projector not in FAN_PROJECTORS:
            raise ValueError(f"FanBeamOp: unknown projector {projector!r}; expected one of "
                             f"{', '.join(FAN_PROJECTORS)} (ASTRA's line_fanflat, strip_fanflat)")
        self.projector = projector
        self.fbp_filter = normalise_filter(fbp_filter)
        self._angles_given = angles is not None
        if angles is None:
            n_views = _positive_int(n_views, "n_views")
            values = tuple(float(a) for a in np.arange(n_views) * (2 * math.pi / n_views))
        else:
            values = as_angles(angles)
        self.angles = torch.tensor(values, dtype=torch.float64)
        self.n_views = len(values)
        self.image_size = None if image_size is None else _positive_int(image_size, "image_size")
        self._detectors_given = None if detectors is None else _positive_int(detectors, "detectors")
        self.cache_dir = cache_dir
        self._matrix_cache: SystemMatrix | None = None
        noise = make_noise(noise_std, noise, "FanBeamOp")
        if self.image_size is None:
            self.n_detectors = self._detectors_given
            super().__init__(None, None, noise=noise)
            return
        self.n_detectors = self._default_detectors(self.image_size) if self._detectors_given is None \
            else self._detectors_given
        fan_detectors(self.image_size, self.source_distance, self.detector_distance, self.detector_spacing)
        super().__init__((1, self.image_size, self.image_size), (1, self.n_views, self.n_detectors), noise=noise)
        self._geometry = Geometry(self.image_size, self.n_detectors, values, FAN_PROJECTORS[projector],
                                  self.detector_spacing, self.source_distance, self.detector_distance)

    # --- geometry ---------------------------------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"line-integrals", "coarse-view"})

    @property
    def capability_note(self) -> str:
        return "a fan-beam operator has no full-view transform T; method='decomposed' or 'guidance' need only A and Aᵀ"

    def _coarse_options(self, ratio: float) -> dict[str, Any]:
        return {"source_distance": self.source_distance / ratio, "detector_distance": self.detector_distance / ratio,
                "detectors": math.ceil(self.n_detectors / ratio - 1e-9), "detector_spacing": self.detector_spacing}

    def _default_detectors(self, image_size: int) -> int:
        return fan_detectors(image_size, self.source_distance, self.detector_distance, self.detector_spacing)

    @property
    def fan_angle(self) -> float:
        """2γ_m, the full fan angle of the detector (radians)."""
        if self.n_detectors is None:
            raise self._unsized_error("fan angle")
        half = (self.n_detectors / 2) * self.detector_spacing
        return 2 * math.atan(half / (self.source_distance + self.detector_distance))

    @property
    def unmeasured_arc(self) -> float:
        """The widest range of ray directions (radians, modulo π) that no view measures; view β
        measures the directions β ± half the fan angle, so a full turn or a short scan of enough
        views measures them all (0)."""
        return unmeasured_arc(self.angles, self.fan_angle / 2)

    @staticmethod
    def short_scan(n_views: int, fan_angle: float) -> torch.Tensor:
        """``n_views`` angles equally spaced over [0, π + fan_angle] (both ends): a short scan."""
        return torch.linspace(0.0, math.pi + fan_angle, n_views, dtype=torch.float64)

    @property
    def projection_geometry(self) -> Geometry:
        """The geometry of the measured views (for ASTRA's own algorithms, such as SIRT)."""
        if not self.is_sized:
            raise self._unsized_error("projection geometry")
        return self._geometry

    # --- sizes and options ------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        views = {"n_views": None, "angles": tuple(self.angles.tolist())} if self._angles_given else \
            {"n_views": self.n_views, "angles": None}
        return {**views, "image_size": self.image_size, "source_distance": self.source_distance,
                "detector_distance": self.detector_distance, "detectors": self._detectors_given,
                "detector_spacing": self.detector_spacing if self._spacing_given else None,
                "projector": self.projector, "noise_std": 0.0, "noise": self.noise, "cache_dir": self.cache_dir,
                "fbp_filter": self.fbp_filter}

    def _merge_options(self, current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        merged = super()._merge_options(current, changes)
        if "angles" in changes and "n_views" not in changes:
            merged["n_views"] = None
        if "n_views" in changes and "angles" not in changes:
            merged["angles"] = None
        return merged

    def _share_from(self, other: LinearOperator, changes: dict[str, Any]) -> None:
        if self.is_sized and other.is_sized and self._geometry == other._geometry:
            self._matrix_cache = other._matrix_cache

    def _image_size_for(self, n_detectors: int) -> int:
        """The N whose default detector count is ``n_detectors`` (ValueError if none)."""
        n = 1
        while n / math.sqrt(2) < self.source_distance:
            count = self._default_detectors(n)
            if count == n_detectors:
                return n
            if count > n_detectors:
                break
            n += 1
        raise ValueError(f"a fan-beam sinogram with {n_detectors} detectors fits no N×N image with the default "
                         f"detector count of this geometry (R={self.source_distance:g}, D'={self.detector_distance:g}, "
                         f"pitch {self.detector_spacing:g}): pass image_size= (and detectors=) to FanBeamOp")

    def bind(self, *, image_shape: Shape | None = None, measurement_shape: Shape | None = None) -> FanBeamOp:
        """This operator for (1, N, N) images and (1, n_views, D) sinograms: a sized one checks the
        shapes, one without a size takes N from the images or from D (the N whose default count D
        is, unless ``detectors`` was given): :func:`~scoreinv.operators.base.bind_sinograms`."""
        return bind_sinograms(self, image_shape, measurement_shape, given_detectors=self._detectors_given,
                              detectors_option="detectors", size_for_detectors=self._image_size_for)

    def _bind_full(self, shape: Shape) -> LinearOperator:
        raise ValueError(f"FanBeamOp: {self.capability_note}")

    # --- the transform --------------------------------------------------------------------------------
    def _matrix(self) -> SystemMatrix:
        if self._matrix_cache is None:
            self._matrix_cache = system_matrix(self._geometry, self.cache_dir)
        return self._matrix_cache

    def build(self) -> FanBeamOp:
        """Build (or load) the system matrix now rather than on first use; returns self."""
        if not self.is_sized:
            raise self._unsized_error("system matrix")
        self._matrix()
        return self

    def _forward(self, x):
        return apply_matrix(self._matrix(), x, self.out_shape, transpose=False)

    def _adjoint(self, y):
        return apply_matrix(self._matrix(), y, self.in_shape, transpose=True)

    def _pinv(self, y, filter: str | None = None):
        return self._fbp(y, self.fbp_filter if filter is None else normalise_filter(filter))

    def pinv(self, y: torch.Tensor, filter: str | None = None) -> torch.Tensor:
        """Fan-beam FBP: ``(B, 1, n_views, D)`` -> ``(B, 1, N, N)``; ``filter`` overrides ``fbp_filter``."""
        op = self._taking(y, "measurement")
        return op._pinv(validate(y, op.out_shape, "FanBeamOp.pinv"), filter)

    # --- the fan-beam FBP -------------------------------------------------------------------------------
    def _virtual_detector(self, dtype, device) -> tuple[torch.Tensor, float]:
        """u' of each cell on the virtual detector through the isocentre, and its pitch τ'."""
        pitch = self.detector_spacing * self.source_distance / (self.source_distance + self.detector_distance)
        cells = torch.arange(self.n_detectors, dtype=torch.float64) - (self.n_detectors - 1) / 2
        return (cells * pitch).to(device=device, dtype=dtype), pitch

    def scan_weights(self) -> torch.Tensor:
        """Per (view, cell) the weight of the back-projection integral, float64 (n_views, D).

        A full turn (equally spaced views over 2π): Δβ / 2 = π / V, every line being measured
        twice; a single view: π, as for a parallel view. Otherwise the views are an arc of length Λ from β₀ (each view weighted by its
        angular gap) times Parker's weight of the ray at γ = −atan(u'/R) (the sign that makes
        (β, γ) and (β + π + 2γ, −γ) the same line in this geometry) and β − β₀, with the overscan
        δ = (Λ − π)/2 (Parker's γ_m for a minimal short scan): sin²(π/4 · β/(δ − γ)) below
        2(δ − γ), 1 up to π − 2γ, sin²(π/4 · (π + 2δ − β)/(δ + γ)) above; the two weights of a
        line then sum to one. An arc shorter than π leaves lines unseen and
        gets no Parker weight.
        """
        beta = self.angles.numpy()
        count = beta.size
        if count == 1:  # the whole integral, as a single parallel view gets (fbp.view_weights)
            return torch.full((1, self.n_detectors), math.pi, dtype=torch.float64)
        gaps = np.diff(np.sort(beta))
        even = np.allclose(gaps, gaps[0], rtol=1e-9, atol=1e-12)
        if even and count * gaps[0] >= 2 * math.pi * (1 - 1e-9):
            return torch.full((count, self.n_detectors), math.pi / count, dtype=torch.float64)
        order = np.argsort(beta)
        sorted_beta = beta[order]
        gaps = np.diff(sorted_beta)
        padded = np.concatenate([gaps[:1], gaps, gaps[-1:]])
        per_view = np.empty(count)
        per_view[order] = (padded[:-1] + padded[1:]) / 2
        span = float(sorted_beta[-1] - sorted_beta[0])
        u_virtual, _ = self._virtual_detector(torch.float64, "cpu")
        gamma = -np.arctan(u_virtual.numpy() / self.source_distance)
        if span < math.pi:
            return torch.from_numpy(np.repeat(per_view[:, None], self.n_detectors, axis=1))
        delta = (span - math.pi) / 2
        b = (beta - sorted_beta[0])[:, None]
        g = gamma[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            rise = np.sin(math.pi / 4 * b / np.maximum(delta - g, 1e-12)) ** 2
            fall = np.sin(math.pi / 4 * (math.pi + 2 * delta - b) / np.maximum(delta + g, 1e-12)) ** 2
        parker = np.where(b < 2 * (delta - g), rise, np.where(b <= math.pi - 2 * g, 1.0, fall))
        parker = np.clip(parker, 0.0, 1.0)
        return torch.from_numpy(parker * per_view[:, None])

    def _fbp(self, y: torch.Tensor, window: str) -> torch.Tensor:
        work = y if y.dtype in (torch.float32, torch.float64) else y.float()
        dtype, device = work.dtype, work.device
        radius = self.source_distance
        u_virtual, pitch = self._virtual_detector(dtype, device)
        cosine = radius / torch.sqrt(radius**2 + u_virtual**2)
        filtered = filter_sinogram(work * cosine, window) / pitch
        filtered = filtered * self.scan_weights().to(device=device, dtype=dtype)
        n, d = self.image_size, self.n_detectors
        coordinates = torch.arange(n, dtype=dtype, device=device) - (n - 1) / 2
        x = coordinates[None, :].expand(n, n).reshape(-1)            # columns, to the right
        y_axis = -coordinates[:, None].expand(n, n).reshape(-1)      # rows, upward
        image = work.new_zeros((work.shape[0], n * n))
        flat = filtered[:, 0]                                        # (B, V, D)
        angles = self.angles.to(device=device, dtype=dtype)
        for start in range(0, self.n_views, _VIEWS_PER_CHUNK):
            beta = angles[start:start + _VIEWS_PER_CHUNK, None]      # (v, 1)
            across = x * torch.cos(beta) + y_axis * torch.sin(beta)   # t
            along = radius - x * torch.sin(beta) + y_axis * torch.cos(beta)  # U
            position = radius * across / along / pitch + (d - 1) / 2  # fractional cell index
            left = torch.floor(position).clamp(0, d - 2)
            share = (position - left).clamp(0, 1)
            inside = (position >= 0) & (position <= d - 1)
            left = left.long()
            rows = flat[:, start:start + _VIEWS_PER_CHUNK]            # (B, v, D)
            value = (torch.gather(rows, 2, left.expand(rows.shape[0], -1, -1)) * (1 - share)
                     + torch.gather(rows, 2, (left + 1).expand(rows.shape[0], -1, -1)) * share)
            weight = (radius / along) ** 2 * inside
            image = image + (value * weight).sum(dim=1)
        return image.reshape(work.shape[0], 1, n, n).to(y.dtype)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_matrix_cache"] = None
        return state

    # --- description ------------------------------------------------------------------------------
    def config(self) -> dict:
        config = {"type": "FanBeamOp", "n_views": self.n_views, "image_size": self.image_size,
                  "source_distance": self.source_distance, "detector_distance": self.detector_distance,
                  "n_detectors": self.n_detectors, "detector_spacing": self.detector_spacing,
                  "projector": self.projector, "fbp_filter": self.fbp_filter,
                  "noise": None if self.noise is None else self.noise.config()}
        if self._angles_given:
            config["angles"] = self.angles.tolist()
        return config

    @classmethod
    def from_config(cls, config: dict) -> FanBeamOp:
        angles = config.get("angles")
        n_views = None if angles is not None else config["n_views"]
        image_size = config.get("image_size")
        source, detector = config["source_distance"], config["detector_distance"]
        spacing = config.get("detector_spacing")
        magnification = (source + detector) / source
        if spacing is not None and spacing == magnification:
            spacing = None
        detectors = config.get("n_detectors")
        if image_size is not None and detectors is not None and detectors == fan_detectors(
                image_size, source, detector, magnification if spacing is None else spacing):
            detectors = None  # the default: a copy resized by with_options follows N
        return cls(n_views, image_size, angles=angles, source_distance=source, detector_distance=detector,
                   detectors=detectors, detector_spacing=spacing, projector=config.get("projector", "line"),
                   noise=noise_from_config(config.get("noise")), fbp_filter=config.get("fbp_filter", "ram-lak"))

    def __repr__(self) -> str:
        views = f"n_views={self.n_views}" if not self._angles_given else \
            f"angles=[{self.n_views} angles in {float(self.angles.min()):.4g}…{float(self.angles.max()):.4g}]"
        return (f"FanBeamOp({views}, image_size={self.image_size}, source_distance={self.source_distance:g}, "
                f"detector_distance={self.detector_distance:g}, n_detectors={self.n_detectors}, "
                f"detector_spacing={self.detector_spacing:g}, projector={self.projector!r}, noise={self.noise!r})")


class FanBeamSpec(SinogramSpec):
    """``--operator fanbeam``: a :class:`FanBeamOp` on (1, N, N) images."""

    source_distance: float = Field(gt=0, description="source to isocentre, pixel units (required)")
    detector_distance: float = Field(ge=0, description="isocentre to the flat detector, pixel units (required)")

    def build(self, image_size: int, channels: int) -> FanBeamOp:
        if channels != 1:
            raise ValueError(f"operator 'fanbeam' works on 1-channel images, the model has {channels} channels")
        common = dict(source_distance=self.source_distance, detector_distance=self.detector_distance,
                      detectors=self.detectors, detector_spacing=self.detector_spacing, noise_std=self.noise_std)
        if self.arc is None:
            return FanBeamOp(self.views, image_size, **common)
        return FanBeamOp(angles=self.arc_angles(), image_size=image_size, **common)


register_family("fanbeam", FanBeamOp, FanBeamSpec)
