"""Simulated measurements for a data set of images: ``images.h5`` -> ``images + measurements``.

:func:`simulate_h5` copies the ``images`` of a data set file and adds ``measurements`` =
``operator.simulate(images)`` (forward operator plus its noise model), streaming in blocks.
Item i's noise comes from its own generator seeded with
``scoreinv.seeding.item_seed(seed, i, 0, purpose="simulate")``, so the file does not depend on the
block size. The operator is stored with the data so that the file alone says how to
reconstruct it (:func:`operator_from_h5`):

=============================  =============================================================
attribute ``operator``         the operator's ``config()`` as JSON
attribute ``config``           how the file was made: source file, its config, operator, seed
data set ``operator_mask``     ``(C, H, W)`` uint8, only for a MaskOp with an explicit or a
                               random-fraction mask (a box mask is rebuilt from its boxes); the
                               operator JSON then names it in ``"mask_dataset"``
=============================  =============================================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from scoreinv.datasets.hdf5 import H5Writer, _open
from scoreinv.operators import LinearOperator, MaskOp, operator_from_config
from scoreinv.seeding import item_seed

MASK_DATASET = "operator_mask"


def operator_config_for_file(operator: LinearOperator) -> dict[str, Any]:
    """The operator's ``config()`` as stored in a file (a non-box MaskOp names its mask data set)."""
    config = operator.config()
    if isinstance(operator, MaskOp) and "boxes" not in config:
        config["mask_dataset"] = MASK_DATASET
    return config


def operator_from_file(handle: h5py.File, where: str) -> tuple[LinearOperator, dict[str, Any]]:
    """Rebuild the operator stored in an open data set file; returns it and its configuration."""
    text = handle.attrs.get("operator")
    if text is None:
        raise ValueError(f"{where} has no 'operator' attribute: it says nothing about how its measurements "
                         "were made (write it with scoreinv.datasets.simulate_h5 / `scoreinv data simulate`)")
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        config = json.loads(text)
    except (TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{where}: the 'operator' attribute is not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise ValueError(f"{where}: the 'operator' attribute must be a JSON object, got {type(config).__name__}")
    mask = None
    name = config.get("mask_dataset")
    if name is not None:
        if name not in handle:
            raise ValueError(f"{where}: the operator's mask data set {name!r} is missing")
        mask = np.asarray(handle[name])
    try:
        return operator_from_config(config, mask=mask), config
    except KeyError as error:
        raise ValueError(f"{where}: the operator configuration lacks the field {error}") from error
    except (ValueError, TypeError) as error:  # a stored value the operator refuses (n_views 0, a string size)
        raise ValueError(f"{where}: the stored operator cannot be rebuilt: {error}") from error


def operator_from_h5(path: str | os.PathLike) -> LinearOperator:
    """The forward operator a data set file was simulated with (see the module docstring)."""
    path = Path(path)
    with _open(path) as handle:
        return operator_from_file(handle, str(path))[0]


def simulate_h5(
    images_path: str | os.PathLike,
    out_path: str | os.PathLike,
    operator: LinearOperator,
    *,
    seed: int = 0,
    overwrite: bool = False,
    block_size: int = 64,
    progress: bool = True,
) -> Path:
    """Write ``out_path`` = the ``images`` of ``images_path`` plus simulated ``measurements``.

    Parameters
    ----------
    images_path:
        A data set file with ``images`` ``(N, C, H, W)`` (e.g. from ``scoreinv data``).
    out_path:
        The new file: ``images`` (copied), ``measurements`` ``(N, *operator.out_shape)``,
        the operator in the attributes (and ``operator_mask`` for a non-box MaskOp).
        Written atomically; an existing file is an error unless ``overwrite``.
    operator:
        The forward operator with its noise model (``RadonOp(23, image_size=64,
        noise_std=0.01)``, ``MaskOp(...)``, ``GrayscaleOp(...)``); it must be rebuildable from
        its configuration (a MaskOp's mask is stored in the file).
    seed:
        Item i's noise is drawn from a generator seeded with ``item_seed(seed, i, 0,
        "simulate")``: independent of ``block_size``.
    block_size:
        Images read, simulated and written at a time (memory, not the result).

    Returns
    -------
    Path
        ``out_path``.
    """
    images_path, out_path = Path(images_path), Path(out_path)
    if not isinstance(operator, LinearOperator):
        raise ValueError(f"operator must be a scoreinv LinearOperator, got {type(operator).__name__}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if int(block_size) < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True (--overwrite) to replace it")
    operator_config = operator_config_for_file(operator)
    try:
        operator_from_config(operator_config, mask=getattr(operator, "mask", None)
                             if isinstance(operator, MaskOp) else None)
    except (ValueError, KeyError) as error:
        raise ValueError(f"{operator.name} cannot be stored in a data set file: {error}") from error

    with _open(images_path) as source:
        if "images" not in source or not isinstance(source["images"], h5py.Dataset):
            held = ", ".join(sorted(source.keys())) or "nothing"
            raise ValueError(f"{images_path} has no 'images' data set (it holds: {held})")
        images = source["images"]
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(operator.in_shape):
            raise ValueError(f"{images_path}: images of shape {tuple(images.shape)} do not fit the operator, "
                             f"which expects (N, {', '.join(map(str, operator.in_shape))})")
        n = images.shape[0]
        if n == 0:
            raise ValueError(f"{images_path}: the 'images' data set is empty")
        source_config = source.attrs.get("config", "{}")
        if isinstance(source_config, bytes):
            source_config = source_config.decode("utf-8")
        try:
            source_config = json.loads(source_config)
        except json.JSONDecodeError:
            source_config = {}
        made = {"kind": "simulated", "source": str(images_path.resolve()), "source_config": source_config,
                "operator": operator_config, "seed": int(seed)}
        attributes = {"operator": json.dumps(operator_config, sort_keys=True), "simulate_seed": int(seed)}
        with H5Writer(out_path, made, created_by="scoreinv.datasets.simulate_h5", overwrite=overwrite,
                      attributes=attributes) as writer:
            writer.copy_slice_metadata(source)  # an imported DICOM series keeps its metadata for the export
            if isinstance(operator, MaskOp) and "mask_dataset" in operator_config:
                writer.put(MASK_DATASET, operator.mask.cpu(), dtype="uint8")
            with torch.no_grad(), tqdm(total=n, desc="simulate", unit="item", disable=not progress) as bar:
                for start in range(0, n, int(block_size)):
                    block = torch.from_numpy(np.asarray(images[start:start + int(block_size)], dtype=np.float32))
                    measured = [
                        operator.simulate(block[k:k + 1], generator=torch.Generator().manual_seed(
                            item_seed(int(seed), start + k, 0, purpose="simulate")))
                        for k in range(block.shape[0])
                    ]
                    writer.append(images=block, measurements=torch.cat(measured))
                    bar.update(block.shape[0])
    return out_path
