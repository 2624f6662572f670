"""The work-folder protocol of a batch job: manifest, parts, claim and resume, configuration identity.

HDF5 files are not crash-safe when a process dies inside a write, so a job never updates its
output in place. It works in a folder next to the output, ``OUT.parts/`` (:func:`work_folder`;
for ``OUT = results.h5``: ``results.h5.parts/``):

* ``manifest.json``: the job's configuration (written atomically when the job starts);
* ``part-XXXXXXXX.h5``: one small file per finished batch (XXXXXXXX = its first item), written
  to a temporary name, fsynced and renamed, so it either exists complete or not at all.

An item is done iff a part holds it. :func:`claim` decides, from the output, the manifest and
the configuration, whether a job is complete, starts, resumes or conflicts; two configurations
are the same job when :func:`config_differences` finds nothing that decides the result
(paths are left out: the hashes say what the files hold).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from scoreinv.atomic import atomic_path, fsync_folder

FORMAT = "scoreinv-batch"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_PART = re.compile(r"^part-(\d{8,})\.h5$")
# Not part of the job's identity: where the files are (the hashes say what they hold).
_NOT_COMPARED = (("input", "path"), ("model", "source"))


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
    digest = hashlib.sha256()
    digest.update(repr(tuple(dataset.shape)).encode())
    for start in range(0, dataset.shape[0], rows):
        digest.update(np.ascontiguousarray(dataset[start:start + rows], dtype=np.float32).tobytes())
    return digest.hexdigest()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a configuration that decide the result (paths dropped)."""
    copy = json.loads(json.dumps(config))
    for section, key in _NOT_COMPARED:
        if isinstance(copy.get(section), dict):
            copy[section].pop(key, None)
    return copy


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted names of the settings that differ between two job configurations."""
    a, b = _flatten(_identity(old)), _flatten(_identity(new))
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
    if out_path.exists() and not overwrite:
        existing = _read_config_attribute(out_path)
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
    manifest = folder / MANIFEST
    if folder.exists() and overwrite:
        shutil.rmtree(folder)
    if folder.exists():
        try:
            previous = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous is None or config_differences(previous, config):
            why = ("has no readable manifest" if previous is None else
                   "holds an unfinished job with a different configuration (" +
                   _describe(config_differences(previous, config), previous, config) + ")")
            raise FileExistsError(f"the work folder {folder} {why}; rerun with the same configuration to "
                                  "resume it, or pass overwrite=True (--overwrite) to start over")
    else:
        folder.mkdir(parents=True)
        with atomic_path(manifest) as temporary:
            temporary.write_text(json.dumps(config, indent=2, sort_keys=True))
        fsync_folder(folder.parent)
    _remove_stale_temporaries(folder, ".part-")
    return "work"


def part_items(folder: Path) -> dict[int, Path]:
    """Item -> the part that holds it, over all finished parts."""
    done: dict[int, Path] = {}
    for part in sorted(folder.iterdir()):
        if not _PART.match(part.name):
            continue
        try:
            with h5py.File(part, "r") as handle:
                items = np.asarray(handle["items"]).tolist()
        except (OSError, KeyError) as error:
            raise ValueError(f"the part {part} is unreadable ({error}); remove it to recompute its items") from error
        for item in items:
            if item in done:
                raise ValueError(f"item {item} is held by two parts, {done[item].name} and {part.name}")
            done[int(item)] = part
    return done


def write_part(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    """One finished batch as ``part-<first item>.h5``: temporary file, fsync, rename."""
    target = folder / f"part-{int(arrays['items'][0]):08d}.h5"
    with atomic_path(target) as temporary, h5py.File(temporary, "w") as handle:
        for key, values in arrays.items():
            if key == "failure_reason":
                handle.create_dataset(key, data=np.array(values, dtype=object), dtype=h5py.string_dtype())
            elif np.ndim(values) == 0:
                handle.attrs[key] = values
            else:
                handle.create_dataset(key, data=values)
    return target
