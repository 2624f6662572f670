"""Colorization: y = (R + G + B)/√3, the first coordinate of an orthonormal colour transform."""

from __future__ import annotations

import math

import torch

from .base import SubsampledTransformOp
from .mask import _image_hw
from .noise import NoiseModel, make_noise

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
    """

    matrix = _M.float()
    modality = "colour"

    def default_settings(self) -> dict:
        return {"method": "replacement", "steps": 1000, "snr": 0.16}

    def __init__(self, image_size, noise_std: float = 0.0, *, noise: NoiseModel | None = None) -> None:
        hw = _image_hw(image_size)
        super().__init__((3, *hw), (1, *hw), noise=make_noise(noise_std, noise, "GrayscaleOp"))
        self.full_shape = (3, *hw)
        mask = torch.zeros(self.full_shape)
        mask[0] = 1.0
        self.mask = mask

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
        cfg = super().config()
        cfg["image_size"] = list(self.in_shape[1:])
        return cfg
