"""Labelled image sets in the package's HDF5 layout: what a time-dependent classifier trains on.

A labelled file is an ordinary data set file (:mod:`scoreinv.datasets.hdf5`) with, besides
``images`` ``(N, C, H, W)``:

========================  ==================================================================
``labels``                ``(N,)`` class indices 0…K−1 (stored as float32, whole numbers)
attribute ``class_names``  JSON list of the K class names; label k is ``class_names[k]``
========================  ==================================================================

:func:`digits_labelled` and :func:`anatomy_labelled` make the two offline sets the bundled
classifiers were trained on (scikit-learn's 8×8 digits; anatomy slices by body region).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from scoreinv.datasets.hdf5 import H5Writer, read_h5_attributes


def write_labelled_h5(
    path: str | os.PathLike,
    images: Any,
    labels: Any,
    class_names: Sequence[str],
    config: Any = None,
    *,
    created_by: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``images`` (N, C, H, W) with integer ``labels`` (N,) in 0…K−1, K = len(class_names).

    Atomic like every data set file (:class:`~scoreinv.datasets.H5Writer`). Raises ValueError
    for labels that are not whole numbers in range, a length mismatch, or fewer than two
    distinct class names.
    """
    names = [str(name) for name in class_names]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"class_names must be at least two distinct names, got {names}")
    labels = torch.as_tensor(labels)
    images = torch.as_tensor(images)
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must have shape ({images.shape[0]},) to match the images, got {tuple(labels.shape)}")
    _check_labels(labels.double(), len(names), str(path))
    with H5Writer(path, config, created_by=created_by or "scoreinv.datasets.labelled.write_labelled_h5",
                  overwrite=overwrite, attributes={"class_names": json.dumps(names)}) as writer:
        writer.append(images=images, labels=labels.float())
    return Path(path)


def _check_labels(labels: torch.Tensor, classes: int, source: str) -> None:
    if not torch.isfinite(labels).all() or (labels != labels.round()).any():
        raise ValueError(f"{source}: labels must be whole numbers")
    if labels.numel() and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{source}: labels must lie in 0…{classes - 1} (one per class name), "
                         f"got {int(labels.min())}…{int(labels.max())}")


def read_labelled_h5(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """``(images (N, C, H, W) float32, labels (N,) int64, class_names)`` of a labelled file.

    Raises FileNotFoundError for a missing file and ValueError naming what is wrong for a file
    without ``images``, ``labels`` or ``class_names``, or with labels out of range.
    """
    path = Path(path)
    attributes = read_h5_attributes(path)
    if "class_names" not in attributes:
        raise ValueError(f"{path} has no 'class_names' attribute: not a labelled data set "
                         "(write one with scoreinv.datasets.labelled.write_labelled_h5)")
    try:
        names = tuple(str(name) for name in json.loads(attributes["class_names"]))
    except (TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: the 'class_names' attribute is not a JSON list ({error})") from None
    with h5py.File(path, "r") as handle:
        for key in ("images", "labels"):
            if key not in handle:
                raise ValueError(f"{path} has no data set {key!r} (it holds: {', '.join(sorted(handle))})")
        images = torch.from_numpy(np.asarray(handle["images"], dtype=np.float32))
        labels = torch.from_numpy(np.asarray(handle["labels"], dtype=np.float64))
    if images.dim() != 4:
        raise ValueError(f"{path}: images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{path}: labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    _check_labels(labels, len(names), str(path))
    return images, labels.long(), names


def digits_labelled(test_fraction: float = 0.2, seed: int = 0) -> tuple[
        tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], tuple[str, ...]]:
    """scikit-learn's digits with their labels, split as :func:`~scoreinv.datasets.load_digits_split`
    splits the images: ``((train_images, train_labels), (test_images, test_labels), names)``."""
    from sklearn.datasets import load_digits

    from scoreinv.datasets.digits import DIGITS_LEVELS

    data = load_digits()
    images = torch.from_numpy(data.images).float().div(DIGITS_LEVELS - 1).unsqueeze(1)
    labels = torch.from_numpy(data.target).long()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(images))
    test, train = order[:n_test], order[n_test:]
    names = tuple(str(name) for name in data.target_names)
    return (images[train], labels[train]), (images[test], labels[test]), names


def anatomy_labelled(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """``n`` anatomy slices (regions in turn) with their body region as the label (``REGIONS``)."""
    from scoreinv.datasets.anatomy import REGIONS, anatomy_phantoms

    images = anatomy_phantoms(n, size, generator=seed)
    labels = torch.arange(n) % len(REGIONS)  # anatomy_phantoms draws region i % 3 for item i
    return images, labels, REGIONS
