"""Batch reconstruction of an HDF5 data set: crash-safe, resumable, deterministic, distributed.

:func:`reconstruct_h5` reconstructs every item of ``IN``'s ``measurements`` with the operator
stored in ``IN`` and writes ``OUT`` (layout in docs/batch.md).

How it survives being killed. HDF5 files are not crash-safe when a process dies inside a
write, so nothing is updated in place. The job works in a folder next to the output,
``OUT.parts/`` (for ``OUT = results.h5``: ``results.h5.parts/``):

* ``manifest.json``: the job's configuration (written atomically when the job starts);
* ``part-XXXXXXXX.h5``: one small file per finished batch (XXXXXXXX = its first item), written
  to a temporary name, fsynced and renamed, so it either exists complete or not at all.

An item is done iff a part holds it. Started again with the same configuration, the job
reads the parts, skips their items and reconstructs the rest. When every item is done the
parts are merged into ``OUT`` (again temporary file + rename) and the folder is removed.

Determinism: item i's random numbers come from generators seeded with
``item_seed(settings.seed, i, s)`` (:func:`scoreinv.posterior` with ``item_seeds``), and every
network call has the same shape (a short batch is padded with a copy of one of its items:
CPU kernels round a row differently for different batch sizes). For a given batch size an
item's result therefore does not depend on which items share its batch, on resuming, on
failed neighbours or on the number of processes: bit-for-bit on the CPU (docs/batch.md).

Distributed: :func:`reconstruct_h5` joins the process group itself
(:func:`scoreinv.distributed.world`), so under ``torchrun`` (e.g. ``torchrun
--nproc_per_node=2 -m scoreinv batch IN.h5 OUT.h5``) rank r of W reconstructs the items i with
i % W == r and writes its own parts; after a barrier rank 0 merges them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from scoreinv.atomic import atomic_path, fsync_folder
from scoreinv.config import ReconstructionSettings
from scoreinv.datasets.hdf5 import _open, _scoreinv_version
from scoreinv.datasets.simulate import operator_from_file
from scoreinv.distributed import World, all_ok, barrier, device_for, world
from scoreinv.metrics import psnr as psnr_metric
from scoreinv.metrics import ssim as ssim_metric
from scoreinv.operators import LinearOperator
from scoreinv.reconstruct import posterior, resolve_settings

FORMAT = "scoreinv-batch"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_PART = re.compile(r"^part-(\d{8,})\.h5$")
# Not part of the job's identity: where the files are (the hashes say what they hold).
_NOT_COMPARED = (("input", "path"), ("model", "source"))


@dataclass
class BatchSummary:
    """What :func:`reconstruct_h5` did.

    Attributes
    ----------
    path:
        The output file.
    items:
        N, the number of items in the file.
    computed:
        Items reconstructed by this call (all processes together).
    reused:
        Items already done before this call (parts of an interrupted run, or a complete output).
    failed:
        Items recorded as failed (e.g. a measurement with NaN or inf).
    seconds:
        Wall time of this call.
    psnr, ssim:
        Mean over the items that did not fail, when ``IN`` has ``images``; else None.
    config:
        The job's configuration (as stored in the output).
    """

    path: Path
    items: int
    computed: int
    reused: int
    failed: int
    seconds: float
    psnr: float | None = None
    ssim: float | None = None
    config: dict[str, Any] = field(default_factory=dict)


def work_folder(out_path: str | os.PathLike) -> Path:
    """The work folder of a job writing ``out_path``: ``OUT.parts`` next to it."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".parts")


# --- configuration ----------------------------------------------------------------------------

def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_dataset(dataset: h5py.Dataset, rows: int = 256) -> str:
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


# --- input ------------------------------------------------------------------------------------

@dataclass
class _Input:
    path: Path
    items: int
    operator: LinearOperator
    operator_config: dict[str, Any]
    has_images: bool
    record: dict[str, Any]


def _read_input(in_path: Path) -> _Input:
    with _open(in_path) as handle:
        if "measurements" not in handle or not isinstance(handle["measurements"], h5py.Dataset):
            held = ", ".join(sorted(handle.keys())) or "nothing"
            raise ValueError(f"{in_path} has no 'measurements' data set (it holds: {held}); "
                             "simulate them with `scoreinv data simulate`")
        operator, operator_config = operator_from_file(handle, str(in_path))
        measurements = handle["measurements"]
        expected = tuple(operator.out_shape)
        if measurements.ndim != len(expected) + 1 or tuple(measurements.shape[1:]) != expected:
            raise ValueError(f"{in_path}: measurements of shape {tuple(measurements.shape)} do not match the "
                             f"operator, which produces (N, {', '.join(map(str, expected))})")
        n = int(measurements.shape[0])
        if n == 0:
            raise ValueError(f"{in_path}: the 'measurements' data set is empty")
        has_images = "images" in handle
        if has_images:
            images = handle["images"]
            if tuple(images.shape) != (n, *operator.in_shape):
                raise ValueError(f"{in_path}: images of shape {tuple(images.shape)} do not match the "
                                 f"{n} measurements and the operator's images (N, "
                                 f"{', '.join(map(str, operator.in_shape))})")
        record = {"path": str(in_path.resolve()), "items": n, "measurements_shape": list(measurements.shape),
                  "measurements_sha256": _sha256_dataset(measurements), "has_images": has_images}
    return _Input(in_path, n, operator, operator_config, has_images, record)


def _load_prior(model: str | os.PathLike, device: torch.device | None, operator: LinearOperator) -> tuple[Any, dict]:
    from scoreinv.checkpoint import load_model, resolve_checkpoint

    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a bundled model name or a checkpoint path, got {type(model).__name__}")
    path = resolve_checkpoint(model)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    prior = load_model(path, device=device)
    expected = (int(prior.channels), int(prior.image_size), int(prior.image_size))
    if tuple(operator.in_shape) != expected:
        raise ValueError(f"the model {str(model)!r} works on images of shape {expected} but the operator of the "
                         f"input file on {tuple(operator.in_shape)}: use a model trained at that size")
    source = str(model) if path.parent.name == "weights" and str(model) == path.stem else str(path.resolve())
    record = {"source": source, "sha256": _sha256_file(path), "config": json.loads(prior.config.model_dump_json())}
    return prior, record


# --- the work folder --------------------------------------------------------------------------

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


def _claim(out_path: Path, folder: Path, config: dict[str, Any], overwrite: bool) -> str:
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


def _part_items(folder: Path) -> dict[int, Path]:
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


def _write_part(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
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


# --- reconstruction of one rank's items --------------------------------------------------------

def _batches(mine: list[int], done: set[int], batch_size: int) -> list[list[int]]:
    """This rank's batches, cut from all its items as an uninterrupted run would cut them,
    without the items already done: a resumed run (same batch size, same number of processes)
    then computes exactly the batches the uninterrupted run would have."""
    batches = [[i for i in mine[start:start + batch_size] if i not in done] for start in range(0, len(mine), batch_size)]
    return [chunk for chunk in batches if chunk]


def _posterior_rows(y: torch.Tensor, ids: list[int], job: _Input, prior: Any, settings: ReconstructionSettings,
                    device: torch.device | None, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of the items ``ids``, always computed as a batch of ``width`` items.

    The sampler and the operators treat every row on its own, but CPU conv / linear kernels
    pick their blocking by batch size, so a network row differs (~1e-6) between batch sizes,
    which the sampler amplifies. A short batch (the last one, a resumed one, one with failed
    items) is padded with copies of its first item (same seed, same result, discarded), so
    every network call has the same shape and an item's result depends only on
    ``(seed, item, settings, batch_size)``.
    """
    count = len(ids)
    if count < width:
        y = torch.cat([y, y[:1].expand(width - count, *y.shape[1:])])
        ids = ids + [ids[0]] * (width - count)
    result = posterior(y, job.operator, prior, settings=settings, device=device, progress=False, item_seeds=ids)
    return result.mean.detach().cpu()[:count], result.std.detach().cpu()[:count]


def _run_items(batches: list[list[int]], job: _Input, prior: Any, settings: ReconstructionSettings, folder: Path,
               device: torch.device | None, bar: tqdm, data_range: float, width: int) -> None:
    with h5py.File(job.path, "r") as handle:
        measurements = handle["measurements"]
        images = handle["images"] if job.has_images else None
        for chunk in batches:
            y = torch.from_numpy(np.asarray(measurements[chunk], dtype=np.float32))
            count = len(chunk)
            failed = np.zeros(count, dtype=np.uint8)
            reasons = [""] * count
            finite = torch.isfinite(y.reshape(count, -1)).all(dim=1)
            for k in torch.nonzero(~finite).flatten().tolist():
                failed[k], reasons[k] = 1, "the measurement contains NaN or inf"
            shape = (count, *job.operator.in_shape)
            mean = np.full(shape, np.nan, dtype=np.float32)
            std = np.full(shape, np.nan, dtype=np.float32)
            good = [k for k in range(count) if not failed[k]]
            if good:
                good_mean, good_std = _posterior_rows(y[good], [chunk[k] for k in good], job, prior, settings, device,
                                                     width)
                mean[good], std[good] = good_mean.numpy(), good_std.numpy()
                for k in good:
                    if not np.isfinite(mean[k]).all():
                        failed[k], reasons[k] = 1, "the reconstruction is not finite"
            arrays: dict[str, Any] = {"items": np.asarray(chunk, dtype=np.int64), "reconstructions": mean,
                                      "failed": failed, "failure_reason": reasons}
            if settings.num_samples > 1:
                arrays["posterior_std"] = std
            if images is not None:
                truth = np.asarray(images[chunk], dtype=np.float32)
                ok = [k for k in range(count) if not failed[k]]
                psnr, ssim = np.full(count, np.nan), np.full(count, np.nan)
                if ok:
                    psnr[ok] = psnr_metric(mean[ok], truth[ok], data_range=data_range)
                    ssim[ok] = ssim_metric(mean[ok], truth[ok], data_range=data_range)
                arrays["psnr"], arrays["ssim"] = psnr, ssim
            arrays["batch_size"] = np.int64(width)
            _write_part(folder, arrays)
            bar.update(count)


# --- the merge --------------------------------------------------------------------------------

def _index(items: np.ndarray) -> slice | list[int]:
    """A slice for consecutive items (fast in h5py), else the sorted list."""
    if items.size and int(items[-1]) - int(items[0]) + 1 == items.size:
        return slice(int(items[0]), int(items[-1]) + 1)
    return items.tolist()


def _merge(folder: Path, out_path: Path, job: _Input, config: dict[str, Any], run: dict[str, Any],
           num_samples: int) -> None:
    """Join the parts into ``out_path`` (temporary file + rename), then remove the work folder."""
    parts = _part_items(folder)
    missing = sorted(set(range(job.items)) - set(parts))
    if missing:
        raise RuntimeError(f"cannot merge {folder}: items {missing[:10]} have no part")
    n, shape = job.items, tuple(job.operator.in_shape)
    with atomic_path(out_path) as temporary, h5py.File(temporary, "w") as out:
        image_sets = ["reconstructions"] + (["posterior_std"] if num_samples > 1 else [])
        for key in image_sets:
            out.create_dataset(key, shape=(n, *shape), dtype="float32", chunks=(1, *shape))
        out.create_dataset("done", shape=(n,), dtype="uint8")
        out.create_dataset("failed", shape=(n,), dtype="uint8")
        out.create_dataset("failure_reason", shape=(n,), dtype=h5py.string_dtype())
        metrics = ["psnr", "ssim"] if job.has_images else []
        for key in metrics:
            out.create_dataset(key, shape=(n,), dtype="float64")
        widths = set()
        for part in sorted(set(parts.values())):
            with h5py.File(part, "r") as handle:
                widths.add(int(handle.attrs.get("batch_size", -1)))
                items = np.asarray(handle["items"])
                where = _index(items)
                for key in [*image_sets, "failed", *metrics]:
                    out[key][where] = np.asarray(handle[key])
                out["failure_reason"][where] = np.asarray(handle["failure_reason"], dtype=object)
                out["done"][where] = np.ones(items.size, dtype=np.uint8)
        attributes = out.attrs
        attributes["format"] = FORMAT
        attributes["format_version"] = FORMAT_VERSION
        attributes["config"] = json.dumps(config, sort_keys=True)
        attributes["operator"] = json.dumps(job.operator_config, sort_keys=True)
        # a resume with another batch size mixes results that differ at rounding level: say so
        attributes["run"] = json.dumps({**run, "batch_sizes": sorted(widths)}, sort_keys=True)
        attributes["input_file"] = str(job.path.resolve())
        attributes["scoreinv_version"] = _scoreinv_version()
        attributes["created_by"] = "scoreinv.datasets.reconstruct_h5"
    shutil.rmtree(folder)


def _summary(out_path: Path, computed: int, reused: int, seconds: float) -> BatchSummary:
    with h5py.File(out_path, "r") as handle:
        failed = np.asarray(handle["failed"]).astype(bool)
        config = json.loads(handle.attrs["config"])
        means: dict[str, float | None] = {"psnr": None, "ssim": None}
        for key in means:
            if key in handle and (~failed).any():
                means[key] = float(np.asarray(handle[key])[~failed].mean())
        return BatchSummary(path=out_path, items=int(failed.size), computed=computed, reused=reused,
                            failed=int(failed.sum()), seconds=seconds, psnr=means["psnr"], ssim=means["ssim"],
                            config=config)


def _broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (itself when alone)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _together(world_: World, action, *args) -> Any:
    """Run ``action`` on rank 0 and share its result; a failure there stops every rank."""
    result, error = None, None
    if world_.is_main:
        try:
            result = action(*args)
        except BaseException as caught:  # noqa: BLE001 (re-raised below, after telling the other ranks)
            error = caught
    if not all_ok(error is None):
        if error is not None:
            raise error
        raise RuntimeError("rank 0 failed (see its error); stopping")
    return _broadcast(result)


# --- the public function ----------------------------------------------------------------------

def reconstruct_h5(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    model: str | os.PathLike = "ct-phantom",
    settings: ReconstructionSettings | None = None,
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> BatchSummary:
    """Reconstruct every item of ``in_path`` into ``out_path``; resumable, deterministic, distributed.

    Parameters
    ----------
    in_path:
        A data set file with ``measurements`` ``(N, *operator.out_shape)``, the operator in
        its ``operator`` attribute (:func:`scoreinv.datasets.simulate_h5` writes such files)
        and optionally the ground-truth ``images`` ``(N, C, H, W)`` (then per-item PSNR and
        SSIM are stored).
    out_path:
        The output file (layout in docs/batch.md). While the job runs, its work lives in
        ``OUT.parts/`` (:func:`work_folder`).
    model:
        A bundled model name or a checkpoint path.
    settings:
        Sampler settings (``None``: all defaults for the operator). Defaults are resolved and
        stored. Item i, sample s is seeded from ``(settings.seed, i, s)``.
    batch_size:
        Items reconstructed together (memory and speed, not the result).
    device:
        Where to compute (default: the CPU; under torchrun ``"cuda"`` means each rank's GPU).
    progress:
        Show a progress bar (items/s and ETA; rank 0 only).
    overwrite:
        Start over: discard the work folder and replace the output (only once the new one is
        complete). Without it, a work folder of the same configuration is resumed, a complete
        output of the same configuration is returned as it is, and a different configuration
        is refused.

    Returns
    -------
    BatchSummary

    Raises
    ------
    FileNotFoundError
        ``in_path`` or the checkpoint does not exist.
    FileExistsError
        ``out_path`` or its work folder exists with a different configuration.
    ValueError
        Bad input: no ``measurements`` or ``operator`` attribute, shapes that do not fit the
        operator or the model, bad settings.
    """
    start_time = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if in_path.resolve() == out_path.resolve():
        raise ValueError(f"the output {out_path} must differ from the input")
    world_ = world()
    device = device_for(world_, device)
    job = _read_input(in_path)
    prior, model_record = _load_prior(model, device, job.operator)
    resolved = resolve_settings(job.operator, settings)
    low, high = prior.value_range
    config = {"input": job.record, "model": model_record, "operator": job.operator_config,
              "settings": resolved.model_dump(), "metrics": {"data_range": float(high - low)},
              "scoreinv_version": _scoreinv_version()}
    folder = work_folder(out_path)

    state = _together(world_, _claim, out_path, folder, config, overwrite)
    if state == "complete":
        return _summary(out_path, 0, job.items, time.perf_counter() - start_time)

    done = _part_items(folder)
    barrier()  # everyone has seen the same finished parts before anyone adds one
    mine = [i for i in range(job.items) if i % world_.size == world_.rank]
    batches = _batches(mine, set(done), int(batch_size))
    ok = False
    try:
        with tqdm(total=sum(map(len, batches)), desc="reconstruct", unit="item", dynamic_ncols=True,
                  disable=not (progress and world_.is_main)) as bar:
            _run_items(batches, job, prior, resolved, folder, device, bar, float(high - low), int(batch_size))
        ok = True
    finally:
        everyone_ok = all_ok(ok)  # a failing rank stops the others here instead of leaving them waiting
    if not everyone_ok:
        raise RuntimeError("another rank failed (see its error); finished parts are kept for a resume")
    run = {"batch_size": int(batch_size), "device": str(device or "cpu"), "world_size": world_.size}
    _together(world_, _merge, folder, out_path, job, config, run, resolved.num_samples)
    return _summary(out_path, job.items - len(done), len(done), time.perf_counter() - start_time)
