"""Batch reconstruction of an HDF5 data set: crash-safe, resumable, deterministic, distributed.

:func:`reconstruct_h5` reconstructs every item of ``IN``'s ``measurements`` with the operator
stored in ``IN`` and writes ``OUT`` (layout in docs/batch.md). This module reads the input,
loads the prior and runs the items; the work folder that makes a job survive being killed is
:mod:`scoreinv.app.batch.workfolder`, the final merge :mod:`scoreinv.app.batch.merge`.

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

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from scoreinv._version import __version__
from scoreinv.app.batch.merge import BatchSummary, merge_parts, summary
from scoreinv.app.batch.workfolder import (claim, dataset_hashes, part_items, scan_parts, sha256_file, work_folder,
                                           write_part)
from scoreinv.config import ReconstructionSettings
from scoreinv.datasets.hdf5 import _open
from scoreinv.datasets.simulate import operator_from_file
from scoreinv.distributed import World, all_ok, barrier, device_for, world
from scoreinv.metrics import psnr as psnr_metric
from scoreinv.metrics import ssim as ssim_metric
from scoreinv.operators import LinearOperator
from scoreinv.reconstruct import posterior, resolve_settings


# --- input ------------------------------------------------------------------------------------

@dataclass
class BatchInput:
    """The input file of a batch job, checked.

    Attributes
    ----------
    path:
        The file.
    items:
        N, the number of measurements.
    operator:
        The forward operator stored in the file.
    operator_config:
        Its stored description.
    has_images:
        Whether the file holds the ground-truth ``images`` (then PSNR / SSIM are computed).
    record:
        What identifies the input in the job's configuration (shape and SHA-256 of the measurements).
    item_hashes:
        SHA-256 of each item's measurement (float32 bytes), stored with its result.
    """

    path: Path
    items: int
    operator: LinearOperator
    operator_config: dict[str, Any]
    has_images: bool
    record: dict[str, Any]
    item_hashes: list[str]


def read_input(in_path: Path) -> BatchInput:
    """Open and check ``in_path``: measurements that fit its operator, and images if any.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        No ``measurements``, no operator, measurements that are not real numbers, or shapes
        that do not fit the operator.
    """
    with _open(in_path) as handle:
        if "measurements" not in handle or not isinstance(handle["measurements"], h5py.Dataset):
            held = ", ".join(sorted(handle.keys())) or "nothing"
            raise ValueError(f"{in_path} has no 'measurements' data set (it holds: {held}); "
                             "simulate them with `scoreinv data simulate`")
        operator, operator_config = operator_from_file(handle, str(in_path))
        measurements = handle["measurements"]
        if measurements.dtype.kind not in "fiub":  # complex would lose its imaginary part in the float32 cast
            raise ValueError(f"{in_path}: the measurements hold {measurements.dtype} values; scoreinv takes real "
                             "numbers")
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
        whole, item_hashes = dataset_hashes(measurements)
        record = {"path": str(in_path.resolve()), "items": n, "measurements_shape": list(measurements.shape),
                  "measurements_sha256": whole, "has_images": has_images}
    return BatchInput(in_path, n, operator, operator_config, has_images, record, item_hashes)


def load_prior(model: str | os.PathLike | None, device: torch.device | None,
               operator: LinearOperator) -> tuple[Any, dict]:
    """The prior of a batch job and its record (name or path, SHA-256 of the file, configuration).

    Parameters
    ----------
    model:
        A registered prior's name or a checkpoint path; None: the registered prior for the
        operator's modality, channels and image size (:func:`scoreinv.checkpoint.default_prior_for`),
        the library's rule.
    device:
        Where to load it.
    operator:
        The input's operator: the prior must work on its images.
    """
    from scoreinv.checkpoint import PRIORS, default_prior_for, load_model, resolve_checkpoint

    if model is None:
        model = default_prior_for(operator, tuple(operator.out_shape))
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a bundled model name or a checkpoint path, got {type(model).__name__}")
    path = resolve_checkpoint(model)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    prior = load_model(path, device=device)
    if not prior.serves(tuple(operator.in_shape)):
        raise ValueError(f"the model {str(model)!r} works on images of shape {prior.describe_images()} but the "
                         f"operator of the input file on {tuple(operator.in_shape)}: use a model trained at that size")
    registered = isinstance(model, str) and model in PRIORS
    source = model if registered else str(path.resolve())
    record = {"source": source, "sha256": sha256_file(path), "config": json.loads(prior.config.model_dump_json())}
    return prior, record


# --- reconstruction of one rank's items --------------------------------------------------------

def _batches(mine: list[int], done: set[int], batch_size: int) -> list[list[int]]:
    """This rank's batches, cut from all its items as an uninterrupted run would cut them,
    without the items already done: a resumed run (same batch size, same number of processes)
    then computes exactly the batches the uninterrupted run would have."""
    batches = [[i for i in mine[start:start + batch_size] if i not in done] for start in range(0, len(mine), batch_size)]
    return [chunk for chunk in batches if chunk]


def _posterior_rows(y: torch.Tensor, ids: list[int], job: BatchInput, prior: Any, settings: ReconstructionSettings,
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


def _run_items(batches: list[list[int]], job: BatchInput, prior: Any, settings: ReconstructionSettings, folder: Path,
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
                try:
                    good_mean, good_std = _posterior_rows(y[good], [chunk[k] for k in good], job, prior, settings,
                                                         device, width)
                    mean[good], std[good] = good_mean.numpy(), good_std.numpy()
                except ValueError:  # an item diverged: run them one by one (same result) to find it
                    for k in good:
                        try:
                            one_mean, one_std = _posterior_rows(y[[k]], [chunk[k]], job, prior, settings, device, width)
                            mean[k], std[k] = one_mean[0].numpy(), one_std[0].numpy()
                        except ValueError as error:
                            failed[k], reasons[k] = 1, str(error).splitlines()[0]
                for k in good:
                    if not failed[k] and not np.isfinite(mean[k]).all():
                        failed[k], reasons[k] = 1, "the reconstruction is not finite"
            arrays: dict[str, Any] = {"items": np.asarray(chunk, dtype=np.int64), "reconstructions": mean,
                                      "failed": failed, "failure_reason": reasons,
                                      "measurement_sha256": [job.item_hashes[i] for i in chunk]}
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
            write_part(folder, arrays)
            bar.update(count)


# --- every rank together ---------------------------------------------------------------------

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
    model: str | os.PathLike | None = None,
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
        A registered prior's name or a checkpoint path; None (default): the registered prior for
        the operator's modality, channels and image size (:func:`scoreinv.checkpoint.default_prior_for`).
        The output records which one ran (name or path, and the file's SHA-256).
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
        With ``failed`` > 0 when items failed (a measurement with NaN or inf, a reconstruction
        that is not finite): the output holds every finished item and flags the failed ones
        (``failed_items``), and the work folder is kept, so that after the input is fixed the
        same call computes only those items and completes the output.

    Raises
    ------
    FileNotFoundError
        ``in_path`` or the checkpoint does not exist.
    FileExistsError
        ``out_path`` or its work folder exists with a different configuration.
    ValueError
        Bad input: no ``measurements`` or ``operator`` attribute, shapes that do not fit the
        operator or the model, bad settings, a device this machine does not have.
    BatchInterrupted
        Ctrl-C (a KeyboardInterrupt): the finished parts are kept for a resume; its message
        says how many items are done.
    """
    start_time = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if in_path.resolve() == out_path.resolve():
        raise ValueError(f"the output {out_path} must differ from the input")
    world_ = world()
    device = device_for(world_, device)
    job = read_input(in_path)
    prior, model_record = load_prior(model, device, job.operator)
    resolved = resolve_settings(job.operator, settings)
    low, high = prior.value_range
    config = {"input": job.record, "model": model_record, "operator": job.operator_config,
              "settings": resolved.model_dump(), "metrics": {"data_range": float(high - low)},
              "scoreinv_version": __version__}
    folder = work_folder(out_path)

    state = _together(world_, claim, out_path, folder, config, overwrite)
    if state == "complete":
        return summary(out_path, 0, job.items, time.perf_counter() - start_time)

    done = part_items(folder, job.item_hashes)
    barrier()  # everyone has seen the same finished parts before anyone adds one
    mine = [i for i in range(job.items) if i % world_.size == world_.rank]
    batches = _batches(mine, set(done), int(batch_size))
    ok = False
    try:
        with tqdm(total=sum(map(len, batches)), desc="reconstruct", unit="item", dynamic_ncols=True,
                  disable=not (progress and world_.is_main)) as bar:
            _run_items(batches, job, prior, resolved, folder, device, bar, float(high - low), int(batch_size))
        ok = True
    except KeyboardInterrupt:
        raise BatchInterrupted(len(part_items(folder, job.item_hashes)), job.items) from None
    finally:
        everyone_ok = all_ok(ok)  # a failing rank stops the others here instead of leaving them waiting
    if not everyone_ok:
        raise RuntimeError("another rank failed (see its error); finished parts are kept for a resume")
    run = {"batch_size": int(batch_size), "device": str(device or "cpu"), "world_size": world_.size}
    _together(world_, merge_parts, folder, out_path, job, config, run, resolved.num_samples)
    return summary(out_path, job.items - len(done), len(done), time.perf_counter() - start_time)


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch job: the finished parts are kept, the same call resumes.

    Its message is the one line the command line prints: ``interrupted; N items done, rerun
    the same command to resume``.
    """

    def __init__(self, done: int, items: int) -> None:
        super().__init__(f"interrupted; {done} items done, rerun the same command to resume")
        self.done, self.items = done, items
