"""Projection geometries and ASTRA system matrices, cached and applied as sparse CSR products.

Geometry (see docs/operators.md):

* an N×N image of unit pixels, rotated about its geometric centre; x points along
  the columns (right), y against the rows (up): pixel (row i, column j) has centre
  (j − (N−1)/2, (N−1)/2 − i);
* D detector cells of width ``detector_spacing`` (pixel units, default 1) centred on the
  rotation axis; cell d sits at u_d = (d − (D−1)/2) · spacing;
* parallel beam: at angle θ, the point (x, y) projects onto s = x cos θ + y sin θ; a sinogram
  entry is the line integral along the ray through u_d, in pixel units;
* fan beam (``source_distance`` R and ``detector_distance`` D' set): ASTRA's ``fanflat``, a point
  source at distance R from the isocentre and a flat detector at D' beyond it; the ray of cell d
  joins the source to u_d on the detector.

ASTRA's CPU projector (``linear``, ``line`` or ``strip``) exports the system matrix once
per geometry. It is held as a torch sparse CSR matrix together with a stored CSR
transpose (rows = angle·D + detector, columns = row·N + column), cached in memory (the
most recent geometries, shared by every operator) and optionally on disk, and applied on
the input's device inside an autograd Function whose backward is the adjoint.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scoreinv.atomic import atomic_path

PROJECTORS = ("linear", "line", "strip")
_CACHE_FORMAT = 1
_MEMORY_CACHE_SIZE = 8


# --- geometry and system matrices ------------------------------------------------------------

@dataclass(frozen=True)
class Geometry:
    """One projection geometry: N×N unit pixels, D detector cells, the angles, the projector.

    Attributes
    ----------
    image_size:
        N, the image side in pixels.
    n_detectors:
        D, detector cells centred on the rotation axis.
    angles:
        The projection angles in radians (float64 values), in sinogram row order.
    projector:
        ASTRA CPU projector name (``PROJECTORS`` for parallel beam; ``line_fanflat`` or
        ``strip_fanflat`` for fan beam).
    detector_spacing:
        Width of a detector cell, in pixel units.
    source_distance, detector_distance:
        Fan beam: source to isocentre and isocentre to detector, in pixel units (None: parallel beam).
    """

    image_size: int
    n_detectors: int
    angles: tuple[float, ...]  # radians (float64 values)
    projector: str
    detector_spacing: float = 1.0
    source_distance: float | None = None
    detector_distance: float | None = None

    @property
    def is_fan(self) -> bool:
        return self.source_distance is not None

    def astra_geometries(self):
        """ASTRA's (volume, projection) geometries: the window [−N/2, N/2]², unit pixels, centred."""
        import astra

        volume = astra.create_vol_geom(self.image_size, self.image_size)
        angles = np.asarray(self.angles, dtype=np.float64)
        if self.is_fan:
            projection = astra.create_proj_geom("fanflat", float(self.detector_spacing), self.n_detectors, angles,
                                                float(self.source_distance), float(self.detector_distance))
        else:
            projection = astra.create_proj_geom("parallel", float(self.detector_spacing), self.n_detectors, angles)
        return volume, projection

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    def key(self) -> str:
        """A stable hash of the geometry (and of the backend version)."""
        import astra

        h = hashlib.sha256()
        h.update(f"v{_CACHE_FORMAT}|astra {astra.__version__}|{self.projector}|"
                 f"{self.image_size}|{self.n_detectors}|".encode())
        if self.detector_spacing != 1.0 or self.is_fan:  # (unit-pitch parallel beam keeps its earlier key)
            h.update(f"{self.detector_spacing!r}|{self.source_distance!r}|{self.detector_distance!r}|".encode())
        h.update(np.asarray(self.angles, dtype=np.float64).tobytes())
        return h.hexdigest()[:32]


class SystemMatrix:
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


def _astra_matrix(geometry: Geometry):
    """Export ASTRA's CPU projection matrix for the geometry (scipy CSR, float64)."""
    import astra

    n, d = geometry.image_size, geometry.n_detectors
    vol, proj = geometry.astra_geometries()
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


def _from_scipy(w) -> SystemMatrix:
    w = w.astype(np.float32)
    w.sort_indices()
    wt = w.T.tocsr()
    wt.sort_indices()

    def parts(m):
        return (torch.from_numpy(m.indptr.astype(np.int32)), torch.from_numpy(m.indices.astype(np.int32)),
                torch.from_numpy(np.ascontiguousarray(m.data, dtype=np.float32)))

    return SystemMatrix(w.shape, *parts(w), *parts(wt))


_memory_cache: OrderedDict[str, SystemMatrix] = OrderedDict()
_cache_lock = threading.Lock()


def clear_matrix_cache() -> None:
    """Forget the system matrices held in memory (the disk cache is left alone)."""
    with _cache_lock:
        _memory_cache.clear()


def system_matrix(geometry: Geometry, cache_dir: str | os.PathLike | None) -> SystemMatrix:
    """The system matrix of ``geometry``: from memory, from ``cache_dir``, or exported from ASTRA.

    Parameters
    ----------
    geometry:
        The projection geometry.
    cache_dir:
        A folder for the disk cache (one file per geometry, written atomically), or None.

    Returns
    -------
    SystemMatrix
        Shape (n_angles·D, N²); the same object for every caller while it stays in memory.
    """
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


def _geometry_record(geometry: Geometry) -> dict:
    return {"format": _CACHE_FORMAT, "image_size": geometry.image_size,
            "n_detectors": geometry.n_detectors, "projector": geometry.projector,
            "angles": torch.tensor(geometry.angles, dtype=torch.float64),
            "detector_spacing": geometry.detector_spacing, "source_distance": geometry.source_distance,
            "detector_distance": geometry.detector_distance}


def _load_from_disk(key, geometry, cache_dir) -> SystemMatrix | None:
    path = _cache_file(key, cache_dir)
    if not path.exists():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        rec = data["geometry"]
        if (rec["format"] != _CACHE_FORMAT or rec["image_size"] != geometry.image_size
                or rec["n_detectors"] != geometry.n_detectors or rec["projector"] != geometry.projector
                or not torch.equal(rec["angles"], torch.tensor(geometry.angles, dtype=torch.float64))
                or rec.get("detector_spacing", 1.0) != geometry.detector_spacing
                or rec.get("source_distance") != geometry.source_distance
                or rec.get("detector_distance") != geometry.detector_distance):
            return None
        m = data["matrix"]
        shape = (geometry.n_angles * geometry.n_detectors, geometry.image_size ** 2)
        return SystemMatrix(shape, m["crow"], m["col"], m["val"], m["t_crow"], m["t_col"], m["t_val"])
    except Exception as err:  # a corrupt or foreign file: rebuild (and overwrite) it
        warnings.warn(f"ignoring unreadable Radon matrix cache {path}: {err}", stacklevel=3)
        return None


def _save_to_disk(key, geometry, matrix: SystemMatrix, cache_dir) -> None:
    # atomic: readers see the old file or the complete new one, with the mode of every other output
    with atomic_path(_cache_file(key, cache_dir)) as temporary, open(temporary, "wb") as handle:
        torch.save({"geometry": _geometry_record(geometry), "matrix": matrix.tensors()}, handle)


# --- applying a matrix with autograd ---------------------------------------------------------

#: On the CPU, torch's (MKL) sparse × dense product works through the dense columns in blocks
#: of this many; the columns of a whole block are rounded alike, a remainder differently.
_CPU_COLUMN_BLOCK = 4


def _spmm(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """a (m, n) sparse CSR times each row of x (B, n) -> (B, m).

    On the CPU the batch is padded with zero rows to a whole number of column blocks
    (:data:`_CPU_COLUMN_BLOCK`), so every item goes through the same blocked kernel and its
    result does not depend on its batch mates: unpadded, the product rounds a column differently
    depending on how many columns there are (1e-6 relative), which the sampler amplified into
    reconstructions that changed with the batch size (1.5e-3 after 30 steps of the bundled CT
    prior). Item by item (one sparse × vector product each) is just as independent of the batch,
    but at 256² about 2.5 times slower for 4 items, 4 times for 8 (a lone item is padded to a
    block, which costs it 1.6 times a sparse × vector product).
    """
    padding = (-x.shape[0]) % _CPU_COLUMN_BLOCK if x.device.type == "cpu" else 0
    columns = torch.cat([x, x.new_zeros(padding, x.shape[1])]) if padding else x
    # contiguous: a reduction over the rows of a transposed view vectorises across the items,
    # and would round each item's sum by how many there are
    return (a @ columns.t().contiguous()).t()[: x.shape[0]].contiguous()


class _SparseApply(torch.autograd.Function):
    """y = A x per item; backward applies the stored transpose (and is itself differentiable)."""

    @staticmethod
    def forward(ctx, x, a, a_t):
        ctx.a, ctx.a_t = a, a_t
        return _spmm(a, x)

    @staticmethod
    def backward(ctx, grad):
        return _SparseApply.apply(grad.contiguous(), ctx.a_t, ctx.a), None, None


def apply_matrix(matrix: SystemMatrix, x: torch.Tensor, out_shape: tuple[int, ...], transpose: bool):
    """A x (or Aᵀ x) per item, differentiable, on x's device.

    Parameters
    ----------
    matrix:
        The system matrix A, shape (M, K).
    x:
        ``(B, ...)`` with K (for Aᵀ: M) entries per item.
    out_shape:
        The per-item shape of the result (M entries; for Aᵀ: K).
    transpose:
        Apply the stored transpose Aᵀ instead of A.

    Returns
    -------
    torch.Tensor
        ``(B, *out_shape)`` in x's dtype (computed in float32 for half-precision inputs).
    """
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    a, a_t = matrix.get(x.device, dtype)
    if transpose:
        a, a_t = a_t, a
    flat = x.reshape(x.shape[0], -1).to(dtype)
    out = _SparseApply.apply(flat, a, a_t)
    return out.reshape(x.shape[0], *out_shape).to(x.dtype)


# --- argument checks -------------------------------------------------------------------------

def as_angles(angles) -> tuple[float, ...]:
    """Angles in radians (a sequence, numpy array or tensor) as a tuple of float64 values."""
    if isinstance(angles, torch.Tensor):
        angles = angles.detach().cpu().double().numpy()
    arr = np.asarray(angles, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError("angles must be a non-empty sequence of finite numbers (radians)")
    return tuple(float(a) for a in arr)


def unmeasured_arc(angles: torch.Tensor, half_width: float = 0.0) -> float:
    """The widest range of ray directions (radians, modulo π) that no view measures.

    View k measures the directions [θ_k − w, θ_k + w] (w = ``half_width``: 0 for parallel
    beams, half the fan angle for a fan). Intervals of equal length sorted by their start are
    also sorted by their end, so the widest gap is the largest spacing between neighbouring
    starts on the circle of circumference π, less 2w (0 when the views cover every direction).
    For n views equally spaced over [0, π) it is π/n; for views over a limited arc [0, α),
    π − α plus one spacing.
    """
    if 2 * half_width >= math.pi:
        return 0.0
    starts = torch.sort(torch.remainder(angles.double() - half_width, math.pi)).values
    spacings = torch.diff(torch.cat([starts, starts[:1] + math.pi]))
    return max(float(spacings.max()) - 2 * half_width, 0.0)


def check_projector(projector: str) -> str:
    """``projector`` if it names one of ASTRA's CPU projectors, else a ValueError."""
    if projector not in PROJECTORS:
        raise ValueError(f"unknown projector {projector!r}; expected one of {', '.join(PROJECTORS)} "
                         "(ASTRA's CPU projectors)")
    return projector
