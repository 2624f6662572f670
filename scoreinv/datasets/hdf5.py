"""The HDF5 layout of a scoreinv data set: write it atomically, read it lazily.

One file per data set:

========================  ==================================================================
``images``                ``(N, C, H, W)`` float32 ground truth (optional for reconstruction)
``measurements``          ``(N, ...)`` float32, e.g. sinograms ``(N, 1, V, D)`` (optional)
attribute ``config``      JSON: how the data were made (the generator's configuration) or the
                          operator's configuration
attribute ``scoreinv_version``  the version of the package that wrote the file
attribute ``created_by``  what wrote it (the command line, or the library function)
attribute ``format``      ``"scoreinv-data"``, with ``format_version`` 1
========================  ==================================================================

Every data set is chunked along the item axis, ``chunk_rows`` items (default one) per chunk,
so reading one item reads one chunk. All data sets in a file have the same length N.

Writing is atomic: a file is built under a temporary name in the target's folder and renamed
over the target (``os.replace``) only once it is complete, so an interrupted or failed write
never leaves a partial file at the target (a previous file there survives). :class:`H5Writer`
appends in blocks, so a large data set never has to sit in memory; :func:`write_images_h5`
writes arrays that do.

:class:`H5ImageDataset` is a map-style torch ``Dataset`` over one of the data sets. It opens
the file lazily, once per process: h5py handles do not survive pickling into DataLoader
workers, so the handle is dropped when the data set is pickled and reopened by the first
``__getitem__`` in each process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from scoreinv._version import __version__
from scoreinv.atomic import make_temporary, publish_atomically

FORMAT = "scoreinv-data"
FORMAT_VERSION = 1


def _config_json(config: Any) -> str:
    """A configuration (dict, pydantic model or None) as a JSON string."""
    if config is None:
        return "{}"
    if hasattr(config, "model_dump_json"):
        return config.model_dump_json()
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict or a pydantic model, got {type(config).__name__}")
    try:
        return json.dumps(dict(config), sort_keys=True)
    except TypeError as error:
        raise ValueError(f"config must be JSON-serialisable: {error}") from error


def _as_array(name: str, values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim < 1:
        raise ValueError(f"{name} must have a leading item axis (N, ...), got a scalar")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    return array


class H5Writer:
    """Write a data set file in blocks, atomically.

    Use it as a context manager: the file appears at ``path`` when the block ends without an
    exception; on an exception the temporary file is removed and ``path`` is left as it was.

    >>> with H5Writer("phantoms.h5", config={"family": "chest", "seed": 3}) as writer:
    ...     for block in blocks:                # e.g. (256, 1, 128, 128) tensors
    ...         writer.append(images=block)

    Parameters
    ----------
    path:
        The target file; its folder is created. An existing file is an error unless
        ``overwrite`` (it is replaced only when the new file is complete).
    config:
        How the data were made: a JSON-serialisable dict or a pydantic model, stored as the
        ``config`` attribute.
    created_by:
        Stored as the ``created_by`` attribute (default: ``"scoreinv.datasets.H5Writer"``).
    chunk_rows:
        Items per chunk (default 1: reading one item reads one chunk).
    compression:
        Passed to h5py (``None``, ``"gzip"``, ``"lzf"``); none by default, for fast lazy reads.
    attributes:
        Further file attributes (str, number or bool values), e.g. ``{"operator": json}``;
        they cannot replace the standard ones above.

    Data sets that are not per item (an operator's mask, say) are added with :meth:`put`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        config: Any = None,
        *,
        created_by: str | None = None,
        overwrite: bool = False,
        chunk_rows: int = 1,
        compression: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self._attributes = dict(attributes or {})
        reserved = sorted(set(self._attributes) & {"format", "format_version", "config", "scoreinv_version",
                                                   "created_by"})
        if reserved:
            raise ValueError(f"attributes must not replace the standard attributes {reserved}")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True to replace it")
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a folder, not a file")
        self._config = _config_json(config)
        self.created_by = created_by or "scoreinv.datasets.H5Writer"
        self.chunk_rows = int(chunk_rows)
        self.compression = compression
        fd, self._tmp = make_temporary(self.path)
        os.close(fd)
        try:
            self._file: h5py.File | None = h5py.File(self._tmp, "w")
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        self._lengths: dict[str, int] = {}
        self._fixed: set[str] = set()

    def put(self, name: str, values: Any, dtype: str = "float32") -> None:
        """Store a whole data set that is not per item (no item axis, not counted in N)."""
        if self._file is None:
            raise ValueError(f"the writer for {self.path} is closed")
        if name in self._file:
            raise ValueError(f"{self.path}: data set {name!r} exists already")
        array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        self._file.create_dataset(name, data=array.astype(dtype))
        self._fixed.add(name)

    def copy_slice_metadata(self, source: h5py.File) -> list[str]:
        """Copy the per-slice DICOM metadata of an open source file (an imported file or one made
        from it), as :func:`scoreinv.datasets.dicom.copy_slice_metadata`; returns the names copied."""
        from scoreinv.datasets.dicom import copy_slice_metadata

        if self._file is None:
            raise ValueError(f"the writer for {self.path} is closed")
        copied = copy_slice_metadata(source, self._file)
        self._fixed.update(copied)
        return copied

    def __len__(self) -> int:
        """Items written so far (of the longest data set)."""
        return max(self._lengths.values(), default=0)

    def append(self, **arrays: Any) -> None:
        """Append a block of items to each named data set, e.g. ``append(images=x)``.

        Each array is ``(B, ...)`` (torch or numpy, finite), stored as float32. Every call
        names the same data sets, with the same B for all of them, and each data set keeps its
        item shape from block to block.
        """
        if self._file is None:
            raise ValueError(f"the writer for {self.path} is closed")
        if not arrays:
            raise ValueError("append needs at least one array, e.g. append(images=x)")
        blocks = {name: _as_array(name, values) for name, values in arrays.items()}
        counts = {name: block.shape[0] for name, block in blocks.items()}
        if len(set(counts.values())) > 1:
            raise ValueError(f"arrays of one block must have the same number of items, got {counts}")
        if set(blocks) & self._fixed:
            raise ValueError(f"{sorted(set(blocks) & self._fixed)} were stored with put(), not per item")
        if self._lengths and set(blocks) != set(self._lengths):
            raise ValueError(f"every block must hold the same data sets: {sorted(self._lengths)}, "
                             f"got {sorted(blocks)}")
        for name, block in blocks.items():  # check everything before writing anything
            if name in self._file and self._file[name].shape[1:] != block.shape[1:]:
                raise ValueError(f"{name} items must have shape {self._file[name].shape[1:]} like the "
                                 f"earlier blocks, got {block.shape[1:]}")
        for name, block in blocks.items():
            if name not in self._file:
                chunks = (self.chunk_rows, *block.shape[1:]) if all(block.shape[1:]) else True
                self._file.create_dataset(name, shape=(0, *block.shape[1:]), maxshape=(None, *block.shape[1:]),
                                          dtype="float32", chunks=chunks, compression=self.compression)
                self._lengths[name] = 0
            dataset, start = self._file[name], self._lengths[name]
            dataset.resize(start + block.shape[0], axis=0)
            dataset[start:] = block
            self._lengths[name] = start + block.shape[0]

    def commit(self) -> Path:
        """Write the attributes, close the file and move it to ``path``."""
        if self._file is None:
            raise ValueError(f"the writer for {self.path} is closed")
        try:
            if not self._lengths:
                raise ValueError(f"nothing was written to {self.path}")
            if len(set(self._lengths.values())) > 1:
                raise ValueError(f"data sets of one file must have the same length, got {self._lengths}")
            attributes = self._file.attrs
            attributes["format"] = FORMAT
            attributes["format_version"] = FORMAT_VERSION
            attributes["config"] = self._config
            attributes["scoreinv_version"] = __version__
            attributes["created_by"] = self.created_by
            for name, value in self._attributes.items():
                attributes[name] = value
            self._file.close()
            self._file = None
            publish_atomically(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard what was written; ``path`` is left as it was."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "H5Writer":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()

    def __del__(self) -> None:  # an abandoned writer leaves no temporary file behind
        if getattr(self, "_file", None) is not None:
            self.abort()


def write_images_h5(
    path: str | os.PathLike,
    images: Any,
    config: Any = None,
    *,
    measurements: Any = None,
    created_by: str | None = None,
    overwrite: bool = False,
    chunk_rows: int = 1,
    compression: str | None = None,
) -> Path:
    """Write ``images`` ``(N, C, H, W)`` (and optional ``measurements`` ``(N, ...)``) to ``path``.

    ``config`` (a dict or pydantic model) says how the data were made and is stored as JSON in
    the ``config`` attribute. The write is atomic (see :class:`H5Writer`, which takes the same
    keyword arguments). Returns the path.
    """
    arrays = {"images": _as_array("images", images)}
    if arrays["images"].ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {arrays['images'].shape}")
    if measurements is not None:
        arrays["measurements"] = _as_array("measurements", measurements)
        if arrays["measurements"].shape[0] != arrays["images"].shape[0]:
            raise ValueError(f"measurements hold {arrays['measurements'].shape[0]} items, images "
                             f"{arrays['images'].shape[0]}")
    with H5Writer(path, config, created_by=created_by or "scoreinv.datasets.write_images_h5",
                  overwrite=overwrite, chunk_rows=chunk_rows, compression=compression) as writer:
        writer.append(**arrays)
    return Path(path)


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise FileNotFoundError(f"HDF5 file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file ({error})") from error


def read_h5_attributes(path: str | os.PathLike) -> dict[str, Any]:
    """The file attributes of a data set file, with ``config`` decoded from JSON."""
    path = Path(path)
    with _open(path) as handle:
        attributes = {name: _decode(value) for name, value in handle.attrs.items()}
    if isinstance(attributes.get("config"), str):
        try:
            attributes["config"] = json.loads(attributes["config"])
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: the 'config' attribute is not valid JSON ({error})") from error
    return attributes


class H5ImageDataset(Dataset):
    """The items of one data set of an HDF5 file, read lazily: ``(C, H, W)`` float32 tensors.

    ``key`` names the data set (``"images"`` by default; ``"measurements"`` or any other
    ``(N, C, H, W)`` data set works too). The constructor checks that the file and the data
    set exist and that it has 4 dimensions, and raises ``FileNotFoundError`` / ``ValueError``
    naming the file and what is wrong. Items are read on demand; the file is opened on the
    first ``__getitem__`` of each process (DataLoader workers included) and kept open there.
    """

    def __init__(self, path: str | os.PathLike, key: str = "images") -> None:
        self.path = Path(path)
        self.key = key
        with _open(self.path) as handle:
            if key not in handle:
                held = ", ".join(sorted(handle.keys())) or "nothing"
                raise ValueError(f"{self.path} has no data set {key!r} (it holds: {held})")
            dataset = handle[key]
            if not isinstance(dataset, h5py.Dataset):
                raise ValueError(f"{self.path}: {key!r} is a group, not a data set")
            if dataset.ndim != 4:
                raise ValueError(f"{self.path}: data set {key!r} must have 4 dimensions (N, C, H, W), "
                                 f"got shape {dataset.shape}")
            if not (np.issubdtype(dataset.dtype, np.floating) or np.issubdtype(dataset.dtype, np.integer)):
                raise ValueError(f"{self.path}: data set {key!r} must hold numbers, got dtype {dataset.dtype}")
            self.shape: tuple[int, ...] = tuple(dataset.shape)
        self.attributes = read_h5_attributes(self.path)
        self._handle: h5py.File | None = None
        self._dataset: h5py.Dataset | None = None
        self._pid: int | None = None

    @property
    def item_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.shape[1:])  # type: ignore[return-value]

    @property
    def config(self) -> dict[str, Any]:
        """The file's ``config`` attribute (decoded JSON; empty if the file has none)."""
        config = self.attributes.get("config", {})
        return config if isinstance(config, dict) else {}

    def __len__(self) -> int:
        return self.shape[0]

    def _data(self) -> h5py.Dataset:
        if self._dataset is None or self._pid != os.getpid():
            # a fresh process (or a fork that inherited the parent's handle): open our own
            self._handle = h5py.File(self.path, "r")
            self._dataset = self._handle[self.key]
            self._pid = os.getpid()
        return self._dataset

    def __getitem__(self, index: int) -> torch.Tensor:
        index = int(index)
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items in {self.path}")
        item = self._data()[index % n]
        return torch.from_numpy(np.asarray(item, dtype=np.float32))

    def close(self) -> None:
        """Close this process's handle (it reopens on the next access)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = self._dataset = self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = state["_dataset"] = state["_pid"] = None
        return state

    def __repr__(self) -> str:
        return f"H5ImageDataset({str(self.path)!r}, key={self.key!r}, shape={self.shape})"
