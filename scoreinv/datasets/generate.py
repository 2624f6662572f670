"""Generate a data set in blocks and write it to the HDF5 layout (:mod:`scoreinv.datasets.hdf5`).

A data set is described by a :class:`~scoreinv.config.PhantomDataConfig` or
:class:`~scoreinv.config.ColourDataConfig`, which is stored in the file's ``config``
attribute, so the file says how it was made and can be regenerated from it. Images are
generated ``block_size`` at a time and appended to the file, so 10,000 images at 128² never
sit in memory together. All blocks draw from one ``torch.Generator`` seeded once with
``seed``, so the first block is exactly what the in-memory generator returns for ``seed``
(``phantoms(family, m, size, seed)``, ``colour_crops(m, size, seed, ...)``) and the data
depend on ``block_size`` (for the ``"mixed"`` family each block is half ellipses, then half
chest phantoms).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch

from scoreinv.config import ColourDataConfig, PhantomDataConfig
from scoreinv.datasets.anatomy import anatomy_phantoms
from scoreinv.datasets.colour import COLOUR_SOURCES, colour_crops
from scoreinv.datasets.hdf5 import H5Writer
from scoreinv.datasets.phantoms import chest_phantoms, random_ellipses

DataConfig = PhantomDataConfig | ColourDataConfig


def data_blocks(config: DataConfig) -> Iterator[torch.Tensor]:
    """The images of a data set, block by block: ``(m, C, size, size)`` tensors, m <= block_size."""
    if not isinstance(config, (PhantomDataConfig, ColourDataConfig)):
        raise ValueError(f"not a data set configuration: {type(config).__name__}")
    generator = torch.Generator().manual_seed(config.seed)
    for start in range(0, config.n, config.block_size):
        count = min(config.block_size, config.n - start)
        if isinstance(config, ColourDataConfig):
            yield colour_crops(count, config.size, sources=config.sources, scale=config.scale,
                               augment=config.augment, max_background=config.max_background, generator=generator)
        elif config.family == "mixed":
            ellipses = random_ellipses(count // 2, config.size, generator)
            yield torch.cat([ellipses, chest_phantoms(count - count // 2, config.size, generator)])
        else:
            family = {"ellipses": random_ellipses, "chest": chest_phantoms, "anatomy": anatomy_phantoms}[config.family]
            yield family(count, config.size, generator)


def write_data_h5(
    path: str | os.PathLike,
    config: DataConfig,
    *,
    overwrite: bool = False,
    created_by: str | None = None,
    chunk_rows: int = 1,
    compression: str | None = None,
) -> Path:
    """Generate the data set ``config`` describes into ``path`` (``images``), atomically.

    An existing ``path`` is an error (``FileExistsError``) unless ``overwrite``; it is checked
    before anything is generated.
    """
    with H5Writer(path, config, created_by=created_by or "scoreinv.datasets.write_data_h5",
                  overwrite=overwrite, chunk_rows=chunk_rows, compression=compression) as writer:
        for images in data_blocks(config):
            writer.append(images=images)
    return Path(path)


def write_phantoms_h5(
    path: str | os.PathLike,
    n: int,
    size: int = 64,
    family: str = "mixed",
    seed: int = 0,
    *,
    block_size: int = 256,
    overwrite: bool = False,
    created_by: str | None = None,
) -> Path:
    """Write ``n`` CT phantoms ``(n, 1, size, size)`` of ``family`` (``"ellipses"``, ``"chest"``,
    ``"mixed"``: half of each block each, ``"anatomy"``) to ``path``. See :class:`~scoreinv.config.PhantomDataConfig`.
    """
    config = PhantomDataConfig(family=family, n=n, size=size, seed=seed, block_size=block_size)
    return write_data_h5(path, config, overwrite=overwrite,
                         created_by=created_by or "scoreinv.datasets.write_phantoms_h5")


def write_colour_h5(
    path: str | os.PathLike,
    n: int,
    size: int = 64,
    seed: int = 0,
    sources: tuple[str, ...] | list[str] = COLOUR_SOURCES,
    *,
    scale: tuple[float, float] = (1.0, 1.0),
    augment: bool = True,
    max_background: float = 0.1,
    block_size: int = 256,
    overwrite: bool = False,
    created_by: str | None = None,
) -> Path:
    """Write ``n`` colour crops ``(n, 3, size, size)`` (see :func:`colour_crops`) to ``path``."""
    config = ColourDataConfig(sources=tuple(sources), n=n, size=size, seed=seed, scale=scale, augment=augment,
                              max_background=max_background, block_size=block_size)
    return write_data_h5(path, config, overwrite=overwrite,
                         created_by=created_by or "scoreinv.datasets.write_colour_h5")
