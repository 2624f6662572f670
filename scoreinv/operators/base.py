"""Linear forward operators y = A x (+ noise), their composition, and least squares.

Every operator maps a batch ``x`` of shape ``(B, *in_shape)`` to ``(B, *out_shape)``
on the input's device and dtype, and has an adjoint, an approximate inverse
(``pinv``) and an optional noise model. The subsampled-transform family
A = Λ T of Song et al. (2022) adds the full transform T, its (approximate)
inverse and the subsampling Λ, which is what the consistency step of the
conditional samplers needs.

This subpackage is a leaf: it imports nothing else from scoreinv.
"""

from __future__ import annotations

import abc
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

Shape = tuple[int, ...]


def _shape_str(shape: Shape) -> str:
    return "(B, " + ", ".join(str(s) for s in shape) + ")"


def validate(t: Any, shape: Shape, where: str, *, check_finite: bool = True) -> torch.Tensor:
    """Check that ``t`` is a finite floating-point tensor of shape ``(B, *shape)``.

    Raises ValueError naming ``where`` and the expected shape otherwise.
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{where} expects a torch.Tensor of shape {_shape_str(shape)}, "
                         f"got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{where} expects a floating-point tensor of shape {_shape_str(shape)}, "
                         f"got dtype {t.dtype}")
    if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != tuple(shape):
        hint = " (add a leading batch dimension)" if tuple(t.shape) == tuple(shape) else ""
        raise ValueError(f"{where} expects shape {_shape_str(shape)}, got {tuple(t.shape)}{hint}")
    if check_finite and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{where}: the input of shape {tuple(t.shape)} contains NaN or inf")
    return t


def _per_item_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """⟨a_i, b_i⟩ for each item: shape (B,)."""
    return (a * b).flatten(1).sum(1)


def _items(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-item values (B,) reshaped to broadcast against ``like`` (B, ...)."""
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1)))


#: Bound copies an operator without a size keeps (one per size met).
_BOUND_COPIES = 16


class LinearOperator(abc.ABC):
    """A linear map A from ``(B, *in_shape)`` to ``(B, *out_shape)`` with a noise model.

    Subclasses implement ``_forward`` and ``_adjoint`` on already-validated input
    (and may override ``_pinv``). The public methods validate the input shape and
    reject NaN/inf with a ValueError.

    An operator may be built without a size (``RadonOp(23)``, ``GrayscaleOp()``: pass
    ``None`` shapes to this constructor): :meth:`bind` then gives the sized copy for given
    image or measurement shapes, and calling it on data binds it to the data's shape (the
    bound copies are kept, one per size). Its ``in_shape`` / ``out_shape`` raise a
    ValueError until then.

    Attributes
    ----------
    in_shape, out_shape:
        Per-item shapes (without the batch dimension).
    noise:
        A noise model (:class:`~scoreinv.operators.GaussianNoise`,
        :class:`~scoreinv.operators.PoissonNoise`) or None for noiseless data.
    """

    def __init__(self, in_shape: Shape | None, out_shape: Shape | None, noise=None) -> None:
        self._in_shape = None if in_shape is None else tuple(int(s) for s in in_shape)
        self._out_shape = None if out_shape is None else tuple(int(s) for s in out_shape)
        self.noise = noise
        self._device_cache: dict[tuple, torch.Tensor] = {}
        self._bound: OrderedDict[Any, LinearOperator] = OrderedDict()

    # --- size -----------------------------------------------------------------------------------
    @property
    def is_sized(self) -> bool:
        """Whether the operator knows its shapes (False for ``RadonOp(23)`` until bound)."""
        return self._in_shape is not None

    def _unsized_error(self, what: str) -> ValueError:
        return ValueError(f"{self.name} has no image size yet, so no {what}: pass image_size=... "
                          "or bind it (op.bind(image_shape=..., measurement_shape=...); calling it on "
                          "data binds it to the data's shape)")

    @property
    def in_shape(self) -> Shape:
        """Per-item shape of the images, e.g. (1, N, N)."""
        if self._in_shape is None:
            raise self._unsized_error("in_shape")
        return self._in_shape

    @property
    def out_shape(self) -> Shape:
        """Per-item shape of the measurements, e.g. (1, n_views, n_detectors)."""
        if self._out_shape is None:
            raise self._unsized_error("out_shape")
        return self._out_shape

    def _bound_copy(self, key: Any, **size_options) -> LinearOperator:
        """The copy of this operator with ``size_options`` set, made once per ``key`` and kept."""
        copy = self._bound.get(key)
        if copy is None:
            copy = self.with_options(**size_options)
            self._bound[key] = copy
            while len(self._bound) > _BOUND_COPIES:
                self._bound.popitem(last=False)
        else:
            self._bound.move_to_end(key)
        return copy

    def _bind_full(self, shape: Shape) -> LinearOperator:
        """The operator bound to full-transform items of ``shape`` (subsampled transforms)."""
        raise self._unsized_error("full_shape")

    def _taking(self, t: Any, role: str) -> LinearOperator:
        """The operator that takes ``t`` as its ``role`` ("image", "measurement", "full"):
        itself when sized, else its copy bound to the shape of ``t`` (B, C, H, W)."""
        if self._in_shape is not None:
            return self
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{self.name} expects a torch.Tensor of shape (B, C, H, W), got {type(t).__name__}")
        if t.dim() != 4:
            hint = " (add a leading batch dimension)" if t.dim() == 3 else ""
            raise ValueError(f"{self.name} expects a batch of shape (B, C, H, W), got {tuple(t.shape)}{hint}")
        shape = tuple(t.shape[1:])
        if role == "image":
            return self.bind(image_shape=shape)
        if role == "measurement":
            return self.bind(measurement_shape=shape)
        return self._bind_full(shape)

    # --- options --------------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        """The constructor's keyword arguments that rebuild this operator (for :meth:`with_options`)."""
        return {}

    def _merge_options(self, current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        merged = {**current, **changes}
        # noise_std= and noise= describe the same thing: setting one clears the other
        if "noise_std" in changes and "noise" not in changes and "noise" in merged:
            merged["noise"] = None
        if "noise" in changes and "noise_std" not in changes and "noise_std" in merged:
            merged["noise_std"] = 0.0
        return merged

    def _share_from(self, other: LinearOperator, changes: dict[str, Any]) -> None:
        """Take over what ``other`` (the operator this one was copied from) has built and still fits."""

    def with_options(self, **options: Any) -> LinearOperator:
        """A copy of this operator with some constructor options changed.

        ``radon.with_options(fbp_filter="hann")`` is the same geometry with another FBP window;
        the copy shares what is already built (system matrices, caches) where it still fits.

        Parameters
        ----------
        **options:
            Keyword arguments of the operator's constructor (``noise_std``, ``fbp_filter``, ...).

        Returns
        -------
        LinearOperator
            A new operator of the same type (the operator itself when no option is given).

        Raises
        ------
        ValueError
            Naming the operator and the option when it has no such option (or when the
            constructor refuses the new value).
        """
        if not options:
            return self
        current = self._options()
        unknown = [name for name in options if name not in current]
        if unknown:
            known = ", ".join(current) if current else "none"
            raise ValueError(f"{self.name} has no option {unknown[0]!r} (its options: {known})")
        copy = type(self)(**self._merge_options(current, options))
        copy._share_from(self, options)
        return copy

    def __getstate__(self) -> dict:
        # Pickles carry the description, not per-device copies or bound copies.
        state = self.__dict__.copy()
        state["_device_cache"] = {}
        state["_bound"] = OrderedDict()
        return state

    # --- to implement -------------------------------------------------------------------------
    @abc.abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def _adjoint(self, y: torch.Tensor) -> torch.Tensor: ...

    def _pinv(self, y: torch.Tensor) -> torch.Tensor:
        return _cgls(self, y, None, 20, 0.0)

    # --- public -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x: ``(B, *in_shape)`` -> ``(B, *out_shape)``."""
        op = self._taking(x, "image")
        return op._forward(validate(x, op.in_shape, f"{op.name}.forward"))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Aᵀ y: ``(B, *out_shape)`` -> ``(B, *in_shape)``."""
        op = self._taking(y, "measurement")
        return op._adjoint(validate(y, op.out_shape, f"{op.name}.adjoint"))

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """An approximate inverse of A (zero filling, FBP, ...): ``(B, *out_shape)`` ->
        ``(B, *in_shape)``. The base class runs 20 CG iterations on the normal equations."""
        op = self._taking(y, "measurement")
        return op._pinv(validate(y, op.out_shape, f"{op.name}.pinv"))

    @property
    def noise_std(self) -> float:
        """Standard deviation of the measurement noise (0.0 when noiseless)."""
        return 0.0 if self.noise is None else float(self.noise.std)

    def simulate(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A noisy measurement A x + n (A x when the operator has no noise model)."""
        y = self.forward(x)
        return y if self.noise is None else self.noise(y, generator=generator)

    @property
    def name(self) -> str:
        return type(self).__name__

    # --- what the reconstruction asks of an operator family -----------------------------------
    #: The prior domain this operator's images come from ("ct", "colour"), or None for any:
    #: ``reconstruct`` picks a bundled prior of that domain when no model is given.
    modality: str | None = None

    @property
    def capabilities(self) -> frozenset[str]:
        """What this operator offers the solvers, by name (the solvers' policy and methods read them;
        an operator names no method):

        * ``"full-transform"``: A = Λ T with a full transform T, its (approximate) inverse T⁻¹ and
          the subsampling Λ (:class:`SubsampledTransformOp`);
        * ``"exact-inverse"``: that T⁻¹ is exact (masks, colour);
        * ``"line-integrals"``: measurements are line integrals through the image (CT sinograms).

        A plain operator has none: it offers A, Aᵀ and autograd.
        """
        return frozenset()

    def bind(self, *, image_shape: Shape | None = None, measurement_shape: Shape | None = None) -> LinearOperator:
        """This operator for images of ``image_shape`` and measurements of ``measurement_shape``.

        An operator built without a size (``RadonOp(23)``, ``GrayscaleOp()``) takes it from
        either shape and returns a sized copy (kept: binding again to the same size gives the
        same copy); a sized one checks the shapes and returns itself.

        Parameters
        ----------
        image_shape:
            One image (C, H, W), without the batch dimension: the model's, in a reconstruction.
        measurement_shape:
            One measurement item, without the batch dimension.

        Returns
        -------
        LinearOperator
            The sized operator (itself when neither shape is given and it has no size).

        Raises
        ------
        ValueError
            Naming both sizes when the shapes disagree with each other or with the operator.
        """
        if image_shape is not None and tuple(image_shape) != tuple(self.in_shape):
            raise ValueError(f"{self.name} works on images of shape {tuple(self.in_shape)}, "
                             f"not {tuple(image_shape)}")
        if measurement_shape is not None and tuple(measurement_shape) != tuple(self.out_shape):
            raise ValueError(f"{self.name} produces measurements of shape {tuple(self.out_shape)}, "
                             f"not {tuple(measurement_shape)}")
        return self

    @property
    def measurement_ndim(self) -> int:
        """Dimensions of one measurement item (without the batch dimension); 3 for an operator
        without a size (its measurements, like its images, are (C, H, W)-like items)."""
        return 3 if self._out_shape is None else len(self._out_shape)

    def config(self) -> dict:
        """A JSON-serialisable description (type, geometry, noise)."""
        return {"type": self.name, "in_shape": list(self.in_shape),
                "out_shape": list(self.out_shape), "noise": _noise_config(self.noise)}

    def __repr__(self) -> str:
        return f"{self.name}(in_shape={self.in_shape}, out_shape={self.out_shape}, noise={self.noise!r})"

    def __matmul__(self, other: LinearOperator) -> ComposedOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return ComposedOperator(self, other)

    # --- diagnostics --------------------------------------------------------------------------
    def check_adjoint(self, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu",
                      batch: int = 2, shape: Shape | None = None) -> float:
        """Relative adjointness error |⟨Ax, y⟩ − ⟨x, Aᵀy⟩| / (‖Ax‖ ‖y‖) on random x, y.

        Parameters
        ----------
        generator, dtype, device, batch:
            How the random x (batch, *in_shape) and y (batch, *out_shape) are drawn.
        shape:
            The image shape (C, H, W) to check at: an operator without a size is bound to it
            (a sized one must have it). None: ``in_shape``.

        Returns
        -------
        float
            The relative error (0 for an exact adjoint; ~1e-16 in float64 rounding).
        """
        op = self if shape is None else self.bind(image_shape=tuple(shape))
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        x = torch.randn((batch, *op.in_shape), generator=g, dtype=dtype).to(device)
        y = torch.randn((batch, *op.out_shape), generator=g, dtype=dtype).to(device)
        with torch.no_grad():
            ax = op.forward(x)
            aty = op.adjoint(y)
        lhs = (ax * y).sum()
        rhs = (x * aty).sum()
        scale = ax.norm() * y.norm()
        return float((lhs - rhs).abs() / scale) if scale > 0 else float((lhs - rhs).abs())

    def norm(self, iterations: int = 50, generator: torch.Generator | None = None,
             dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> float:
        """Spectral norm ‖A‖₂ (largest singular value) by the power method on AᵀA."""
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        x = torch.randn((1, *self.in_shape), generator=g, dtype=dtype).to(device)
        with torch.no_grad():
            x = x / x.norm()
            for _ in range(iterations):
                z = self._adjoint(self._forward(x))
                size = z.norm()
                if size == 0:
                    return 0.0
                x = z / size
            estimate = float(self._forward(x).norm())  # ‖A x‖ with ‖x‖ = 1
        return estimate

    # --- helpers for subclasses ---------------------------------------------------------------
    def _on(self, name: str, tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``tensor`` moved to ``like``'s device and dtype, cached per (name, device, dtype)."""
        key = (name, like.device, like.dtype)
        cached = self._device_cache.get(key)
        if cached is None:
            cached = tensor.to(device=like.device, dtype=like.dtype)
            self._device_cache[key] = cached
        return cached


def bind_sinograms(op: LinearOperator, image_shape: Shape | None, measurement_shape: Shape | None, *,
                   given_detectors: int | None, detectors_option: str,
                   size_for_detectors: Callable[[int], int]) -> LinearOperator:
    """:meth:`LinearOperator.bind` for the CT families: (1, N, N) images, (1, n_views, D) sinograms.

    ``op`` has ``n_views``, ``image_size`` and ``n_detectors`` (None while it has no size). A
    sized ``op`` checks the shapes and returns itself; one without a size takes N from the
    images, or from D through ``size_for_detectors`` (the N whose default detector count is D;
    a ValueError when none is) unless the user gave the count (``given_detectors``, the
    constructor option ``detectors_option``), and returns its bound copy of that size. A
    ValueError names both sizes when they disagree (with each other or with ``op``).
    """
    name = op.name
    n_image = d = None
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or shape[0] != 1 or shape[1] != shape[2]:
            raise ValueError(f"{name} works on images of shape (1, N, N), not {shape}")
        n_image = shape[1]
    if measurement_shape is not None:
        shape = tuple(int(s) for s in measurement_shape)
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f"{name} takes sinograms of shape (1, {op.n_views}, D), not {shape}")
        if shape[1] != op.n_views:
            raise ValueError(f"the sinogram has {shape[1]} views, the {name} measures {op.n_views} "
                             f"(sinograms of shape (1, {op.n_views}, D))")
        d = shape[2]
    if op.is_sized:
        size = op.image_size
        if n_image is not None and n_image != size:
            raise ValueError(f"{name} was built for {size}×{size} images, the model works on {n_image}×{n_image}")
        if d is not None and d != op.n_detectors:
            fits = ""
            if given_detectors is None:
                try:
                    n = size_for_detectors(d)
                    fits = f", which fit {n}×{n} images"
                except ValueError:
                    pass
            raise ValueError(f"{name} was built for {size}×{size} images and produces measurements of shape "
                             f"{tuple(op.out_shape)}, not {tuple(measurement_shape)}: the sinogram has {d} "
                             f"detectors{fits}")
        return op
    n_sinogram = None
    if d is not None:
        if given_detectors is not None:
            if d != given_detectors:
                raise ValueError(f"the sinogram has {d} detectors, the {name} {given_detectors} ({detectors_option})")
        else:
            n_sinogram = size_for_detectors(d)
    if n_image is not None and n_sinogram is not None and n_image != n_sinogram:
        raise ValueError(f"the sinogram's {d} detectors fit {n_sinogram}×{n_sinogram} images, the model works "
                         f"on {n_image}×{n_image}")
    size = n_image if n_image is not None else n_sinogram
    if size is None:
        if d is not None:
            raise ValueError(f"a {name} with {detectors_option}={given_detectors} cannot tell the image size from "
                             "the sinogram: pass image_size= or the image shape")
        return op
    return op._bound_copy(size, image_size=size)


def coarse_sinogram(y: torch.Tensor, ratio: float, coarse_detectors: int) -> torch.Tensor:
    """The sinogram of the same scan seen by cells ``ratio`` times wider, for images ``ratio`` times coarser.

    The fine sinogram's D cells have width τ and are centred on the axis; the coarse one's d
    cells have width ratio·τ, also centred. Each coarse value is the mean of the fine detector
    profile (piecewise constant over its cells, 0 beyond them) over the coarse cell, divided by
    ``ratio``: a line integral is in units of the image pixel, and a coarse pixel is ``ratio``
    fine ones wide. For an image that is constant on each coarse pixel this is the coarse
    geometry's sinogram up to the projector's discretisation.

    Parameters
    ----------
    y:
        Fine sinograms (..., D).
    ratio:
        N / n ≥ 1, the fine image size over the coarse one.
    coarse_detectors:
        d, the coarse cell count (ceil(D / ratio) covers the fine detector).

    Returns
    -------
    torch.Tensor
        (..., d), same dtype and device as ``y``.
    """
    if not ratio >= 1.0:
        raise ValueError(f"a coarse sinogram needs ratio >= 1, got {ratio}")
    count = y.shape[-1]
    work = y.to(torch.float64)
    # F(u) = integral of the detector profile from the first cell's left edge to u, in cell widths
    integral = torch.cat([work.new_zeros(*work.shape[:-1], 1), torch.cumsum(work, dim=-1)], dim=-1)
    centres = (torch.arange(coarse_detectors, dtype=torch.float64, device=y.device)
               - (coarse_detectors - 1) / 2) * ratio + count / 2

    def integral_at(u: torch.Tensor) -> torch.Tensor:
        u = u.clamp(0.0, float(count))
        cell = u.floor().long().clamp(max=count - 1)
        fraction = u - cell
        return integral[..., cell] + fraction * (integral[..., cell + 1] - integral[..., cell])

    mean = (integral_at(centres + ratio / 2) - integral_at(centres - ratio / 2)) / ratio
    return (mean / ratio).to(y.dtype)


class CoarseViews:
    """The coarse view of a CT scan: the same rays for images n² instead of N² (a mixin of the CT families).

    A family lists ``"coarse-view"`` in its capabilities and gives :meth:`_coarse_options`, the
    constructor options that scale its lengths by n / N (image size, distances, detector count);
    the detector spacing keeps its value, since it is in units of the (now wider) pixel.
    """

    def _coarse_options(self, ratio: float) -> dict[str, Any]:
        raise NotImplementedError

    def coarsened(self, image_size: int, noise_std: float = 0.0) -> LinearOperator:
        """The operator of the same scan for ``image_size``² images (a bound operator of this family)."""
        ratio = self._coarse_ratio(image_size)
        return self.with_options(image_size=int(image_size), noise=None, noise_std=float(noise_std),
                                 **self._coarse_options(ratio))

    def coarse_measurement(self, y: torch.Tensor, coarse: LinearOperator) -> torch.Tensor:
        """This operator's sinograms (B, 1, V, D) as ``coarse`` (from :meth:`coarsened`) would measure
        them: :func:`coarse_sinogram` on each view, (B, 1, V, d)."""
        y = validate(y, self.out_shape, f"{self.name}.coarse_measurement")
        return coarse_sinogram(y, self._coarse_ratio(coarse.in_shape[-1]), coarse.out_shape[-1])

    def _coarse_ratio(self, image_size: int) -> float:
        if not self.is_sized:
            raise self._unsized_error("coarse view")
        size = self.in_shape[-1]
        if isinstance(image_size, bool) or not isinstance(image_size, int) or not 1 <= image_size <= size:
            raise ValueError(f"{self.name}: a coarse view needs an image size from 1 to {size}, got {image_size!r}")
        return size / image_size


def _noise_config(noise) -> dict | None:
    return None if noise is None else noise.config()


class ComposedOperator(LinearOperator):
    """A ∘ B (``op_a @ op_b``): forward A(B(x)), adjoint Bᵀ(Aᵀ(y)), noise of the outer A.

    ``pinv`` is B⁺(A⁺(y)) from the parts' approximate inverses.
    """

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        if tuple(inner.out_shape) != tuple(outer.in_shape):
            raise ValueError(f"cannot compose {outer.name} @ {inner.name}: {inner.name} produces "
                             f"{_shape_str(inner.out_shape)} but {outer.name} expects "
                             f"{_shape_str(outer.in_shape)}")
        super().__init__(inner.in_shape, outer.out_shape, noise=outer.noise)
        self.outer = outer
        self.inner = inner

    @property
    def name(self) -> str:
        return f"({self.outer.name} @ {self.inner.name})"

    def _forward(self, x):
        return self.outer._forward(self.inner._forward(x))

    def _adjoint(self, y):
        return self.inner._adjoint(self.outer._adjoint(y))

    def _pinv(self, y):
        return self.inner._pinv(self.outer._pinv(y))

    def _options(self) -> dict[str, Any]:
        return {"outer": self.outer, "inner": self.inner}

    def config(self) -> dict:
        return {"type": "ComposedOperator", "outer": self.outer.config(),
                "inner": self.inner.config()}

    def __repr__(self) -> str:
        return f"ComposedOperator({self.outer!r} @ {self.inner!r})"


class SubsampledTransformOp(LinearOperator):
    """A = Λ T: a full transform T followed by a subsampling Λ (Song et al., 2022).

    Members (per-item shapes, batched over the leading dimension):

    * ``full_shape``: the shape of T x;
    * ``transform(x)`` -> T x, ``(B, *full_shape)``;
    * ``inverse_transform(z)`` -> T⁻¹ z (exact or approximate), ``(B, *in_shape)``;
    * ``transform_adjoint(z)`` -> Tᵀ z, ``(B, *in_shape)``;
    * ``mask``: float tensor of ``full_shape``, 1 on the measured entries of T x;
    * ``subsample(z)`` -> Λ z, ``(B, *out_shape)``;
    * ``embed(y)`` -> the zero-filled ``(B, *full_shape)`` (Λᵀ, the adjoint of subsample);
    * ``inverse_transform_measured(r)`` -> T⁻¹ Λᵀ r, the inverse transform of values on the
      measured entries only (the update of a data-consistency step); operators override it
      where a cheaper exact equivalent exists. Where T⁻¹ is approximate, the operator's own
      options choose it (a :class:`RadonOp`'s ``fbp_filter``; ``with_options`` changes it).

    forward = subsample ∘ transform, adjoint = transform_adjoint ∘ embed. For a
    measurement y, ``embed(y) + (1 − mask)·transform(x)`` is the full transform of
    x with its measured entries replaced by y.
    """

    #: Set by subclasses (None while the operator has no size).
    _full_shape: Shape | None = None
    _mask: torch.Tensor | None = None

    @property
    def full_shape(self) -> Shape:
        """Per-item shape of the full transform T x."""
        if self._full_shape is None:
            raise self._unsized_error("full_shape")
        return self._full_shape

    @full_shape.setter
    def full_shape(self, shape: Shape) -> None:
        self._full_shape = tuple(int(s) for s in shape)

    @property
    def mask(self) -> torch.Tensor:
        """float32 tensor of ``full_shape``: 1 on the measured entries of T x, 0 elsewhere."""
        if self._mask is None:
            raise self._unsized_error("mask")
        return self._mask

    @mask.setter
    def mask(self, mask: torch.Tensor) -> None:
        self._mask = mask

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"full-transform"})

    # to implement
    @abc.abstractmethod
    def _transform(self, x): ...

    @abc.abstractmethod
    def _inverse_transform(self, z): ...

    @abc.abstractmethod
    def _transform_adjoint(self, z): ...

    @abc.abstractmethod
    def _subsample(self, z): ...

    @abc.abstractmethod
    def _embed(self, y): ...

    def _forward(self, x):
        return self._subsample(self._transform(x))

    def _adjoint(self, y):
        return self._transform_adjoint(self._embed(y))

    # public, validated
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """T x: ``(B, *in_shape)`` -> ``(B, *full_shape)``."""
        op = self._taking(x, "image")
        return op._transform(validate(x, op.in_shape, f"{op.name}.transform"))

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        """T⁻¹ z (exact or approximate): ``(B, *full_shape)`` -> ``(B, *in_shape)``."""
        op = self._taking(z, "full")
        return op._inverse_transform(validate(z, op.full_shape, f"{op.name}.inverse_transform"))

    def transform_adjoint(self, z: torch.Tensor) -> torch.Tensor:
        """Tᵀ z: ``(B, *full_shape)`` -> ``(B, *in_shape)``."""
        op = self._taking(z, "full")
        return op._transform_adjoint(validate(z, op.full_shape, f"{op.name}.transform_adjoint"))

    def subsample(self, z: torch.Tensor) -> torch.Tensor:
        """Λ z: ``(B, *full_shape)`` -> ``(B, *out_shape)``."""
        op = self._taking(z, "full")
        return op._subsample(validate(z, op.full_shape, f"{op.name}.subsample"))

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """Λᵀ y, zero-filled: ``(B, *out_shape)`` -> ``(B, *full_shape)``."""
        op = self._taking(y, "measurement")
        return op._embed(validate(y, op.out_shape, f"{op.name}.embed"))

    def _inverse_transform_measured(self, r):
        return self._inverse_transform(self._embed(r))

    def inverse_transform_measured(self, r: torch.Tensor) -> torch.Tensor:
        """T⁻¹ Λᵀ r: ``(B, *out_shape)`` -> ``(B, *in_shape)``, the inverse transform of values
        on the measured entries only (zero elsewhere)."""
        op = self._taking(r, "measurement")
        return op._inverse_transform_measured(
            validate(r, op.out_shape, f"{op.name}.inverse_transform_measured"))


# --- least squares -----------------------------------------------------------------------------

def least_squares(op: LinearOperator, y: torch.Tensor, x0: torch.Tensor | None = None,
                  iterations: int = 20, damping: float = 0.0) -> torch.Tensor:
    """Solve (AᵀA + damping·I) x = Aᵀ y by conjugate gradients, per item, from ``x0``.

    Batched: every item has its own CG step sizes. The iteration is CGLS (CG on the
    normal equations written with the residual y − A x, which avoids forming AᵀA and
    loses less precision). Warm-started at ``x0`` (zeros when None), it converges to
    the least-squares solution closest to x0 in the null-space directions of A;
    ``least_squares(op, y, x0=x)`` is therefore the projection x + A⁺(y − A x) onto
    {A x = y} (for consistent y and enough iterations). ``damping > 0`` gives the
    Tikhonov-regularised (noise-aware) solution instead.
    """
    if not isinstance(op, LinearOperator):
        raise ValueError(f"least_squares expects a LinearOperator, got {type(op).__name__}")
    y = validate(y, op.out_shape, f"least_squares: y for {op.name}")
    if x0 is not None:
        x0 = validate(x0, op.in_shape, f"least_squares: x0 for {op.name}")
        if x0.shape[0] != y.shape[0]:
            raise ValueError(f"least_squares: x0 has batch size {x0.shape[0]}, y has {y.shape[0]}")
    if iterations < 0:
        raise ValueError(f"least_squares: iterations must be >= 0, got {iterations}")
    damping = float(damping)
    if not math.isfinite(damping) or damping < 0:
        raise ValueError(f"least_squares: damping must be a finite number >= 0, got {damping}")
    return _cgls(op, y, x0, iterations, damping)


def _cgls(op: LinearOperator, y, x0, iterations: int, damping: float):
    if x0 is None:
        x = torch.zeros((y.shape[0], *op.in_shape), dtype=y.dtype, device=y.device)
        r = y.clone()
    else:
        x = x0.to(dtype=y.dtype).clone()
        r = y - op._forward(x)
    s = op._adjoint(r)
    if damping:
        s = s - damping * x
    p = s
    gamma = _per_item_dot(s, s)
    # With damping, s = Aᵀr − δx cannot fall below the rounding level eps·‖Aᵀy‖: an item
    # that reaches it stops, since continuing amplifies rounding errors every iteration (with
    # large δ the iterate diverged to 1e8 or NaN). Without damping the iteration keeps going:
    # small singular values leave useful progress far below that level.
    tolerance = gamma * (10 * torch.finfo(y.dtype).eps) ** 2 if damping else torch.zeros_like(gamma)
    for _ in range(iterations):
        active = gamma > tolerance
        if not active.any():
            break
        q = op._forward(p)
        delta = _per_item_dot(q, q)
        if damping:
            delta = delta + damping * _per_item_dot(p, p)
        alpha = torch.where(active & (delta > 0), gamma / torch.where(delta > 0, delta, 1.0), 0.0)
        x = x + _items(alpha, x) * p
        r = r - _items(alpha, r) * q
        s = op._adjoint(r)
        if damping:
            s = s - damping * x
        gamma_new = _per_item_dot(s, s)
        beta = torch.where(active & (gamma > 0), gamma_new / torch.where(gamma > 0, gamma, 1.0), 0.0)
        p = s + _items(beta, p) * p
        gamma = gamma_new
    return x
