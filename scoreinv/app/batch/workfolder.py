"""The work-folder protocol of a batch job: manifest, parts, claim and resume, configuration identity.

HDF5 files are not crash-safe when a process dies inside a write, so a job never updates its
output in place. It works in a folder next to the output, ``OUT.parts/`` (:func:`work_folder`;
for ``OUT = results.h5``: ``results.h5.parts/``):

* ``manifest.json``: the job's configuration (written atomically when the job starts);
* ``part-XXXXXXXX.h5``: one small file per finished batch (XXXXXXXX = its first item;
  ``part-XXXXXXXX-K.h5`` when a rerun computes a batch starting at the same item again), written
  to a temporary name, fsynced and renamed, so it either exists complete or not at all. Each row
  carries the SHA-256 of the measurement it was computed from.

An item is done iff a part holds a row of it that did not fail, computed from the measurement
the input holds now (:func:`scan_parts`). A failed item is recomputed by the next run, so a
job whose items failed keeps its work folder: after the input is fixed, rerunning the same
command computes only the failed (or changed) items. :func:`claim` decides, from the output,
the manifest and the configuration, whether a job is complete, starts, resumes or conflicts;
two configurations are the same job when :func:`config_differences` finds nothing that
decides the result (paths are left out: the hashes say what the files hold; a work folder is
resumed across a change of the measurements, whose rows are then checked one by one).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from scoreinv.atomic import atomic_path, fsync_folder

FORMAT = "scoreinv-batch"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_PART = re.compile(r"^part-(\d{8,})(?:-\d+)?\.h5$")
# Not part of the job's identity: where the files are (the hashes say what they hold).
_NOT_COMPARED = (("input", "path"), ("model", "source"))
# Not compared when resuming a work folder: its parts' rows carry their measurement's hash.
_NOT_COMPARED_ON_RESUME = (("input", "measurements_sha256"),)


def work_folder(out_path: str | os.PathLike) -> Path:
    """The work folder of a job writing ``out_path``: ``OUT.parts`` next to it."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".parts")


# --- configuration identity ---------------------------------------------------------------

def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_dataset(dataset: h5py.Dataset, rows: int = 256) -> str:
    """SHA-256 of a data set's float32 values, read ``rows`` items at a time."""
    return dataset_hashes(dataset, rows)[0]


def dataset_hashes(dataset: h5py.Dataset, rows: int = 256) -> tuple[str, list[str]]:
    """SHA-256 of a data set's float32 values (:func:`sha256_dataset`) and of each item's, in one read."""
    digest = hashlib.sha256()
    digest.update(repr(tuple(dataset.shape)).encode())
    items = []
    for start in range(0, dataset.shape[0], rows):
        block = np.ascontiguousarray(dataset[start:start + rows], dtype=np.float32)
        digest.update(block.tobytes())
        items.extend(hashlib.sha256(row.tobytes()).hexdigest() for row in block)
    return digest.hexdigest(), items


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _identity(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """The parts of a configuration that decide the result (paths dropped; on ``resume`` the
    measurements' hash too, checked per item instead)."""
    copy = json.loads(json.dumps(config))
    for section, key in _NOT_COMPARED + (_NOT_COMPARED_ON_RESUME if resume else ()):
        if isinstance(copy.get(section), dict):
            copy[section].pop(key, None)
    return copy


def config_differences(old: dict[str, Any], new: dict[str, Any], resume: bool = False) -> list[str]:
    """Dotted names of the settings that differ between two job configurations (``resume``: a
    work folder's manifest and a new run, which may differ in the measurements' hash)."""
    a, b = _flatten(_identity(old, resume)), _flatten(_identity(new, resume))
    return sorted(key for key in set(a) | set(b) if a.get(key, "<absent>") != b.get(key, "<absent>"))


def _describe(differences: list[str], old: dict[str, Any], new: dict[str, Any]) -> str:
    a, b = _flatten(_identity(old)), _flatten(_identity(new))
    shown = [f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}" for key in differences[:4]]
    more = f" and {len(differences) - 4} more" if len(differences) > 4 else ""
    return "; ".join(shown) + more


# --- claim, parts -----------------------------------------------------------------------------

def _read_config_attribute(path: Path) -> dict[str, Any] | None:
    """The ``config`` of a finished batch output, or None if it is not one."""
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") != FORMAT:
                return None
            text = handle.attrs.get("config")
    except OSError:
        return None
    try:
        return json.loads(text.decode() if isinstance(text, bytes) else text)
    except (TypeError, json.JSONDecodeError):
        return None


def _remove_stale_temporaries(folder: Path, prefix: str) -> None:
    for stale in folder.glob(f"{prefix}*.tmp"):
        stale.unlink(missing_ok=True)


def claim(out_path: Path, folder: Path, config: dict[str, Any], overwrite: bool) -> str:
    """Rank 0: decide "complete" (nothing to do) or "work" (start or resume); raise on a conflict.

    Without ``overwrite`` a complete output of the same configuration is kept and a work folder
    of the same configuration is resumed; a different configuration is refused. With
    ``overwrite`` the job starts over (the old output is replaced only by the finished new one).
    """
    if out_path.is_dir():
        raise ValueError(f"{out_path} is a folder, not an output file")
    manifest = folder / MANIFEST
    previous = _read_manifest(manifest) if folder.exists() else None
    existing = _read_config_attribute(out_path) if out_path.exists() else None
    # an output written by this folder's job, some of whose items failed: the rerun replaces it
    unfinished = existing is not None and existing == previous
    if out_path.exists() and not overwrite and not unfinished:
        if existing is not None and not config_differences(existing, config):
            if folder.exists():  # killed after the merge, before the clean-up
                shutil.rmtree(folder)
            return "complete"
        what = ("is not a scoreinv batch output" if existing is None else
                "was made with a different configuration (" + _describe(
                    config_differences(existing, config), existing, config) + ")")
        raise FileExistsError(f"{out_path} exists and {what}; pass overwrite=True (--overwrite) to replace it, "
                              "or choose another output")
    _remove_stale_temporaries(out_path.parent, f".{out_path.name}.")
    if folder.exists() and overwrite:
        shutil.rmtree(folder)
    if folder.exists():
        differences = None if previous is None else config_differences(previous, config, resume=True)
        if previous is None or differences:
            why = ("has no readable manifest" if previous is None else
                   "holds an unfinished job with a different configuration (" +
                   _describe(differences, previous, config) + ")")
            raise FileExistsError(f"the work folder {folder} {why}; rerun with the same configuration to "
                                  "resume it, or pass overwrite=True (--overwrite) to start over")
        if previous != config:  # the measurements changed (a fix): the parts are checked row by row
            _write_manifest(manifest, config)
    else:
        try:
            folder.mkdir(parents=True)
        except OSError as error:  # name the output, not the folder the user never asked for
            raise type(error)(error.errno, f"cannot write the output {out_path} (its work folder {folder.name}): "
                              f"{error.strerror}") from None
        _write_manifest(manifest, config)
    _remove_stale_temporaries(folder, ".part-")
    return "work"


def _read_manifest(manifest: Path) -> dict[str, Any] | None:
    try:
        return json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_manifest(manifest: Path, config: dict[str, Any]) -> None:
    with atomic_path(manifest) as temporary:
        temporary.write_text(json.dumps(config, indent=2, sort_keys=True))
    fsync_folder(manifest.parent.parent)


@dataclass
class PartIndex:
    """Where each item's row is, over all parts of a work folder.

    Attributes
    ----------
    finished:
        Item -> (part, row) of its row that did not fail.
    failed:
        Item -> (part, row) of its latest failed row, for items with no finished row.
    """

    finished: dict[int, tuple[Path, int]] = field(default_factory=dict)
    failed: dict[int, tuple[Path, int]] = field(default_factory=dict)


def scan_parts(folder: Path, hashes: list[str] | None = None) -> PartIndex:
    """The rows of every part; with ``hashes`` (each item's measurement SHA-256 now), rows computed
    from another measurement are left out (the input was fixed since: the item is redone)."""
    index = PartIndex()
    for part in sorted(folder.iterdir()):
        if not _PART.match(part.name):
            continue
        try:
            with h5py.File(part, "r") as handle:
                items = np.asarray(handle["items"]).tolist()
                failed = np.asarray(handle["failed"]).tolist() if "failed" in handle else [0] * len(items)
                stored = ([value.decode() if isinstance(value, bytes) else str(value)
                           for value in handle["measurement_sha256"][()]]
                          if "measurement_sha256" in handle else None)
        except (OSError, KeyError) as error:
            raise ValueError(f"the part {part} is unreadable ({error}); remove it to recompute its items") from error
        for row, item in enumerate(items):
            item = int(item)
            if hashes is not None:
                if not 0 <= item < len(hashes):
                    raise ValueError(f"the part {part} holds item {item}, which the input does not have")
                if stored is not None and stored[row] != hashes[item]:
                    continue
            if failed[row]:
                index.failed[item] = (part, row)
            elif item in index.finished:
                raise ValueError(f"item {item} is held by two parts, {index.finished[item][0].name} and {part.name}")
            else:
                index.finished[item] = (part, row)
    for item in index.finished:
        index.failed.pop(item, None)
    return index


def part_items(folder: Path, hashes: list[str] | None = None) -> dict[int, Path]:
    """Item -> the part that holds its finished row (see :func:`scan_parts`)."""
    return {item: part for item, (part, _) in scan_parts(folder, hashes).finished.items()}


def write_part(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    """One computed batch as ``part-<first item>.h5`` (``-K`` added if a rerun computed a batch
    with the same first item): temporary file, fsync, rename."""
    first = int(arrays["items"][0])
    target, again = folder / f"part-{first:08d}.h5", 0
    while target.exists():
        again += 1
        target = folder / f"part-{first:08d}-{again}.h5"
    with atomic_path(target) as temporary, h5py.File(temporary, "w") as handle:
        for key, values in arrays.items():
            if key in ("failure_reason", "measurement_sha256"):
                handle.create_dataset(key, data=np.array(values, dtype=object), dtype=h5py.string_dtype())
            elif np.ndim(values) == 0:
                handle.attrs[key] = values
            else:
                handle.create_dataset(key, data=values)
    return target
