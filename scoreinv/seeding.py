"""Per-item random streams: seeds and generators that make a result independent of batching.

:func:`item_seed` mixes ``(purpose, seed, item, sample)`` into the seed of one row;
:class:`ItemGenerators` holds one ``torch.Generator`` per batch row, so that row b of every
draw comes from its own stream; :func:`standard_normal` and :func:`randn` draw through either
a plain ``torch.Generator`` or an :class:`ItemGenerators`, on the generator's device. The
samplers, the solvers and the SDEs' prior sampling draw their noise through these functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def item_seed(seed: int, item: int, sample: int = 0, purpose: str = "posterior") -> int:
    """The seed of one (item, sample) row: a fixed mixing of ``(purpose, seed, item, sample)``.

    The first 8 bytes (little-endian) of the BLAKE2b digest (``digest_size=8``) of the text
    ``f"scoreinv:{purpose}:{seed}:{item}:{sample}"``, with the top bit cleared (a value in
    [0, 2**63)). A hash rather than ``seed + item`` so that neighbouring seeds do not share
    rows (seed 0 item 1 ≠ seed 1 item 0); ``purpose`` keeps separate streams apart
    (``"posterior"`` for the sampler, ``"simulate"`` for measurement noise).
    """
    for name, value in (("seed", seed), ("item", item), ("sample", sample)):
        if int(value) < 0:
            raise ValueError(f"item_seed: {name} must be >= 0, got {value}")
    text = f"scoreinv:{purpose}:{int(seed)}:{int(item)}:{int(sample)}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & (2**63 - 1)


class ItemGenerators:
    """One ``torch.Generator`` per batch row: row b of every draw comes from generator b.

    Pass it wherever a sampler takes ``generator=``: :func:`standard_normal` and
    :meth:`scoreinv.sde.SDE.prior_sampling` draw each row's ``shape[1:]`` from its own generator and stack
    the rows. Row b's random stream then depends only on its own seed, never on which other
    rows share the batch, which makes a reconstruction independent of how items are batched.
    All generators live on one device (the draws happen there and are moved, as for a plain
    generator).

    >>> gens = ItemGenerators.from_seeds([item_seed(0, i) for i in range(4)])
    >>> x_T = scoreinv.sde.VESDE(0.01, 50.0).prior_sampling((4, 1, 64, 64), generator=gens)
    """

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        generators = list(generators)
        if not generators:
            raise ValueError("ItemGenerators needs at least one generator")
        if not all(isinstance(g, torch.Generator) for g in generators):
            raise ValueError("ItemGenerators expects torch.Generator objects")
        devices = {g.device for g in generators}
        if len(devices) > 1:
            raise ValueError(f"ItemGenerators: all generators must be on one device, got {sorted(map(str, devices))}")
        self.generators = generators

    @classmethod
    def from_seeds(cls, seeds: Sequence[int], device: torch.device | str = "cpu") -> ItemGenerators:
        """One generator per seed, on ``device``."""
        return cls([torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds])

    @property
    def device(self) -> torch.device:
        return self.generators[0].device

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """N(0, I) of ``shape`` (B = ``shape[0]`` = the number of generators), on :attr:`device`."""
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != len(self.generators):
            raise ValueError(f"ItemGenerators holds {len(self.generators)} generators (one per row) "
                             f"but the draw has shape {shape}")
        rows = [torch.randn(shape[1:], generator=g, device=self.device, dtype=dtype) for g in self.generators]
        return torch.stack(rows)


Generator = torch.Generator | ItemGenerators


def randn(shape: Sequence[int], generator: Generator | None, device, dtype: torch.dtype) -> torch.Tensor:
    """N(0, I) of ``shape`` drawn through ``generator`` on the generator's device.

    A CPU generator cannot fill a CUDA tensor, so the draw happens where the generator lives
    (``device`` when there is none); the caller moves it. With :class:`ItemGenerators`, row b is
    drawn from generator b.
    """
    if isinstance(generator, ItemGenerators):
        return generator.randn(shape, dtype=dtype)
    source = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=source, dtype=dtype)


def standard_normal(like: torch.Tensor, generator: Generator | None = None) -> torch.Tensor:
    """z ~ N(0, I) with the shape, dtype and device of ``like``, drawn through ``generator``.

    The draw happens on the generator's device and is then moved, so a CPU generator
    drives a CUDA computation reproducibly (a CPU generator cannot fill a CUDA tensor).
    With :class:`ItemGenerators`, row b is drawn from generator b.
    """
    return randn(like.shape, generator, like.device, like.dtype).to(like.device)
