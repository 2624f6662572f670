"""The files the command line reads and writes: images and measurements in .npy / .h5, .png grids, JSON.

Reading checks what it reads and raises ``FileNotFoundError`` / ``ValueError`` naming the file
and what was expected. Every write is atomic: the content goes to a temporary file in the
target's folder, which is renamed over the target only when complete, so a failed or
interrupted write never leaves a partial file (an earlier file there survives).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scoreinv.atomic import atomic_path

IMAGE_SUFFIXES = (".npy", ".h5", ".hdf5")


def parse_items(text: str | None) -> slice | None:
    """``"0:10"`` → ``slice(0, 10)``, ``"5"`` → item 5 alone, ``"::2"`` → every other; ``None`` → all."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        numbers = [int(part) if part.strip() else None for part in parts]
    except ValueError:
        raise ValueError(f"items must look like START:STOP[:STEP] or an index, got {text!r}") from None
    if len(numbers) == 1:
        index = numbers[0]
        if index is None:
            raise ValueError(f"items must look like START:STOP[:STEP] or an index, got {text!r}")
        return slice(index, index + 1 if index != -1 else None)
    if len(numbers) > 3:
        raise ValueError(f"items must look like START:STOP[:STEP] or an index, got {text!r}")
    selected = slice(*numbers)
    if selected.step is not None and selected.step <= 0:
        raise ValueError(f"the items step must be positive, got {text!r}")
    return selected


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected a {what}")


def _check_numbers(array: np.ndarray, where: str) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{where} must hold numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{where} contains NaN or inf")
    return array


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable .npy array ({error})") from error


def _read_h5_dataset(path: Path, key: str, items: slice | None) -> np.ndarray:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file ({error})") from error
    with handle:
        if key not in handle or not isinstance(handle[key], h5py.Dataset):
            held = ", ".join(sorted(handle.keys())) or "nothing"
            raise ValueError(f"{path} has no data set {key!r} (it holds: {held})")
        dataset = handle[key]
        if dataset.ndim < 1:
            raise ValueError(f"{path}: data set {key!r} has no item axis")
        selected = range(dataset.shape[0])[items] if items is not None else range(dataset.shape[0])
        if len(selected) == 0:
            raise ValueError(f"{path}: no items selected from the {dataset.shape[0]} of {key!r}")
        if selected.step == 1:
            return np.asarray(dataset[selected.start:selected.stop])
        return np.asarray(dataset[list(selected)])


def _select(array: np.ndarray, items: slice | None, path: Path) -> np.ndarray:
    if items is None:
        return array
    chosen = array[items]
    if chosen.shape[0] == 0:
        raise ValueError(f"{path}: no items selected from its {array.shape[0]}")
    return chosen


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{path} must be a .npy or .h5 file, got {suffix or 'no extension'}")
    return "npy" if suffix == ".npy" else "h5"


def read_images(path: str | os.PathLike, items: slice | None = None) -> torch.Tensor:
    """Images (N, C, H, W) as float32 from a .npy array or the ``images`` data set of an .h5 file.

    ``items`` selects along N. Refuses other shapes, non-numbers, NaN and inf.
    """
    path = Path(path)
    _check_exists(path, "image file")
    if _kind(path) == "npy":
        array = _select(_read_npy(path), items, path)
    else:
        array = _read_h5_dataset(path, "images", items)
    if array.ndim != 4:
        raise ValueError(f"{path} must hold images of shape (N, C, H, W), got {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{path} holds no images")
    return torch.from_numpy(_check_numbers(array, str(path)))


def read_measurements(path: str | os.PathLike, items: slice | None = None) -> tuple[np.ndarray, Any, list[int] | None]:
    """Measurements as float32, the operator that made them and their item indices in the file.

    A .npy file holds one item or a batch; its operator comes from elsewhere and its indices
    are its own (both ``None``). An .h5 file holds the ``measurements`` data set ``(N, ...)``
    and the operator in its attributes, as :func:`scoreinv.datasets.simulate_h5` writes them
    (:func:`scoreinv.datasets.operator_from_h5`); the indices are those ``items`` selects.
    """
    from scoreinv.datasets import operator_from_h5

    path = Path(path)
    _check_exists(path, "measurement file")
    if _kind(path) == "npy":
        if items is not None:
            raise ValueError("--items selects items of an .h5 input; slice a .npy file before passing it")
        return _check_numbers(_read_npy(path), str(path)), None, None
    array = _check_numbers(_read_h5_dataset(path, "measurements", items), str(path))
    count = _h5_length(path, "measurements")
    indices = list(range(count)[items] if items is not None else range(count))
    return array, operator_from_h5(path), indices


def _h5_length(path: Path, key: str) -> int:
    import h5py

    with h5py.File(path, "r") as handle:
        return int(handle[key].shape[0])


def h5_image_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """(N, C, H, W) of the ``images`` data set of an .h5 file (without reading it)."""
    from scoreinv.datasets import H5ImageDataset

    return H5ImageDataset(Path(path)).shape


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...], overwrite: bool) -> Path:
    """Refuse an output with another extension, a folder, or an existing file (unless ``overwrite``)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"output {path} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    return path


def write_npy(path: str | os.PathLike, array: Any) -> Path:
    """Save an array (numpy or torch) as float32 .npy, atomically."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, np.asarray(array, dtype=np.float32))
    return Path(path)


def write_grid(path: str | os.PathLike, images: Any, *, scale: float = 1.0, columns: int = 8) -> Path:
    """A .png grid of images (B, C, H, W) or one (C, H, W): values ÷ ``scale``, clipped to [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    array = array.astype(np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"a .png grid needs images (B, 1|3, H, W), got {array.shape}")
    count = array.shape[0]
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.2), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < count:
            item = np.clip(array[index] / scale, 0, 1)
            if item.shape[0] == 1:
                axis.imshow(item[0], cmap="gray", vmin=0, vmax=1)
            else:
                axis.imshow(item.transpose(1, 2, 0))
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=100, format="png")
    finally:
        plt.close(figure)
    return Path(path)


def write_images(path: str | os.PathLike, images: Any) -> Path:
    """Images to .npy (the values) or .png (a grid clipped to [0, 1]), by extension, atomically."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return write_npy(path, images)
    if path.suffix.lower() == ".png":
        return write_grid(path, images)
    raise ValueError(f"output {path} must end in .npy or .png")


def write_json(path: str | os.PathLike, content: Any) -> Path:
    """Write JSON (indented), atomically."""
    text = json.dumps(content, indent=2, default=_json_default)
    with atomic_path(path) as temporary:
        temporary.write_text(text + "\n")
    return Path(path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (Path, os.PathLike)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def companion(path: str | os.PathLike, tag: str, suffix: str | None = None) -> Path:
    """``out.npy`` → ``out_std.npy`` (tag ``"_std"``), or ``out.json`` with ``tag=""``, ``suffix=".json"``."""
    path = Path(path)
    return path.with_name(f"{path.stem}{tag}{suffix if suffix is not None else path.suffix}")


def value_range(images: torch.Tensor | Callable[[], Iterator[torch.Tensor]]) -> tuple[float, float]:
    """(min, max) of a tensor, or of the blocks an iterator factory yields."""
    if isinstance(images, torch.Tensor):
        return float(images.min()), float(images.max())
    low, high = math.inf, -math.inf
    for block in images():
        low, high = min(low, float(block.min())), max(high, float(block.max()))
    return low, high


def h5_image_blocks(path: str | os.PathLike, block: int = 256) -> Iterator[torch.Tensor]:
    """The ``images`` of an .h5 file, ``block`` items at a time (finite values checked)."""
    import h5py

    path = Path(path)
    with h5py.File(path, "r") as handle:
        dataset = handle["images"]
        for start in range(0, dataset.shape[0], block):
            yield torch.from_numpy(_check_numbers(np.asarray(dataset[start:start + block]), str(path)))
