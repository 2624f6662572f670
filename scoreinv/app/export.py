"""``scoreinv data export``: the images of an .h5 file as DICOM, NIfTI or PNG, in a new folder.

FILE is a batch result (its ``reconstructions``; failed items are left out and listed) or a
data file (its ``images``). Items are grouped by their source series (the per-slice DICOM
metadata that ``data dicom`` stores and ``data simulate`` and ``batch`` carry along); a file
without it is one group. The folder holds, per group k (1, 2, ...):

* ``dicom``: ``series-k/0001.dcm ...``, a derived CT series
  (:func:`scoreinv.datasets.dicom_export.derived_ct_series`); needs the DICOM metadata;
* ``nifti``: ``series-k.nii.gz``, a volume with its RAS affine
  (:func:`scoreinv.datasets.dicom_export.nifti_volume`); needs the DICOM metadata;
* ``png``: ``series-k.png``, a montage of the images in [0, 1].

Values: images are clipped to [0, 1] and mapped to HU under the file's window
(``window_low_hu``, ``window_high_hu``) for DICOM and NIfTI.

The folder is written under a temporary name beside it and renamed when complete: a failure
leaves no partial folder, and an existing folder is replaced (``overwrite``) only then.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scoreinv.app.files import write_grid
from scoreinv.datasets.hounsfield import unit_to_hu

FORMATS = ("dicom", "nifti", "png")


@dataclass
class ExportResult:
    """What :func:`export_h5` wrote.

    Attributes
    ----------
    folder:
        The folder written.
    format:
        ``"dicom"``, ``"nifti"`` or ``"png"``.
    files:
        The files in it, relative to it.
    items, series:
        Images exported and the groups (series) they form.
    skipped:
        ``(item, reason)`` for each item left out (a failed reconstruction).
    """

    folder: Path
    format: str
    files: list[str]
    items: int
    series: int
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: what was written where."""
        line = (f"wrote {self.items} images of {self.series} series as {self.format} to {self.folder} "
                f"({len(self.files)} files)")
        if self.skipped:
            line += f"; left out {len(self.skipped)} failed item{'s' * (len(self.skipped) != 1)}"
        return line


def _text(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _read(path: Path) -> dict[str, Any]:
    """The images to export, their item indices, the DICOM metadata (if any), the window and a description."""
    import h5py

    from scoreinv.datasets.dicom import SLICE_METADATA
    from scoreinv.datasets.hdf5 import _open

    with _open(path) as handle:
        key = "reconstructions" if "reconstructions" in handle else "images" if "images" in handle else None
        if key is None:
            held = ", ".join(sorted(handle.keys())) or "nothing"
            raise ValueError(f"{path} has neither 'reconstructions' (a batch result) nor 'images' (a data file); it "
                             f"holds: {held}")
        dataset = handle[key]
        if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 4 or dataset.shape[0] == 0:
            raise ValueError(f"{path}: {key!r} must hold images (N, C, H, W), got {getattr(dataset, 'shape', None)}")
        count = dataset.shape[0]
        failed = np.asarray(handle["failed"]).astype(bool) if "failed" in handle else np.zeros(count, dtype=bool)
        reasons = _text(handle["failure_reason"][:]) if "failure_reason" in handle else [""] * count
        metadata = {}
        for name in SLICE_METADATA:
            if name in handle:
                values = handle[name][:]
                if len(values) != count:
                    raise ValueError(f"{path}: its {name!r} holds {len(values)} entries for {count} images")
                metadata[name] = _text(values) if values.dtype.kind in "OSU" else np.asarray(values)
        attributes = {name: handle.attrs[name] for name in handle.attrs}
        images = np.asarray(dataset[:], dtype=np.float32)
    window = None
    if "window_low_hu" in attributes and "window_high_hu" in attributes:
        window = (float(attributes["window_low_hu"]), float(attributes["window_high_hu"]))
    return {"key": key, "images": images, "failed": failed, "reasons": reasons, "metadata": metadata,
            "window": window, "square": str(attributes.get("square", "pad")),
            "description": _description(key, attributes, images.shape[-1])}


def _decode_json(value: Any) -> dict[str, Any]:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    try:
        decoded = json.loads(value) if isinstance(value, str) else {}
    except json.JSONDecodeError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _description(key: str, attributes: dict[str, Any], size: int) -> str:
    """SeriesDescription: the method and its key settings (a batch result) or what the images are."""
    if key != "reconstructions":
        return f"scoreinv images {size}x{size}"
    config = _decode_json(attributes.get("config", "{}"))
    operator = _decode_json(attributes.get("operator", "{}"))
    settings = config.get("settings") or {}
    model = (config.get("model") or {}).get("source", "")
    parts = ["scoreinv", str(settings.get("method") or "reconstruction")]
    if settings.get("steps"):
        parts.append(f"{settings['steps']} steps")
    if operator.get("n_views"):
        parts.append(f"{operator['n_views']} views")
    noise = (operator.get("noise") or {}).get("std")
    if noise:
        parts.append(f"noise {float(noise):g}")
    if model and os.sep not in str(model):
        parts.append(str(model))
    return " ".join(parts)


def _groups(data: dict[str, Any], keep: list[int]) -> list[list[int]]:
    """The kept items grouped by source series, in the order of their first item."""
    series = data["metadata"].get("series_instance_uid")
    if series is None:
        return [keep]
    groups: dict[str, list[int]] = {}
    for index in keep:
        groups.setdefault(series[index], []).append(index)
    return list(groups.values())


def _geometry(data: dict[str, Any], index: int, size: int, path: Path) -> Any:
    from scoreinv.datasets.dicom_export import SliceGeometry, resized_geometry

    metadata = data["metadata"]
    needed = ("image_position", "image_orientation", "pixel_spacing", "original_size")
    absent = [name for name in needed if name not in metadata]
    if absent:
        raise ValueError(f"{path} holds no DICOM geometry ({', '.join(absent)}): import the scans with `scoreinv "
                         "data dicom` and keep its file through `data simulate` and `batch`, or export as png")
    position, orientation = metadata["image_position"][index], metadata["image_orientation"][index]
    spacing = metadata["pixel_spacing"][index]
    if not (np.isfinite(position).all() and np.isfinite(orientation).all() and np.isfinite(spacing).all()):
        source = metadata.get("source", [""] * (index + 1))[index]
        raise ValueError(f"{path}: item {index} ({source}) has no ImagePositionPatient, ImageOrientationPatient or "
                         "PixelSpacing: it cannot be placed in the patient; export as png")
    moved, new_spacing = resized_geometry(position, orientation, spacing, metadata["original_size"][index],
                                          data["square"], size)
    thickness = float(metadata["slice_thickness"][index]) if "slice_thickness" in metadata else math.nan
    attributes = _decode_json(metadata["dicom_attributes"][index]) if "dicom_attributes" in metadata else {}
    source_uid = metadata["sop_instance_uid"][index] if "sop_instance_uid" in metadata else ""
    return SliceGeometry(position=moved, orientation=np.asarray(orientation, dtype=np.float64), spacing=new_spacing,
                         thickness=thickness, source_sop_instance_uid=source_uid, attributes=attributes)


def _hu(data: dict[str, Any], index: int, path: Path) -> np.ndarray:
    if data["window"] is None:
        raise ValueError(f"{path} states no HU window (window_low_hu, window_high_hu): its values cannot be "
                         "written as HU; export as png")
    image = data["images"][index]
    if image.shape[0] != 1:
        raise ValueError(f"{path}: DICOM and NIfTI export takes one-channel CT images, got {image.shape[0]} channels")
    return unit_to_hu(np.clip(image[0], 0, 1).astype(np.float64), data["window"])


def _write(data: dict[str, Any], groups: list[list[int]], fmt: str, folder: Path, path: Path) -> list[str]:
    size = data["images"].shape[-1]
    written = []
    for number, group in enumerate(groups, start=1):
        name = f"series-{number}"
        if fmt == "png":
            write_grid(folder / f"{name}.png", data["images"][group].clip(0, 1))
            written.append(f"{name}.png")
            continue
        geometry = [_geometry(data, i, size, path) for i in group]
        hu = [_hu(data, i, path) for i in group]
        if fmt == "nifti":
            from scoreinv.datasets.dicom_export import nifti_volume

            nifti_volume(hu, geometry).to_filename(str(folder / f"{name}.nii.gz"))
            written.append(f"{name}.nii.gz")
            continue
        from scoreinv.datasets.dicom_export import derived_ct_series

        low, high = data["window"]
        source_number = geometry[0].attributes.get("SeriesNumber", "")
        series_number = 1000 + (int(source_number) if str(source_number).strip().isdigit() else number)
        derivation = (f"{data['description']}; from {len(group)} slices, HU window [{low:g}, {high:g}], "
                      f"{data['square']} to square, resized to {size}x{size}")
        datasets = derived_ct_series(hu, geometry, description=data["description"], window=(low, high),
                                     derivation=derivation, series_number=series_number)
        (folder / name).mkdir()
        for k, ds in enumerate(datasets, start=1):
            file = f"{name}/{k:04d}.dcm"
            ds.save_as(folder / file, enforce_file_format=True)
            written.append(file)
    return written


def export_h5(path: str | os.PathLike, out: str | os.PathLike, fmt: str, *, overwrite: bool = False) -> ExportResult:
    """Export the reconstructions (a batch result) or images (a data file) of ``path`` to the folder ``out``.

    Parameters
    ----------
    path:
        The .h5 file.
    out:
        The folder to write (see the module's notes for its content).
    fmt:
        ``"dicom"``, ``"nifti"`` or ``"png"``.
    overwrite:
        Replace an existing ``out`` (once the new folder is complete).

    Raises
    ------
    ValueError
        An unknown format, a file without images, DICOM or NIfTI without the DICOM metadata or
        window, every item failed, ``out`` a file or ``path`` itself.
    FileExistsError
        ``out`` exists and ``overwrite`` is false.
    ImportError
        pydicom (DICOM) or nibabel (NIfTI) missing.
    """
    path, out = Path(path), Path(out)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"the output {out} is a file; give a folder")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not path.is_file():
        raise FileNotFoundError(f"HDF5 file not found: {path}")
    data = _read(path)
    keep = [i for i in range(len(data["images"])) if not data["failed"][i]]
    skipped = [(i, data["reasons"][i] or "failed") for i in range(len(data["images"])) if data["failed"][i]]
    if not keep:
        raise ValueError(f"{path}: every item failed; nothing to export")
    groups = _groups(data, keep)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as error:
        raise type(error)(f"cannot write {out}: {error.strerror or error} (in the folder {out.parent})") from None
    try:
        files = _write(data, groups, fmt, temporary, path)
        os.chmod(temporary, 0o777 & ~_umask())
        if out.exists():  # overwrite: the old folder goes only once the new one is complete
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "previous")
            os.replace(temporary, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, out)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return ExportResult(folder=out, format=fmt, files=files, items=len(keep), series=len(groups), skipped=skipped)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
