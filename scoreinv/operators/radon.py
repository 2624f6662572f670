"""Parallel-beam 2D Radon transform (sparse-view CT) and filtered back-projection.

Geometry (see docs/operators.md):

* an N×N image of unit pixels, rotated about its geometric centre; x points along
  the columns (right), y against the rows (up): pixel (row i, column j) has centre
  (j − (N−1)/2, (N−1)/2 − i);
* ``n_detectors`` unit-width detector cells centred on the rotation axis
  (default ceil(N·√2), enough to see the whole square at every angle); cell d sits
  at s_d = d − (D−1)/2;
* at angle θ, the point (x, y) projects onto s = x cos θ + y sin θ; a sinogram entry
  is the line integral along the ray through s_d, in pixel units (a disk of radius r
  and value 1 gives 2√(r² − s²));
* measured angles θ_k = k·π/n_views; the full-view transform T has ``full_views``, a
  multiple of n_views, θ_j = j·π/full_views, and the measured views are exactly its
  rows ``measured_views = k·(full_views/n_views)``.

The backend is ASTRA's CPU projector (``linear`` by default, ``line`` and ``strip``
accepted). Its system matrix is exported once per geometry, held as a torch sparse CSR
matrix together with a stored CSR transpose, cached in memory (and on disk with
``cache_dir``), and applied on the input's device inside an autograd Function whose
backward is the adjoint.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import SubsampledTransformOp, validate
from .noise import NoiseModel, make_noise

PROJECTORS = ("linear", "line", "strip")
FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")
_FILTER_ALIASES = {"ramp": "ram-lak", "ramlak": "ram-lak", "ram_lak": "ram-lak",
                   "shepp_logan": "shepp-logan", "shepplogan": "shepp-logan", "hanning": "hann"}
_CACHE_FORMAT = 1
_MEMORY_CACHE_SIZE = 8


# --- geometry and system matrices ------------------------------------------------------------

@dataclass(frozen=True)
class _Geometry:
    image_size: int
    n_detectors: int
    angles: tuple[float, ...]  # radians (float64 values)
    projector: str

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    def key(self) -> str:
        """A stable hash of the geometry (and of the backend version)."""
        import astra

        h = hashlib.sha256()
        h.update(f"v{_CACHE_FORMAT}|astra {astra.__version__}|{self.projector}|"
                 f"{self.image_size}|{self.n_detectors}|".encode())
        h.update(np.asarray(self.angles, dtype=np.float64).tobytes())
        return h.hexdigest()[:32]


class _SystemMatrix:
    """A (rows = angle·D + detector, columns = row·N + column) matrix and its transpose.

    The master copy is float32 values with int32 indices on the CPU; per (device,
    dtype) copies are made on first use and kept. A and Aᵀ hold the same float32
    numbers, so in float64 they are exact transposes of each other.
    """

    def __init__(self, shape, crow, col, val, t_crow, t_col, t_val) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.parts = (crow, col, val, t_crow, t_col, t_val)
        self._copies: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    @property
    def nnz(self) -> int:
        return int(self.parts[2].numel())

    def get(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (torch.device(device), dtype)
        with self._lock:
            pair = self._copies.get(key)
            if pair is None:
                crow, col, val, t_crow, t_col, t_val = self.parts
                pair = (_csr(crow, col, val, self.shape, device, dtype),
                        _csr(t_crow, t_col, t_val, self.shape[::-1], device, dtype))
                self._copies[key] = pair
        return pair

    def tensors(self) -> dict[str, torch.Tensor]:
        names = ("crow", "col", "val", "t_crow", "t_col", "t_val")
        return dict(zip(names, self.parts, strict=True))


def _csr(crow, col, val, shape, device, dtype) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        warnings.filterwarnings("ignore", message=".*Sparse invariant checks.*")
        return torch.sparse_csr_tensor(crow.to(device), col.to(device), val.to(device=device, dtype=dtype),
                                       size=shape, check_invariants=False)


def _astra_matrix(geometry: _Geometry):
    """Export ASTRA's CPU projection matrix for the geometry (scipy CSR, float64)."""
    import astra

    n, d = geometry.image_size, geometry.n_detectors
    vol = astra.create_vol_geom(n, n)  # window [−N/2, N/2]², unit pixels, centred
    proj = astra.create_proj_geom("parallel", 1.0, d, np.asarray(geometry.angles, dtype=np.float64))
    pid = astra.create_projector(geometry.projector, proj, vol)
    try:
        mid = astra.projector.matrix(pid)
        try:
            w = astra.matrix.get(mid)
        finally:
            astra.matrix.delete(mid)
    finally:
        astra.projector.delete(pid)
    w = w.tocsr()
    expected = (geometry.n_angles * d, n * n)
    if w.shape != expected:
        raise RuntimeError(f"ASTRA returned a {w.shape} matrix, expected {expected}")
    return w


def _from_scipy(w) -> _SystemMatrix:
    w = w.astype(np.float32)
    w.sort_indices()
    wt = w.T.tocsr()
    wt.sort_indices()

    def parts(m):
        return (torch.from_numpy(m.indptr.astype(np.int32)), torch.from_numpy(m.indices.astype(np.int32)),
                torch.from_numpy(np.ascontiguousarray(m.data, dtype=np.float32)))

    return _SystemMatrix(w.shape, *parts(w), *parts(wt))


_memory_cache: OrderedDict[str, _SystemMatrix] = OrderedDict()
_cache_lock = threading.Lock()


def clear_matrix_cache() -> None:
    """Forget the system matrices held in memory (the disk cache is left alone)."""
    with _cache_lock:
        _memory_cache.clear()


def _system_matrix(geometry: _Geometry, cache_dir: str | os.PathLike | None) -> _SystemMatrix:
    key = geometry.key()
    with _cache_lock:
        if key in _memory_cache:
            _memory_cache.move_to_end(key)
            return _memory_cache[key]
    matrix = _load_from_disk(key, geometry, cache_dir) if cache_dir is not None else None
    if matrix is None:
        matrix = _from_scipy(_astra_matrix(geometry))
        if cache_dir is not None:
            _save_to_disk(key, geometry, matrix, cache_dir)
    with _cache_lock:
        _memory_cache[key] = matrix
        while len(_memory_cache) > _MEMORY_CACHE_SIZE:
            _memory_cache.popitem(last=False)
    return matrix


def _cache_file(key: str, cache_dir) -> Path:
    return Path(cache_dir) / f"radon_{key}.pt"


def _geometry_record(geometry: _Geometry) -> dict:
    return {"format": _CACHE_FORMAT, "image_size": geometry.image_size,
            "n_detectors": geometry.n_detectors, "projector": geometry.projector,
            "angles": torch.tensor(geometry.angles, dtype=torch.float64)}


def _load_from_disk(key, geometry, cache_dir) -> _SystemMatrix | None:
    path = _cache_file(key, cache_dir)
    if not path.exists():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        rec = data["geometry"]
        if (rec["format"] != _CACHE_FORMAT or rec["image_size"] != geometry.image_size
                or rec["n_detectors"] != geometry.n_detectors or rec["projector"] != geometry.projector
                or not torch.equal(rec["angles"], torch.tensor(geometry.angles, dtype=torch.float64))):
            return None
        m = data["matrix"]
        shape = (geometry.n_angles * geometry.n_detectors, geometry.image_size ** 2)
        return _SystemMatrix(shape, m["crow"], m["col"], m["val"], m["t_crow"], m["t_col"], m["t_val"])
    except Exception as err:  # a corrupt or foreign file: rebuild (and overwrite) it
        warnings.warn(f"ignoring unreadable Radon matrix cache {path}: {err}", stacklevel=3)
        return None


def _save_to_disk(key, geometry, matrix: _SystemMatrix, cache_dir) -> None:
    directory = Path(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = _cache_file(key, directory)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"geometry": _geometry_record(geometry), "matrix": matrix.tensors()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old file or the complete new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- applying a matrix with autograd ---------------------------------------------------------

def _spmm(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """a (m, n) sparse CSR times each row of x (B, n) -> (B, m).

    On the CPU every item goes through its own sparse × vector product, so an item's result
    does not depend on its batch mates: torch's (MKL) sparse × dense product rounds a column
    differently depending on how many columns there are (1e-6 relative), which the sampler
    amplified into reconstructions that changed with the batch size (1.5e-3 after 30 steps
    of the bundled CT prior). It costs little next to a network call: 64², 23 views, B = 8:
    0.5 ms against 0.15 ms (the 64² prior: 256 ms per call); 128², 180 views: 16 ms against
    6 ms. (For one or two items the sparse × dense product was also the slower of the two.)
    """
    if x.device.type == "cpu":
        return torch.stack([torch.mv(a, row) for row in x])
    return (a @ x.t().contiguous()).t()


class _SparseApply(torch.autograd.Function):
    """y = A x per item; backward applies the stored transpose (and is itself differentiable)."""

    @staticmethod
    def forward(ctx, x, a, a_t):
        ctx.a, ctx.a_t = a, a_t
        return _spmm(a, x)

    @staticmethod
    def backward(ctx, grad):
        return _SparseApply.apply(grad.contiguous(), ctx.a_t, ctx.a), None, None


def _apply(matrix: _SystemMatrix, x: torch.Tensor, out_shape: tuple[int, ...], transpose: bool):
    """Apply A (or Aᵀ) to x (B, ...) flattened per item; computes in float32 for half inputs."""
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    a, a_t = matrix.get(x.device, dtype)
    if transpose:
        a, a_t = a_t, a
    flat = x.reshape(x.shape[0], -1).to(dtype)
    out = _SparseApply.apply(flat, a, a_t)
    return out.reshape(x.shape[0], *out_shape).to(x.dtype)


# --- filtered back-projection ----------------------------------------------------------------

def _normalise_filter(name: str) -> str:
    key = str(name).lower()
    key = _FILTER_ALIASES.get(key, key)
    if key not in FILTERS:
        raise ValueError(f"unknown FBP filter {name!r}; expected one of {', '.join(FILTERS)}")
    return key


_filter_cache: dict[tuple[int, str], torch.Tensor] = {}


def ramp_filter(n_detectors: int, filter: str = "ram-lak") -> tuple[int, torch.Tensor]:
    """The frequency response (float64, length P/2 + 1 for ``rfft``) of the FBP filter and
    the padded length P (a power of two ≥ 2·n_detectors, so the convolution does not wrap).

    Built from the band-limited ramp kernel sampled at unit spacing (Kak & Slaney):
    h(0) = 1/4, h(n) = −1/(π n)² for odd n, 0 for even n ≠ 0, whose transform has no
    zero-frequency hole; then multiplied by the window (f = frequency in cycles per
    detector, 0…½): ram-lak 1, shepp-logan sinc(f), cosine cos(π f), hann (1 + cos(2π f))/2.
    """
    name = _normalise_filter(filter)
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


def _filter_sinogram(sino: torch.Tensor, filter: str) -> torch.Tensor:
    """Ramp-filter each row (along the detectors) with zero padding; (..., D) -> (..., D)."""
    d = sino.shape[-1]
    padded, response = ramp_filter(d, filter)
    work = sino if sino.dtype in (torch.float32, torch.float64) else sino.float()
    spectrum = torch.fft.rfft(work, n=padded, dim=-1)
    filtered = torch.fft.irfft(spectrum * response.to(device=sino.device, dtype=work.dtype),
                               n=padded, dim=-1)
    return filtered[..., :d]


def _fbp(sino: torch.Tensor, matrix: _SystemMatrix, geometry: _Geometry, filter: str) -> torch.Tensor:
    filtered = _filter_sinogram(sino, filter)
    n = geometry.image_size
    image = _apply(matrix, filtered, (1, n, n), transpose=True)
    return (image * (math.pi / geometry.n_angles)).to(sino.dtype)


def fbp(sinogram: torch.Tensor, op_or_angles, *, image_size: int | None = None,
        filter: str = "ram-lak", projector: str = "linear",
        cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """Filtered back-projection of a parallel-beam sinogram ``(B, 1, V, D)`` -> ``(B, 1, N, N)``.

    ``op_or_angles`` is a :class:`RadonOp` (the sinogram then has its ``n_views``
    measured views or its ``full_views``, and uses that geometry) or the V angles in
    radians (then ``image_size`` N is required; D is the sinogram's width).

    Each detector row is ramp-filtered by FFT with zero padding to a power of two
    ≥ 2D (no wrap-around), windowed by ``filter`` (``"ram-lak"``, ``"shepp-logan"``,
    ``"cosine"``, ``"hann"``), back-projected with the stored transpose of the
    system matrix and scaled by π/V — the quadrature weight of V angles spread
    uniformly over [0, π). Batched, on the sinogram's device; differentiable.
    """
    if isinstance(op_or_angles, RadonOp):
        op = op_or_angles
        if isinstance(sinogram, torch.Tensor) and sinogram.dim() == 4 and sinogram.shape[2] == op.full_views:
            return op.inverse_transform(sinogram, filter=filter)
        return op.pinv(sinogram, filter=filter)
    angles = _as_angles(op_or_angles)
    if image_size is None:
        raise ValueError("fbp: image_size is required when angles are given")
    if not isinstance(sinogram, torch.Tensor) or sinogram.dim() != 4:
        raise ValueError(f"fbp expects a sinogram of shape (B, 1, {len(angles)}, D), got "
                         f"{tuple(getattr(sinogram, 'shape', ()))}")
    geometry = _Geometry(int(image_size), int(sinogram.shape[-1]), angles, _check_projector(projector))
    sinogram = validate(sinogram, (1, geometry.n_angles, geometry.n_detectors), "fbp")
    return _fbp(sinogram, _system_matrix(geometry, cache_dir), geometry, _normalise_filter(filter))


def _as_angles(angles) -> tuple[float, ...]:
    if isinstance(angles, torch.Tensor):
        angles = angles.detach().cpu().double().numpy()
    arr = np.asarray(angles, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError("angles must be a non-empty sequence of finite numbers (radians)")
    return tuple(float(a) for a in arr)


def _check_projector(projector: str) -> str:
    if projector not in PROJECTORS:
        raise ValueError(f"unknown projector {projector!r}; expected one of {', '.join(PROJECTORS)} "
                         "(ASTRA's CPU projectors)")
    return projector


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"RadonOp: {name} must be a positive integer, got {value!r}")
    return int(value)


def default_full_views(n_views: int) -> int:
    """The smallest multiple of n_views that is ≥ max(180, n_views)."""
    return n_views * max(1, math.ceil(180 / n_views))


# --- the operator ----------------------------------------------------------------------------

class RadonOp(SubsampledTransformOp):
    """Sparse-view parallel-beam CT: A = Λ T, T the ``full_views`` Radon transform,
    Λ the ``n_views`` measured views.

    Parameters
    ----------
    n_views:
        Measured views, at θ_k = k·π/n_views (k = 0…n_views−1).
    image_size:
        N: images are (B, 1, N, N), unit pixels.
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

    Sinograms are (B, 1, n_views, D) (measured) or (B, 1, full_views, D) (full), in
    pixel units. ``pinv`` is the FBP from the measured views, ``inverse_transform``
    the FBP from the full views (both ram-lak unless ``filter=`` is given).
    """

    modality = "ct"

    def default_settings(self) -> dict:
        """Consistency sampling; with noisy sinograms noise-aware, with smoothed FBP windows.

        Song et al. 2022 tuned SNR = 0.246 for 23-view CT. With noise (measured on the bundled
        prior, 8 held-out phantoms, 1% noise, docs/reconstruct.md): the noise-aware gain and the
        smoother windows give 30.3 dB / SSIM 0.84 at 200 steps against 29.5 / 0.70 without;
        guidance diverged on some items there.
        """
        if self.noise_std > 0:
            return {"method": "consistency", "steps": 200, "snr": 0.246, "weight": 1.0,
                    "final_iterations": 0, "final_damping": 0.0,
                    "step_filter": "shepp-logan", "final_filter": "hann", "noise_weight": 0.25}
        return {"method": "consistency", "steps": 500, "snr": 0.246, "weight": 1.0,
                "final_iterations": 20, "final_damping": 0.0}

    def __init__(self, n_views: int, image_size: int, *, n_detectors: int | None = None,
                 full_views: int | None = None, projector: str = "linear", noise_std: float = 0.0,
                 noise: NoiseModel | None = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        n_views = _positive_int(n_views, "n_views")
        image_size = _positive_int(image_size, "image_size")
        n_detectors = (math.ceil(image_size * math.sqrt(2)) if n_detectors is None
                       else _positive_int(n_detectors, "n_detectors"))
        full_views = default_full_views(n_views) if full_views is None else _positive_int(full_views, "full_views")
        if full_views % n_views:
            raise ValueError(f"RadonOp: full_views ({full_views}) must be a multiple of n_views "
                             f"({n_views}) so that the measured views are a subset of the full ones")
        self.projector = _check_projector(projector)
        self.n_views = n_views
        self.image_size = image_size
        self.n_detectors = n_detectors
        self.full_views = full_views
        self.cache_dir = cache_dir
        super().__init__((1, image_size, image_size), (1, n_views, n_detectors),
                         noise=make_noise(noise_std, noise, "RadonOp"))
        self.full_shape = (1, full_views, n_detectors)
        self.full_angles = torch.arange(full_views, dtype=torch.float64) * (math.pi / full_views)
        self.measured_views = torch.arange(n_views) * (full_views // n_views)
        self.measured_angles = self.full_angles[self.measured_views]
        mask = torch.zeros(self.full_shape)
        mask[:, self.measured_views] = 1.0
        self.mask = mask
        self._full_geometry = _Geometry(image_size, n_detectors,
                                        tuple(self.full_angles.tolist()), self.projector)
        self._measured_geometry = _Geometry(image_size, n_detectors,
                                            tuple(self.measured_angles.tolist()), self.projector)
        self._matrices: dict[str, _SystemMatrix] = {}

    # system matrices (built on first use; the full one only if T is used)
    def _matrix(self, which: str) -> _SystemMatrix:
        matrix = self._matrices.get(which)
        if matrix is None:
            geometry = self._measured_geometry if which == "measured" else self._full_geometry
            matrix = _system_matrix(geometry, self.cache_dir)
            self._matrices[which] = matrix
        return matrix

    def build(self, full: bool = False) -> RadonOp:
        """Build (or load) the system matrices now rather than on first use; returns self."""
        self._matrix("measured")
        if full:
            self._matrix("full")
        return self

    def _forward(self, x):
        return _apply(self._matrix("measured"), x, self.out_shape, transpose=False)

    def _adjoint(self, y):
        return _apply(self._matrix("measured"), y, self.in_shape, transpose=True)

    def _transform(self, x):
        return _apply(self._matrix("full"), x, self.full_shape, transpose=False)

    def _transform_adjoint(self, z):
        return _apply(self._matrix("full"), z, self.in_shape, transpose=True)

    def _inverse_transform(self, z, filter: str = "ram-lak"):
        return _fbp(z, self._matrix("full"), self._full_geometry, _normalise_filter(filter))

    def _inverse_transform_measured(self, r, filter=None):
        # FBP is linear and sums views with weight π/(number of views): the full-view FBP of
        # a sinogram that is zero outside the measured views equals the measured-view FBP
        # scaled by n_views / full_views, at a fraction of the cost.
        return self._pinv(r, filter or "ram-lak") * (self.n_views / self.full_views)

    def _pinv(self, y, filter: str = "ram-lak"):
        return _fbp(y, self._matrix("measured"), self._measured_geometry, _normalise_filter(filter))

    def inverse_transform(self, z: torch.Tensor, filter: str = "ram-lak") -> torch.Tensor:
        """FBP from the full views: ``(B, 1, full_views, D)`` -> ``(B, 1, N, N)``."""
        return self._inverse_transform(validate(z, self.full_shape, "RadonOp.inverse_transform"), filter)

    def pinv(self, y: torch.Tensor, filter: str = "ram-lak") -> torch.Tensor:
        """FBP from the measured views: ``(B, 1, n_views, D)`` -> ``(B, 1, N, N)``."""
        return self._pinv(validate(y, self.out_shape, "RadonOp.pinv"), filter)

    def _subsample(self, z):
        return z[:, :, self.measured_views.to(z.device)]

    def _embed(self, y):
        z = y.new_zeros((y.shape[0], *self.full_shape))
        z[:, :, self.measured_views.to(y.device)] = y
        return z

    def __getstate__(self) -> dict:
        # Pickles (DataLoader workers, multiprocessing) carry the geometry, not the matrices:
        # the receiving process takes them from its memory cache, cache_dir, or rebuilds them.
        state = self.__dict__.copy()
        state["_matrices"] = {}
        state["_device_cache"] = {}
        return state

    def config(self) -> dict:
        return {"type": "RadonOp", "n_views": self.n_views, "image_size": self.image_size,
                "n_detectors": self.n_detectors, "full_views": self.full_views,
                "projector": self.projector,
                "noise": None if self.noise is None else self.noise.config()}

    def __repr__(self) -> str:
        return (f"RadonOp(n_views={self.n_views}, image_size={self.image_size}, "
                f"n_detectors={self.n_detectors}, full_views={self.full_views}, "
                f"projector={self.projector!r}, noise={self.noise!r})")

