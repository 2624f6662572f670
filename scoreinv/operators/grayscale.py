"""Colorization: y = (R + G + B)/√3, the first coordinate of an orthonormal colour transform."""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import Shape, SubsampledTransformOp
from .mask import _image_hw
from .noise import NoiseModel, make_noise, noise_from_config
from .registry import OperatorSpec, register_family

_SQRT3 = math.sqrt(3.0)

# Rows of the colour-decoupling transform z = M x (over channels). Row 0 is the gray
# axis; the rows are score_sde's decoupling columns (1,1,1)/√3, (−0.816, 0.408, 0.408),
# (0, 0.707, −0.707), written exactly so that M Mᵀ = I to machine precision.
_M = torch.tensor([
    [1.0 / math.sqrt(3.0), 1.0 / math.sqrt(3.0), 1.0 / math.sqrt(3.0)],
    [-2.0 / math.sqrt(6.0), 1.0 / math.sqrt(6.0), 1.0 / math.sqrt(6.0)],
    [0.0, 1.0 / math.sqrt(2.0), -1.0 / math.sqrt(2.0)],
], dtype=torch.float64)


class GrayscaleOp(SubsampledTransformOp):
    """Colorization of RGB images: keep the gray coordinate of an orthonormal colour transform.

    T = M applied over channels (``z[:, i] = Σ_j M[i, j] x[:, j]``), M orthonormal with
    first row (1, 1, 1)/√3; Λ keeps channel 0 of T x. So

        y = (R + G + B) / √3,   in_shape (3, H, W), full_shape (3, H, W), out_shape (1, H, W).

    The gray scale is √3 times the channel mean: a gray image g in [0, 1] (the mean
    of R, G, B) is the measurement ``y = √3·g`` (:meth:`from_gray`), and
    :meth:`to_gray` maps back. ``inverse_transform = Mᵀ`` (exact). ``pinv(y) = Aᵀ y``,
    the minimum-norm solution: every channel equals the gray image y/√3.

    Parameters
    ----------
    image_size:
        N or (H, W). None (``GrayscaleOp()``): the operator acts per pixel and takes any
        (B, 3, H, W) images and (B, 1, H, W) measurements, binding to their size
        (:meth:`bind` sizes it from (1, H, W) measurements or (3, H, W) images).
    noise_std, noise:
        Gaussian noise of that std on the measurement, or any noise model.
    """

    matrix = _M.float()
    modality = "colour"

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"full-transform", "exact-inverse"})

    def __init__(self, image_size=None, noise_std: float = 0.0, *, noise: NoiseModel | None = None) -> None:
        noise = make_noise(noise_std, noise, "GrayscaleOp")
        if image_size is None:
            self._hw = None
            super().__init__(None, None, noise=noise)
            return
        hw = _image_hw(image_size)
        self._hw = hw
        super().__init__((3, *hw), (1, *hw), noise=noise)
        self.full_shape = (3, *hw)
        mask = torch.zeros(self.full_shape)
        mask[0] = 1.0
        self.mask = mask

    # --- sizes and options ------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        return {"image_size": self._hw, "noise_std": 0.0, "noise": self.noise}

    @staticmethod
    def _size_of(shape: Shape, channels: int, what: str) -> tuple[int, int]:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or shape[0] != channels:
            raise ValueError(f"GrayscaleOp takes {what} of shape ({channels}, H, W), not {shape}")
        return shape[1], shape[2]

    def bind(self, *, image_shape: Shape | None = None, measurement_shape: Shape | None = None) -> GrayscaleOp:
        """This operator for (3, H, W) images and (1, H, W) measurements (see the base class)."""
        from_image = None if image_shape is None else self._size_of(image_shape, 3, "images")
        from_measurement = None if measurement_shape is None else self._size_of(measurement_shape, 1,
                                                                                 "measurements")
        if self._hw is not None:
            h, w = self._hw
            if from_image is not None and from_image != self._hw:
                raise ValueError(f"GrayscaleOp was built for {h}×{w} images, the model works on "
                                 f"{from_image[0]}×{from_image[1]}")
            if from_measurement is not None and from_measurement != self._hw:
                raise ValueError(f"the measurement is {from_measurement[0]}×{from_measurement[1]}, the "
                                 f"GrayscaleOp was built for {h}×{w} images")
            return self
        if from_image is not None and from_measurement is not None and from_image != from_measurement:
            raise ValueError(f"the measurement is {from_measurement[0]}×{from_measurement[1]}, the model "
                             f"works on {from_image[0]}×{from_image[1]}")
        hw = from_image if from_image is not None else from_measurement
        return self if hw is None else self._bound_copy(hw, image_size=hw)

    def _bind_full(self, shape: Shape) -> GrayscaleOp:
        return self.bind(image_shape=shape)

    @staticmethod
    def from_gray(gray):
        """Measurement y = √3·g from a gray image g (the channel mean, e.g. in [0, 1])."""
        return gray * _SQRT3

    @staticmethod
    def to_gray(y):
        """The gray image g = y/√3 (the channel mean) from a measurement y."""
        return y / _SQRT3

    def _mat(self, like):
        return self._on("M", _M, like)

    def _transform(self, x):
        return torch.einsum("ij,bjhw->bihw", self._mat(x), x)

    def _inverse_transform(self, z):
        return torch.einsum("ji,bjhw->bihw", self._mat(z), z)

    _transform_adjoint = _inverse_transform

    def _subsample(self, z):
        return z[:, :1]

    def _embed(self, y):
        return torch.cat([y, y.new_zeros((y.shape[0], 2, *y.shape[2:]))], dim=1)

    def _forward(self, x):
        return x.sum(dim=1, keepdim=True) / _SQRT3

    def _adjoint(self, y):
        return (y / _SQRT3).expand(-1, 3, -1, -1).contiguous()

    _pinv = _adjoint

    def config(self) -> dict:
        if self._hw is None:
            return {"type": "GrayscaleOp", "image_size": None,
                    "noise": None if self.noise is None else self.noise.config()}
        cfg = super().config()
        cfg["image_size"] = list(self._hw)
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> GrayscaleOp:
        """Rebuild from :meth:`config` (sized or not)."""
        size = config.get("image_size")
        return cls(None if size is None else tuple(size), noise=noise_from_config(config.get("noise")))

    def __repr__(self) -> str:
        return f"GrayscaleOp(image_size={self._hw}, noise={self.noise!r})"


class GrayscaleSpec(OperatorSpec):
    """``--operator grayscale``: a :class:`GrayscaleOp` on (3, N, N) images."""

    def build(self, image_size: int, channels: int) -> GrayscaleOp:
        if channels != 3:
            raise ValueError(f"operator 'grayscale' works on 3-channel images, the model has {channels}")
        return GrayscaleOp(image_size, noise_std=self.noise_std)


register_family("grayscale", GrayscaleOp, GrayscaleSpec)
