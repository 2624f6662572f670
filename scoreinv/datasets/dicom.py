"""Real CT slices from DICOM files, in the package's image convention and HDF5 layout.

:func:`read_dicom_ct` reads CT image objects from files and folders (folders recursively) and
returns their slices in Hounsfield units with per-slice metadata, plus every file it skipped
and why. :func:`dicom_to_h5` turns them into a data set file: each slice mapped to [0, 1]
under a HU window (the package's ``HU_WINDOW`` by default, :mod:`scoreinv.datasets.hounsfield`),
made square and resized to N×N, written atomically with its metadata.

What is read:

* CT image objects: the SOP classes CT Image Storage, Enhanced CT Image Storage and Legacy
  Converted Enhanced CT Image Storage, or (where the SOP class is absent) Modality ``CT``
  with pixel data. Anything else is skipped with its reason.
* Stored values become HU by ``RescaleSlope · value + RescaleIntercept`` (per frame for
  enhanced objects, from the functional groups); slope 1, intercept 0 where absent.
* Multi-frame objects are split into one slice per frame.
* Slices are grouped by SeriesInstanceUID (series in the order of their UIDs) and sorted
  within a series by slice position, the ImagePositionPatient projected on the slice normal
  (the cross product of the two ImageOrientationPatient directions); where a slice of the
  series has no position, the series is sorted by InstanceNumber (then frame, then file).

Needs ``pydicom`` (``pip install "scoreinv[dicom]"``); it is imported only when a function
here is called.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scoreinv.datasets.hounsfield import HU_WINDOW, hu_to_unit

CT_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
"""The SOP classes read as CT images: UID -> name."""

SQUARE_MODES = ("pad", "crop")


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise ImportError('reading DICOM needs pydicom: pip install "scoreinv[dicom]"') from None
    return pydicom


@dataclass
class DicomSlice:
    """One CT slice read from a DICOM file.

    Attributes
    ----------
    hu : numpy.ndarray
        ``(rows, columns)`` float32 Hounsfield units (rescale slope and intercept applied).
    source : str
        The file it came from.
    frame : int
        The frame within a multi-frame object (0 for single-frame objects).
    sop_instance_uid, series_instance_uid : str
        The object's and its series' UIDs (empty where absent).
    position : float
        ImagePositionPatient projected on the slice normal, in mm (NaN where unknown).
    instance_number : int or None
        InstanceNumber, where present.
    pixel_spacing : (float, float)
        Row and column spacing in mm (NaN where unknown).
    """

    hu: np.ndarray
    source: str
    frame: int
    sop_instance_uid: str
    series_instance_uid: str
    position: float
    instance_number: int | None
    pixel_spacing: tuple[float, float]

    @property
    def original_size(self) -> tuple[int, int]:
        """``(rows, columns)`` as stored."""
        return int(self.hu.shape[0]), int(self.hu.shape[1])


@dataclass
class DicomCT:
    """What :func:`read_dicom_ct` found: the CT slices in order and the files it skipped.

    Attributes
    ----------
    slices : list of DicomSlice
        Sorted by series, then slice position (or InstanceNumber).
    skipped : list of (str, str)
        ``(file, reason)`` for every file that gave no slice.
    """

    slices: list[DicomSlice] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def series(self) -> list[str]:
        """The SeriesInstanceUIDs, in the order of the slices."""
        return list(dict.fromkeys(s.series_instance_uid for s in self.slices))


@dataclass
class DicomImport:
    """The result of :func:`dicom_to_h5`.

    Attributes
    ----------
    path : pathlib.Path
        The file written.
    n_slices, n_series : int
        Slices written and the series they came from.
    size : int
        N of the ``(n, 1, N, N)`` images.
    window : (float, float)
        The HU mapped to 0 and 1.
    square : str
        ``"pad"`` or ``"crop"``.
    skipped : list of (str, str)
        ``(file, reason)`` for every file that gave no slice.
    """

    path: Path
    n_slices: int
    n_series: int
    size: int
    window: tuple[float, float]
    square: str
    skipped: list[tuple[str, str]]

    def summary(self) -> str:
        """One line: what was written, and how many files were skipped."""
        low, high = self.window
        line = (f"wrote {self.n_slices} CT slices of {self.n_series} series ({self.n_slices}, 1, {self.size}, "
                f"{self.size}) to {self.path} (HU window [{low:g}, {high:g}], {self.square} to square)")
        if self.skipped:
            count = len(self.skipped)
            line += f"; skipped {count} file{'' if count == 1 else 's'}"
        return line


def _files(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Every file named or under a named folder (sorted within a folder), and the missing paths."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files, missing = [], []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            missing.append((str(path), "no such file or folder"))
    return list(dict.fromkeys(files)), missing


def _number(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _item(sequence_owner: Any, sequence: str, keyword: str) -> Any:
    """``owner.sequence[0].keyword`` or None."""
    items = getattr(sequence_owner, sequence, None)
    if not items:
        return None
    return getattr(items[0], keyword, None)


def _frame_attribute(ds: Any, frame: int, sequence: str, keyword: str) -> Any:
    """An attribute of an enhanced object's frame: per-frame functional group, else shared, else top level."""
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if per_frame is not None and frame < len(per_frame):
        value = _item(per_frame[frame], sequence, keyword)
        if value is not None:
            return value
    shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
    if shared:
        value = _item(shared[0], sequence, keyword)
        if value is not None:
            return value
    return getattr(ds, keyword, None)


def _position(origin: Any, orientation: Any) -> float:
    try:
        origin = np.asarray([float(x) for x in origin], dtype=np.float64)
        orientation = np.asarray([float(x) for x in orientation], dtype=np.float64)
    except (TypeError, ValueError):
        return math.nan
    if origin.shape != (3,):
        return math.nan
    if orientation.shape != (6,):
        return float(origin[2])  # no orientation: axial by default, the patient z
    normal = np.cross(orientation[:3], orientation[3:])
    return float(origin @ normal) if np.linalg.norm(normal) > 1e-6 else float(origin[2])


def _classify_pixel_error(error: Exception) -> str:
    message = str(error).split("\n")[0].split(" - ")[0]
    lowered = message.lower()
    if "less than expected" in lowered or "truncat" in lowered or "end of file" in lowered:
        return f"truncated: {message}"
    return f"pixel data cannot be decoded: {message}"


def _read_file(path: Path, pydicom: Any) -> tuple[list[DicomSlice], str | None]:
    """The slices of one file, or none and the reason."""
    errors = pydicom.errors
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
    except errors.InvalidDicomError:
        return [], "not DICOM (no DICM header)"
    except OSError as error:
        return [], f"unreadable: {error}"
    except Exception as error:  # a header pydicom cannot parse
        return [], f"unreadable DICOM ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
    sop_class = str(getattr(ds, "SOPClassUID", "") or "")
    modality = str(getattr(ds, "Modality", "") or "")
    if sop_class:
        is_ct = sop_class in CT_SOP_CLASSES
        what = getattr(getattr(ds, "SOPClassUID", None), "name", sop_class)
    else:
        is_ct = modality == "CT"
        what = "no SOP class"
    if not is_ct:
        return [], f"not CT (Modality {modality or 'absent'}, {what})"
    has_pixels = "PixelData" in ds
    if not has_pixels:
        if sop_class in CT_SOP_CLASSES or "Rows" in ds:
            return [], "truncated: a CT image object without its pixel data"
        return [], "not an image (no pixel data)"
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return [], f"not a grey-level image (PhotometricInterpretation {photometric})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = np.asarray(ds.pixel_array)
    except Exception as error:
        return [], _classify_pixel_error(error)
    frames = int(_number(getattr(ds, "NumberOfFrames", 1), 1))
    if frames > 1 and pixels.ndim == 3:
        stack = pixels
    elif pixels.ndim == 2:
        stack = pixels[None]
    else:
        return [], f"not a single-channel image (pixel array of shape {pixels.shape})"
    sop_uid = str(getattr(ds, "SOPInstanceUID", "") or "")
    series_uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
    instance = getattr(ds, "InstanceNumber", None)
    instance = int(_number(instance, 0)) if instance is not None and str(instance).strip() else None
    slices = []
    for index, stored in enumerate(stack):
        slope = _number(_frame_attribute(ds, index, "PixelValueTransformationSequence", "RescaleSlope"), 1.0)
        intercept = _number(_frame_attribute(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"), 0.0)
        origin = _frame_attribute(ds, index, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _frame_attribute(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _frame_attribute(ds, index, "PixelMeasuresSequence", "PixelSpacing")
        try:
            spacing = (float(spacing[0]), float(spacing[1]))
        except (TypeError, ValueError, IndexError):
            spacing = (math.nan, math.nan)
        hu = (stored.astype(np.float64) * slope + intercept).astype(np.float32)
        slices.append(DicomSlice(hu=hu, source=str(path), frame=index, sop_instance_uid=sop_uid,
                                 series_instance_uid=series_uid,
                                 position=_position(origin, orientation) if origin is not None else math.nan,
                                 instance_number=instance, pixel_spacing=spacing))
    return slices, None


def _sorted(slices: list[DicomSlice]) -> list[DicomSlice]:
    by_series: dict[str, list[DicomSlice]] = {}
    for item in slices:
        by_series.setdefault(item.series_instance_uid, []).append(item)
    ordered = []
    for uid in sorted(by_series):
        series = by_series[uid]
        if all(math.isfinite(s.position) for s in series):
            series.sort(key=lambda s: (s.position, s.instance_number or 0, s.frame, s.source))
        else:
            series.sort(key=lambda s: (s.instance_number is None, s.instance_number or 0, s.frame, s.source))
        ordered.extend(series)
    return ordered


def read_dicom_ct(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> DicomCT:
    """Read the CT slices of DICOM files and folders (folders recursively).

    Parameters
    ----------
    paths : path or sequence of paths
        Files and folders. Every file under a folder is tried.

    Returns
    -------
    DicomCT
        ``slices``: every CT slice in HU with its metadata, sorted by series and slice
        position (see the module's notes); ``skipped``: ``(file, reason)`` for each file
        that gave no slice (not DICOM, not CT, not an image, truncated, undecodable,
        unreadable) and each path that does not exist.

    Raises
    ------
    ImportError
        Without pydicom (``pip install "scoreinv[dicom]"``).
    """
    pydicom = _pydicom()
    files, skipped = _files(paths)
    slices = []
    for path in files:
        found, reason = _read_file(path, pydicom)
        if reason is not None:
            skipped.append((str(path), reason))
        slices.extend(found)
    return DicomCT(slices=_sorted(slices), skipped=skipped)


def ct_slice_to_unit(hu: np.ndarray, size: int, window: tuple[float, float] | None = None,
                     square: str = "pad") -> np.ndarray:
    """One slice in HU -> ``(size, size)`` float32 in [0, 1].

    The HU are mapped to [0, 1] under ``window`` (clipped), the image is made square —
    ``"pad"``: centred in a square of side max(rows, columns) filled with 0 (air);
    ``"crop"``: the centred square of side min(rows, columns) — and resized to ``size``
    with anti-aliasing (a Gaussian pre-filter where it shrinks, then bilinear).
    """
    from skimage.transform import resize

    if square not in SQUARE_MODES:
        raise ValueError(f"square must be one of {SQUARE_MODES}, got {square!r}")
    unit = hu_to_unit(np.asarray(hu, dtype=np.float32), window).astype(np.float32)
    rows, cols = unit.shape
    if square == "pad" and rows != cols:
        side = max(rows, cols)
        padded = np.zeros((side, side), dtype=np.float32)
        top, left = (side - rows) // 2, (side - cols) // 2
        padded[top:top + rows, left:left + cols] = unit
        unit = padded
    elif square == "crop" and rows != cols:
        side = min(rows, cols)
        top, left = (rows - side) // 2, (cols - side) // 2
        unit = unit[top:top + side, left:left + side]
    if unit.shape != (size, size):
        unit = resize(unit, (size, size), order=1, anti_aliasing=unit.shape[0] > size, preserve_range=True,
                      mode="edge")
    return np.clip(unit, 0, 1).astype(np.float32)


def dicom_to_h5(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    size: int = 64,
    window: tuple[float, float] | None = None,
    *,
    square: str = "pad",
    overwrite: bool = False,
    created_by: str | None = None,
) -> DicomImport:
    """Write the CT slices of DICOM files and folders to a data set file.

    Parameters
    ----------
    paths : path or sequence of paths
        DICOM files and folders (read recursively), see :func:`read_dicom_ct`.
    out_path : path
        The HDF5 file to write (the layout of :mod:`scoreinv.datasets.hdf5`).
    size : int, optional
        N of the ``(n, 1, N, N)`` images (default 64, at least 8).
    window : (float, float), optional
        The HU mapped to 0 and 1; the package's ``HU_WINDOW`` (−1000, 2000) by default.
    square : {"pad", "crop"}, optional
        How a non-square slice is made square before resizing: padded with air (default) or
        centre-cropped.
    overwrite : bool, optional
        Replace an existing ``out_path`` (default: an error).
    created_by : str, optional
        The file's ``created_by`` attribute (default ``"scoreinv.datasets.dicom_to_h5"``).

    Returns
    -------
    DicomImport
        The path, the counts, the window and every skipped file with its reason.

    Raises
    ------
    ValueError
        When no file holds a usable CT slice (the message lists the skipped files and their
        reasons), or for a bad ``size``, ``window`` or ``square``. No file is written then.
    FileExistsError
        If ``out_path`` exists and ``overwrite`` is false.
    ImportError
        Without pydicom (``pip install "scoreinv[dicom]"``).

    Notes
    -----
    The file holds ``images`` ``(n, 1, N, N)`` float32 in [0, 1] and, per slice, ``source``
    (the file), ``sop_instance_uid``, ``series_instance_uid`` (text), ``frame`` (int),
    ``slice_position`` (mm, NaN where unknown), ``pixel_spacing`` ``(n, 2)`` (mm, as
    stored, before resizing) and ``original_size`` ``(n, 2)`` (rows, columns). The
    attributes ``window_low_hu`` and ``window_high_hu`` and the JSON ``config`` state the
    window, size and square mode. The write is atomic: a failure leaves no file.
    """
    import h5py

    from scoreinv.datasets.hdf5 import H5Writer

    if int(size) != size or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size}")
    if square not in SQUARE_MODES:
        raise ValueError(f"square must be one of {SQUARE_MODES}, got {square!r}")
    low, high = (float(window[0]), float(window[1])) if window is not None else HU_WINDOW
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"window must be (low, high) HU with low < high, got {window}")
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True to replace it")
    found = read_dicom_ct(paths)
    if not found.slices:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in found.skipped) or "no files found"
        raise ValueError(f"no CT slice to import ({reasons})")
    images = np.stack([ct_slice_to_unit(s.hu, int(size), (low, high), square) for s in found.slices])[:, None]
    config = {"kind": "dicom", "size": int(size), "window_hu": [low, high], "square": square,
              "n": len(found.slices), "series": len(found.series), "skipped": len(found.skipped)}
    text = h5py.string_dtype()
    with H5Writer(out_path, config, created_by=created_by or "scoreinv.datasets.dicom_to_h5", overwrite=overwrite,
                  attributes={"window_low_hu": low, "window_high_hu": high}) as writer:
        writer.append(images=images)
        writer.put("source", [s.source for s in found.slices], dtype=text)
        writer.put("sop_instance_uid", [s.sop_instance_uid for s in found.slices], dtype=text)
        writer.put("series_instance_uid", [s.series_instance_uid for s in found.slices], dtype=text)
        writer.put("frame", [s.frame for s in found.slices], dtype="int32")
        writer.put("slice_position", [s.position for s in found.slices], dtype="float64")
        writer.put("pixel_spacing", [s.pixel_spacing for s in found.slices], dtype="float64")
        writer.put("original_size", [s.original_size for s in found.slices], dtype="int32")
    return DicomImport(path=out_path, n_slices=len(found.slices), n_series=len(found.series), size=int(size),
                       window=(low, high), square=square, skipped=found.skipped)
