"""Inpainting: y = mask ⊙ x, the unknown pixels zeroed (T = identity, Λ = the known pixels)."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

from .base import LinearOperator, SubsampledTransformOp
from .noise import NoiseModel, make_noise, noise_from_config
from .registry import OperatorSpec, register_family

#: The constructor options that choose the mask.
_MASK_OPTIONS = ("mask", "boxes", "fraction", "generator", "image_size", "channels")


def _image_hw(image_size) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        hw = (int(image_size), int(image_size))
    else:
        try:
            hw = tuple(int(s) for s in image_size)
        except TypeError:
            raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}") from None
        if len(hw) != 2:
            raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}")
    if min(hw) <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return hw


def pack_mask(mask: torch.Tensor) -> dict[str, Any]:
    """A 0/1 mask as JSON-ready text: ``{"mask_packed": ..., "mask_shape": [...]}``.

    The bits (numpy.packbits, row-major) are zlib-compressed and base64-encoded. A (C, H, W)
    mask whose channels are all equal is stored as its (H, W) plane.

    Parameters
    ----------
    mask:
        (C, H, W) or (H, W), values 0 or 1.

    Returns
    -------
    dict
        ``mask_packed`` (str) and ``mask_shape`` (list of int), for :func:`unpack_mask`.
    """
    bits = mask.detach().cpu().numpy() != 0
    if bits.ndim == 3 and bool((bits == bits[:1]).all()):
        bits = bits[0]
    packed = base64.b64encode(zlib.compress(np.packbits(bits.reshape(-1)).tobytes(), 9)).decode("ascii")
    return {"mask_packed": packed, "mask_shape": list(bits.shape)}


def unpack_mask(packed: str, shape: Sequence[int]) -> np.ndarray:
    """The mask :func:`pack_mask` stored: a bool array of ``shape``."""
    shape = tuple(int(s) for s in shape)
    try:
        raw = np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=np.uint8)
    except (ValueError, zlib.error) as error:
        raise ValueError(f"the packed MaskOp mask is unreadable ({error})") from None
    count = int(np.prod(shape))
    if raw.size * 8 < count:
        raise ValueError(f"the packed MaskOp mask holds {raw.size * 8} bits, its shape {shape} needs {count}")
    return np.unpackbits(raw, count=count).astype(bool).reshape(shape)


class MaskOp(SubsampledTransformOp):
    """Inpainting with a fixed mask of known pixels.

    ``y = mask ⊙ x`` keeps the image shape: in_shape = out_shape = full_shape =
    ``(channels, H, W)``, unknown pixels are zero in y. T = identity,
    ``subsample(z) = mask ⊙ z``, ``embed(y) = mask ⊙ y``, ``pinv(y) = y`` (zero filling).

    The mask (1 = known / measured, 0 = missing) comes from exactly one of

    * ``mask``: an (H, W) or (C, H, W) bool / 0-1 array or tensor (an (H, W) mask
      is shared by all channels);
    * ``boxes``: ``[(top, left, height, width), ...]`` rectangles of *missing*
      pixels (clipped to the image), everything else known;
    * ``fraction``: keep exactly ``round(fraction · H · W)`` pixel positions chosen
      at random (the same positions in every channel), drawn with ``generator``.

    ``noise_std`` adds Gaussian noise to the known pixels (unknown ones stay zero).

    ``config()`` stores a non-box mask itself (packed bits, :func:`pack_mask`), so
    :func:`~scoreinv.operators.operator_from_config` rebuilds every MaskOp from its
    configuration alone.
    """

    def __init__(self, mask=None, *, image_size=None, channels: int = 1,
                 boxes: Sequence[Sequence[int]] | None = None, fraction: float | None = None,
                 generator: torch.Generator | None = None, noise_std: float = 0.0,
                 noise: NoiseModel | None = None) -> None:
        given = [name for name, value in (("mask", mask), ("boxes", boxes), ("fraction", fraction))
                 if value is not None]
        if len(given) != 1:
            raise ValueError("MaskOp needs exactly one of mask=, boxes= or fraction=, got "
                             + (", ".join(given) if given else "none"))
        channels = int(channels)
        if channels <= 0:
            raise ValueError(f"MaskOp: channels must be positive, got {channels}")
        self._boxes = None
        self._fraction = None
        if mask is not None:
            m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
            m = m.detach().cpu()
            if m.dim() not in (2, 3):
                raise ValueError(f"MaskOp: mask must have shape (H, W) or (C, H, W), got {tuple(m.shape)}")
            if m.dtype == torch.bool:
                m = m.double()
            elif not (m.is_floating_point() or m.dtype in (torch.uint8, torch.int8, torch.int16,
                                                           torch.int32, torch.int64)):
                raise ValueError(f"MaskOp: mask must be bool or 0/1 numbers, got dtype {m.dtype}")
            m = m.double()
            if not bool(((m == 0) | (m == 1)).all()):
                raise ValueError("MaskOp: mask values must be 0 (missing) or 1 (known)")
            if m.dim() == 3:
                if channels == 1:
                    channels = m.shape[0]
                if m.shape[0] not in (1, channels):
                    raise ValueError(f"MaskOp: mask has {m.shape[0]} channels, expected 1 or {channels}")
            hw = tuple(m.shape[-2:])
            if image_size is not None and _image_hw(image_size) != hw:
                raise ValueError(f"MaskOp: mask is {hw[0]}×{hw[1]} but image_size is {image_size!r}")
            m = m.reshape(-1, *hw).expand(channels, *hw).clone()
        else:
            if image_size is None:
                raise ValueError("MaskOp: image_size is required with boxes= or fraction=")
            hw = _image_hw(image_size)
            m2 = torch.ones(hw, dtype=torch.float64)
            if boxes is not None:
                self._boxes = []
                for box in boxes:
                    try:
                        top, left, height, width = (int(v) for v in box)
                    except (TypeError, ValueError):
                        raise ValueError(f"MaskOp: each box must be (top, left, height, width), "
                                         f"got {box!r}") from None
                    if height < 0 or width < 0:
                        raise ValueError(f"MaskOp: box {box!r} has a negative size")
                    m2[max(top, 0):max(top + height, 0), max(left, 0):max(left + width, 0)] = 0
                    self._boxes.append([top, left, height, width])
            else:
                fraction = float(fraction)
                if not 0.0 <= fraction <= 1.0:
                    raise ValueError(f"MaskOp: fraction must be in [0, 1], got {fraction}")
                self._fraction = fraction
                n = hw[0] * hw[1]
                keep = round(fraction * n)
                device = generator.device if generator is not None else "cpu"
                order = torch.randperm(n, generator=generator, device=device).cpu()
                flat = torch.zeros(n, dtype=torch.float64)
                flat[order[:keep]] = 1.0
                m2 = flat.reshape(hw)
            m = m2.expand(channels, *hw).clone()
        shape = (channels, *hw)
        super().__init__(shape, shape, noise=make_noise(noise_std, noise, "MaskOp"))
        self.full_shape = shape
        self.mask = m.float()
        self._mask64 = m

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({"full-transform", "exact-inverse"})

    # --- options ------------------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        # a random mask is kept as drawn: a copy does not draw again
        return {"mask": None if self._boxes is not None else self._mask64,
                "image_size": tuple(self.in_shape[1:]), "channels": self.in_shape[0],
                "boxes": self._boxes, "fraction": None, "generator": None,
                "noise_std": 0.0, "noise": self.noise}

    def _merge_options(self, current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        merged = super()._merge_options(current, changes)
        if any(name in changes for name in ("mask", "boxes", "fraction")):
            for name in ("mask", "boxes", "fraction"):
                if name not in changes:
                    merged[name] = None
        return merged

    def _share_from(self, other: LinearOperator, changes: dict[str, Any]) -> None:
        if not any(name in changes for name in _MASK_OPTIONS):
            self._fraction = other._fraction  # the same mask, still described by its fraction

    @property
    def known_fraction(self) -> float:
        """Fraction of the entries that are measured."""
        return float(self._mask64.mean())

    def _m(self, like):
        return self._on("mask", self._mask64, like)

    def _transform(self, x):
        return x

    def _inverse_transform(self, z):
        return z

    def _transform_adjoint(self, z):
        return z

    def _subsample(self, z):
        return z * self._m(z)

    def _embed(self, y):
        return y * self._m(y)

    def _forward(self, x):
        return x * self._m(x)

    def _adjoint(self, y):
        return y * self._m(y)

    def _pinv(self, y):
        return y * self._m(y)

    def simulate(self, x, generator=None):
        """mask ⊙ (x + n): noise only on the known pixels, unknown ones stay zero."""
        y = super().simulate(x, generator=generator)
        return y * self._m(y) if self.noise is not None else y

    def _sha256(self) -> str:
        return hashlib.sha256(self._mask64.to(torch.uint8).numpy().tobytes()).hexdigest()

    def config(self) -> dict:
        cfg = super().config()
        cfg.update(known_fraction=self.known_fraction, mask_sha256=self._sha256())
        if self._boxes is not None:
            cfg["boxes"] = self._boxes
        else:
            cfg.update(pack_mask(self._mask64))
        if self._fraction is not None:
            cfg["fraction"] = self._fraction
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> MaskOp:
        """Rebuild from :meth:`config`: from its boxes, or from its mask.

        The mask is the packed one in the configuration or, for configurations written
        without it, an array handed in as ``config["mask"]`` ((C, H, W) or (H, W), 0/1;
        :func:`~scoreinv.operators.operator_from_config`'s ``mask=``). Either must match
        ``mask_sha256`` when the configuration has one.
        """
        noise = noise_from_config(config.get("noise"))
        c, h, w = config["in_shape"]
        if "boxes" in config:
            return cls(image_size=(h, w), channels=c, boxes=config["boxes"], noise=noise)
        mask = config.get("mask")
        if mask is None and "mask_packed" in config:
            mask = unpack_mask(config["mask_packed"], config["mask_shape"])
        if mask is None:
            raise ValueError("a MaskOp with an explicit or random mask cannot be rebuilt from its "
                             "configuration alone: pass its mask (mask=...)")
        op = cls(mask, image_size=(h, w), channels=c, noise=noise)
        if "mask_sha256" in config and op._sha256() != config["mask_sha256"]:
            raise ValueError("the mask given does not match the MaskOp configuration (mask_sha256 differs)")
        if config.get("fraction") is not None:
            op._fraction = float(config["fraction"])
        return op

    def __repr__(self) -> str:
        how = (f"boxes={self._boxes}" if self._boxes is not None else
               f"fraction={self._fraction}" if self._fraction is not None else "mask=...")
        return (f"MaskOp({how}, shape={self.in_shape}, known_fraction={self.known_fraction:.3f}, "
                f"noise={self.noise!r})")


class MaskSpec(OperatorSpec):
    """``--operator mask``: a :class:`MaskOp` keeping a random ``fraction`` of the pixel positions
    (drawn with ``mask_seed``) or everything but the ``boxes``."""

    fraction: float | None = Field(None, gt=0, le=1, description="fraction of pixels kept, at random")
    boxes: tuple[tuple[int, int, int, int], ...] | None = Field(
        None, description="missing rectangles (top, left, height, width)")
    mask_seed: int = Field(0, ge=0, lt=2**63, description="seed of the random choice of kept pixels")

    @model_validator(mode="after")
    def _one_pattern(self) -> MaskSpec:
        if (self.fraction is None) == (self.boxes is None):
            raise ValueError("operator kind 'mask' needs exactly one of fraction (e.g. --fraction 0.3) or boxes")
        return self

    def build(self, image_size: int, channels: int) -> MaskOp:
        if self.boxes is not None:
            return MaskOp(image_size=image_size, channels=channels, boxes=self.boxes, noise_std=self.noise_std)
        generator = torch.Generator().manual_seed(self.mask_seed)
        return MaskOp(image_size=image_size, channels=channels, fraction=self.fraction, generator=generator,
                      noise_std=self.noise_std)


register_family("mask", MaskOp, MaskSpec)
