"""The end of a batch job: merge the finished parts into the output file, and summarise it."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from scoreinv._version import __version__
from scoreinv.app.batch.workfolder import FORMAT, FORMAT_VERSION, scan_parts
from scoreinv.atomic import atomic_path
from scoreinv.datasets.dicom import copy_slice_metadata

if TYPE_CHECKING:
    from scoreinv.app.batch.runner import BatchInput


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
    failed_items:
        The failed items and why, ``[(item, reason), ...]`` in item order.
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
    failed_items: list[tuple[int, str]] = field(default_factory=list)


def _index(items: np.ndarray) -> slice | list[int]:
    """A slice for consecutive items (fast in h5py), else the sorted list."""
    if items.size and int(items[-1]) - int(items[0]) + 1 == items.size:
        return slice(int(items[0]), int(items[-1]) + 1)
    return items.tolist()


def merge_parts(folder: Path, out_path: Path, job: BatchInput, config: dict[str, Any], run: dict[str, Any],
                num_samples: int) -> None:
    """Join the parts into ``out_path`` (temporary file + rename), then remove the work folder,
    unless items failed: it is then kept, so that a rerun recomputes only those.

    Parameters
    ----------
    folder:
        The work folder; every item of ``job`` must have a row in one of its parts, computed
        from the measurement ``job`` holds now.
    out_path:
        The output file (layout in docs/batch.md).
    job:
        The input (items, operator, whether ground truth is there).
    config:
        The job's configuration, stored as the ``config`` attribute (its identity).
    run:
        How it ran (batch size, device, processes), stored as the ``run`` attribute.
    num_samples:
        Posterior samples per item: above 1 the ``posterior_std`` is merged too.
    """
    index = scan_parts(folder, job.item_hashes)
    rows = {**index.failed, **index.finished}  # item -> (part, row)
    missing = sorted(set(range(job.items)) - set(rows))
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
        taken: dict[Path, list[tuple[int, int]]] = {}  # part -> its (item, row) pairs that go to the output
        for item, (part, row) in sorted(rows.items()):
            taken.setdefault(part, []).append((item, row))
        for part, pairs in sorted(taken.items()):
            with h5py.File(part, "r") as handle:
                widths.add(int(handle.attrs.get("batch_size", -1)))
                items = np.asarray([item for item, _ in pairs])
                chosen = [row for _, row in pairs]
                where = _index(items)
                for key in [*image_sets, "failed", *metrics]:
                    out[key][where] = np.asarray(handle[key])[chosen]
                out["failure_reason"][where] = np.asarray(handle["failure_reason"], dtype=object)[chosen]
                out["done"][where] = np.ones(items.size, dtype=np.uint8)
        with h5py.File(job.path, "r") as source:  # an imported DICOM series keeps its metadata for the export
            copy_slice_metadata(source, out)
        attributes = out.attrs
        attributes["format"] = FORMAT
        attributes["format_version"] = FORMAT_VERSION
        attributes["config"] = json.dumps(config, sort_keys=True)
        attributes["operator"] = json.dumps(job.operator_config, sort_keys=True)
        # a resume with another batch size mixes results that differ at rounding level: say so
        attributes["run"] = json.dumps({**run, "batch_sizes": sorted(widths)}, sort_keys=True)
        attributes["input_file"] = str(job.path.resolve())
        attributes["scoreinv_version"] = __version__
        attributes["created_by"] = "scoreinv.app.reconstruct_h5"
    if not index.failed:
        shutil.rmtree(folder)


def summary(out_path: Path, computed: int, reused: int, seconds: float) -> BatchSummary:
    """The :class:`BatchSummary` of a finished output file."""
    with h5py.File(out_path, "r") as handle:
        failed = np.asarray(handle["failed"]).astype(bool)
        reasons = np.asarray(handle["failure_reason"], dtype=object)
        failed_items = [(int(item), reasons[item].decode() if isinstance(reasons[item], bytes) else str(reasons[item]))
                        for item in np.flatnonzero(failed)]
        config = json.loads(handle.attrs["config"])
        means: dict[str, float | None] = {"psnr": None, "ssim": None}
        for key in means:
            if key in handle and (~failed).any():
                means[key] = float(np.asarray(handle[key])[~failed].mean())
        return BatchSummary(path=out_path, items=int(failed.size), computed=computed, reused=reused,
                            failed=int(failed.sum()), seconds=seconds, psnr=means["psnr"], ssim=means["ssim"],
                            config=config, failed_items=failed_items)
