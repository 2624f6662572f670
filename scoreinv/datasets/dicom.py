"""Real CT slices from DICOM files, in the package's image convention and HDF5 layout.

:func:`read_dicom_ct` reads CT image objects from files and folders (folders recursively) and
returns their slices in Hounsfield units with per-slice metadata, plus every file it skipped
and why. :func:`dicom_to_h5` turns them into a data set file: each slice mapped to [0, 1]
under a HU window (the package's ``HU_WINDOW`` by default, :mod:`scoreinv.datasets.hounsfield`),
made square and resized to N×N (or kept at its own size), written atomically with its metadata.

What is read (what a PACS export holds):

* CT image objects: the SOP classes CT Image Storage, Enhanced CT Image Storage and Legacy
  Converted Enhanced CT Image Storage, or (where the SOP class is absent) Modality ``CT``
  with pixel data. Secondary-capture objects with Modality ``CT`` only when asked
  (``allow_secondary_capture``): their values need not be HU. Anything else is skipped with
  its reason.
* Localizers (scouts, topograms: ``LOCALIZER``, ``SCOUT`` or ``TOPOGRAM`` in ImageType) are
  projection images, not slices: skipped with that reason.
* Compressed pixel data (JPEG Lossless, JPEG-LS, JPEG 2000, RLE) is decoded by pydicom's
  plugins (pylibjpeg with its libjpeg, openjpeg and rle packages, all in the ``dicom``
  extra); where a decoder is missing, the reason says what to install.
* Stored values become HU by ``RescaleSlope · value + RescaleIntercept`` (per frame for
  enhanced objects, from the functional groups); slope 1, intercept 0 where absent. A slope
  or intercept that is present but not a finite number, a zero slope, ``|slope| > 1000`` or
  ``|intercept| > 100000`` refuse the file (its reason names the field).
* Multi-frame objects are split into one slice per frame.
* Duplicates: a SOP Instance UID (and frame) seen twice is kept once; so is a slice position
  seen twice in one series (a lossy or derived copy of the same slice). The one kept is the
  first of: not lossy-compressed, ORIGINAL, then by file name; the dropped one is reported
  with the name of the kept one.
* Slices are grouped by SeriesInstanceUID (series in the order of their UIDs) and sorted
  within a series by slice position, the ImagePositionPatient projected on the slice normal
  (the cross product of the two ImageOrientationPatient directions); where a slice of the
  series has no position, the series is sorted by InstanceNumber (then frame, then file).
  The slice spacing of a series is the median distance between neighbouring positions.

Library warnings (pydicom's about damaged values) are silenced at the boundary of each file:
everything read from a file is read inside one ``warnings.catch_warnings`` block.

Needs ``pydicom`` (``pip install "scoreinv[dicom]"``); it is imported only when a function
here is called.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
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

SECONDARY_CAPTURE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
}
"""Secondary-capture SOP classes read (with Modality CT) only when ``allow_secondary_capture``."""

MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
"""The SOP class of a DICOMDIR."""

LOCALIZER_TYPES = ("LOCALIZER", "SCOUT", "TOPOGRAM")
"""ImageType values that mark a projection (scout) image rather than a slice."""

SQUARE_MODES = ("pad", "crop")
MIN_SIZE = 16
MAX_SIZE = 4096
"""``size`` bounds. Slices are resized and written one at a time, so memory holds a few
N×N float64 arrays: 4096² is 128 MiB each (clinical CT is 512², a few scanners 1024²)."""

MAX_SLOPE = 1000.0
MAX_INTERCEPT = 100_000.0
MAX_ABS_HU = 1_000_000.0

PATIENT_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
    "StudyDescription", "FrameOfReferenceUID", "PositionReferenceIndicator", "SOPClassUID", "SeriesNumber",
    "SeriesDescription", "Manufacturer", "KVP", "PatientPosition", "BodyPartExamined", "AcquisitionNumber",
)
"""Attributes kept per slice (as text, in ``dicom_attributes``) so that an export can continue the study."""

SLICE_METADATA = ("source", "sop_instance_uid", "series_instance_uid", "frame", "slice_position", "pixel_spacing",
                  "original_size", "image_position", "image_orientation", "slice_spacing", "slice_thickness",
                  "dicom_attributes")
"""The per-slice data sets of an imported file; ``data simulate`` and ``batch`` carry them along."""

SLICE_METADATA_ATTRIBUTES = ("window_low_hu", "window_high_hu", "square")
"""The file attributes that go with them."""

DECODER_PACKAGES = {
    "jpeg": "pylibjpeg and pylibjpeg-libjpeg",
    "jpeg-ls": "pylibjpeg and pylibjpeg-libjpeg",
    "jpeg 2000": "pylibjpeg and pylibjpeg-openjpeg",
    "rle": "pylibjpeg and pylibjpeg-rle",
}


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
    image_position : (float, float, float)
        ImagePositionPatient, the centre of the first pixel in the patient's LPS frame, mm (NaN where unknown).
    image_orientation : tuple of 6 floats
        ImageOrientationPatient: the row direction, then the column direction (NaN where unknown).
    slice_thickness : float
        SliceThickness, mm (NaN where unknown).
    slice_spacing : float
        The distance between neighbouring slices of its series, mm (NaN for a single slice
        without thickness); set by :func:`read_dicom_ct`.
    attributes : dict
        The patient, study and series attributes of ``PATIENT_STUDY_KEYWORDS`` found, as text.
    lossy, derived : bool
        Lossy compression was applied once (LossyImageCompression "01"); ImageType is DERIVED.
    """

    hu: np.ndarray
    source: str
    frame: int
    sop_instance_uid: str
    series_instance_uid: str
    position: float
    instance_number: int | None
    pixel_spacing: tuple[float, float]
    image_position: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    image_orientation: tuple[float, ...] = (math.nan,) * 6
    slice_thickness: float = math.nan
    slice_spacing: float = math.nan
    attributes: dict[str, str] = field(default_factory=dict)
    lossy: bool = False
    derived: bool = False

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


class _Refused(Exception):
    """A file that is read but cannot give a slice; the message is the reason."""


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


def _floats(value: Any, count: int) -> tuple[float, ...]:
    """``count`` finite floats from a multi-valued attribute, else NaNs."""
    try:
        numbers = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        return (math.nan,) * count
    if len(numbers) != count or not all(math.isfinite(x) for x in numbers):
        return (math.nan,) * count
    return numbers


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


def _position(origin: tuple[float, ...], orientation: tuple[float, ...]) -> float:
    """The slice position: ``origin · (row × column)``, or the patient z without a usable orientation."""
    if not all(math.isfinite(x) for x in origin):
        return math.nan
    if not all(math.isfinite(x) for x in orientation):
        return float(origin[2])  # no orientation: axial by default, the patient z
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(origin, normal)) if np.linalg.norm(normal) > 1e-6 else float(origin[2])


def _rescale(ds: Any, frame: int, keyword: str, default: float) -> float:
    """RescaleSlope or RescaleIntercept of a frame: the default where absent; a bad value refuses the file."""
    try:
        value = _frame_attribute(ds, frame, "PixelValueTransformationSequence", keyword)
    except Exception as error:  # a value pydicom cannot convert ("abc" as a decimal string)
        raise _Refused(f"{keyword} is not a number ({str(error).splitlines()[0] if str(error) else error!r})")
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Refused(f"{keyword} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise _Refused(f"{keyword} {number} is not a finite number")
    if keyword == "RescaleSlope" and not 0 < abs(number) <= MAX_SLOPE:
        raise _Refused(f"RescaleSlope {number:g} is outside 0 < |slope| <= {MAX_SLOPE:g}")
    if keyword == "RescaleIntercept" and abs(number) > MAX_INTERCEPT:
        raise _Refused(f"RescaleIntercept {number:g} is outside |intercept| <= {MAX_INTERCEPT:g}")
    return number


def _classify_pixel_error(error: Exception) -> str:
    message = str(error).split("\n")[0].split(" - ")[0]
    lowered = message.lower()
    if "less than expected" in lowered or "truncat" in lowered or "end of file" in lowered:
        return f"truncated: {message}"
    return f"pixel data cannot be decoded: {message}"


def _missing_decoder(ds: Any) -> str | None:
    """The reason the pixel data of ``ds`` cannot be decoded here, naming what to install; None if it can."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not getattr(syntax, "is_compressed", False):
        return None
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return f"pixel data cannot be decoded: pydicom has no decoder for the transfer syntax {syntax.name}"
    if decoder.is_available:
        return None
    lowered = syntax.name.lower()
    family = ("jpeg 2000" if "2000" in lowered else "jpeg-ls" if "jpeg-ls" in lowered
              else "rle" if "rle" in lowered else "jpeg" if "jpeg" in lowered else None)
    packages = f" (it brings {DECODER_PACKAGES[family]})" if family else ""
    missing = "; ".join(decoder.missing_dependencies)
    return (f'pixel data cannot be decoded: no decoder for {syntax.name} is installed; '
            f'pip install "scoreinv[dicom]"{packages}' + (f" [pydicom: {missing}]" if missing else ""))


def _text(value: Any) -> str:
    """An attribute as text: DICOM pads with NUL and spaces, and a damaged value may hold NULs (which HDF5
    text cannot): both go."""
    return "" if value is None else str(value).replace("\x00", "").strip()


def _text_attributes(ds: Any) -> dict[str, str]:
    found = {}
    for keyword in PATIENT_STUDY_KEYWORDS:
        try:
            value = _text(ds.get(keyword))
        except Exception:  # a damaged value: leave it out
            continue
        if value:
            found[keyword] = value
    return found


def _read_file(path: Path, pydicom: Any, allow_secondary_capture: bool = False) -> tuple[list[DicomSlice], str | None]:
    """The slices of one file, or none and the reason.

    Everything read from the file (header, pixel data, every attribute) is read here, with
    library warnings silenced: a damaged value gives a reason or a default, never a warning
    printed later.
    """
    library_log = logging.getLogger("pydicom")  # pydicom logs what it warns: quiet for this file too
    level = library_log.level
    library_log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _read_quietly(path, pydicom, allow_secondary_capture), None
        except _Refused as refused:
            return [], str(refused)
        except MemoryError:
            return [], "unreadable DICOM (its image is too large to hold in memory)"
        except Exception as error:  # a header pydicom parsed but whose values do not hold together
            first = str(error).splitlines()[0] if str(error) else ""
            return [], f"unreadable DICOM ({type(error).__name__}: {first})"
        finally:
            library_log.setLevel(level)


def _read_quietly(path: Path, pydicom: Any, allow_secondary_capture: bool) -> list[DicomSlice]:
    errors = pydicom.errors
    try:
        ds = pydicom.dcmread(path)
    except errors.InvalidDicomError:
        raise _Refused("not DICOM (no DICM header)") from None
    except OSError as error:
        raise _Refused(f"unreadable: {error}") from None
    except Exception as error:  # a header pydicom cannot parse
        first = str(error).splitlines()[0] if str(error) else ""
        raise _Refused(f"unreadable DICOM ({type(error).__name__}: {first})") from None
    sop_class = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "")
    if str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")) == MEDIA_DIRECTORY:
        raise _Refused("not an image (a DICOMDIR, the index of a DICOM folder)")
    if sop_class:
        is_ct = sop_class in CT_SOP_CLASSES
        what = CT_SOP_CLASSES.get(sop_class) or SECONDARY_CAPTURE_SOP_CLASSES.get(sop_class) or getattr(
            ds.SOPClassUID, "name", sop_class)
        if sop_class in SECONDARY_CAPTURE_SOP_CLASSES and modality == "CT":
            if not allow_secondary_capture:
                raise _Refused(f"secondary capture with Modality CT ({what}): its values are not guaranteed to be "
                               "HU; pass --allow-secondary-capture to import it")
            is_ct = True
    else:
        is_ct = modality == "CT"
        what = "no SOP class"
    if not is_ct:
        raise _Refused(f"not CT (Modality {modality or 'absent'}, {what})")
    image_type = ds.get("ImageType") or []
    image_type = [str(value).strip().upper() for value in ([image_type] if isinstance(image_type, str) else image_type)]
    localizer = [value for value in image_type if value in LOCALIZER_TYPES]
    if localizer:
        shown = "\\".join(image_type)
        raise _Refused(f"a localizer (scout), not a slice: ImageType {shown}")
    if "PixelData" not in ds:
        if sop_class in CT_SOP_CLASSES or "Rows" in ds:
            raise _Refused("truncated or header only: a CT image object without its pixel data")
        raise _Refused("not an image (no pixel data)")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise _Refused(f"not a grey-level image (PhotometricInterpretation {photometric})")
    missing = _missing_decoder(ds)
    if missing is not None:
        raise _Refused(missing)
    try:
        pixels = np.asarray(ds.pixel_array)
    except MemoryError:
        raise
    except Exception as error:
        raise _Refused(_classify_pixel_error(error)) from None
    frames = int(_number(ds.get("NumberOfFrames", 1), 1))
    if frames > 1 and pixels.ndim == 3:
        stack = pixels
    elif pixels.ndim == 2:
        stack = pixels[None]
    else:
        raise _Refused(f"not a single-channel image (pixel array of shape {pixels.shape})")
    if stack.shape[1] < 1 or stack.shape[2] < 1:
        raise _Refused(f"an empty image (pixel array of shape {pixels.shape})")
    sop_uid = _text(ds.get("SOPInstanceUID"))
    series_uid = _text(ds.get("SeriesInstanceUID"))
    instance = ds.get("InstanceNumber")
    instance = int(_number(instance, 0)) if instance is not None and str(instance).strip() else None
    lossy = str(ds.get("LossyImageCompression", "") or "").strip() == "01"
    derived = bool(image_type) and image_type[0] == "DERIVED"
    attributes = _text_attributes(ds)
    thickness = _number(ds.get("SliceThickness"), math.nan)
    slices = []
    for index, stored in enumerate(stack):
        slope = _rescale(ds, index, "RescaleSlope", 1.0)
        intercept = _rescale(ds, index, "RescaleIntercept", 0.0)
        hu = stored.astype(np.float64) * slope + intercept
        largest = float(np.abs(hu).max())
        if not largest <= MAX_ABS_HU:
            raise _Refused(f"values up to {largest:g} HU after RescaleSlope {slope:g} and RescaleIntercept "
                           f"{intercept:g}: not CT values")
        origin = _floats(_frame_attribute(ds, index, "PlanePositionSequence", "ImagePositionPatient"), 3)
        orientation = _floats(_frame_attribute(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        spacing = _floats(_frame_attribute(ds, index, "PixelMeasuresSequence", "PixelSpacing"), 2)
        frame_thickness = _number(_frame_attribute(ds, index, "PixelMeasuresSequence", "SliceThickness"), thickness)
        slices.append(DicomSlice(
            hu=hu.astype(np.float32), source=str(path), frame=index, sop_instance_uid=sop_uid,
            series_instance_uid=series_uid, position=_position(origin, orientation), instance_number=instance,
            pixel_spacing=(spacing[0], spacing[1]), image_position=origin, image_orientation=orientation,
            slice_thickness=frame_thickness, attributes=attributes, lossy=lossy, derived=derived))
    return slices


def _preference(item: DicomSlice) -> tuple:
    """Which of two copies of a slice to keep: not lossy, not derived, then the first file."""
    return (item.lossy, item.derived, item.source, item.frame)


def _drop_repeats(slices: list[DicomSlice], key_of, reason_of, dropped: dict[str, str]) -> None:
    """Keep the preferred slice of each ``key_of(slice)`` (None: not compared); record every other
    file in ``dropped`` with ``reason_of(dropped_slice, kept_slice)``."""
    kept_of: dict[tuple, DicomSlice] = {}
    for item in sorted(slices, key=_preference):
        key = key_of(item)
        if key is None:
            continue
        if key not in kept_of:
            kept_of[key] = item
        elif kept_of[key].source != item.source:
            dropped.setdefault(item.source, reason_of(item, kept_of[key]))


def _drop_duplicates(slices: list[DicomSlice]) -> tuple[list[DicomSlice], list[tuple[str, str]]]:
    """Keep one slice per SOP Instance UID (and frame), then one per position within a series."""
    dropped: dict[str, str] = {}
    _drop_repeats(slices, lambda item: (item.sop_instance_uid, item.frame) if item.sop_instance_uid else None,
                  lambda item, kept: (f"duplicate of {kept.source} (same SOP Instance UID "
                                      f"{item.sop_instance_uid}), which is kept"), dropped)
    remaining = [s for s in slices if s.source not in dropped]
    _drop_repeats(remaining,
                  lambda item: ((item.series_instance_uid, round(item.position, 3))
                                if math.isfinite(item.position) else None),
                  lambda item, kept: (f"the same slice as {kept.source} (series {item.series_instance_uid}, "
                                      f"position {item.position:g} mm), which is kept"), dropped)
    return [s for s in slices if s.source not in dropped], list(dropped.items())


def _sorted(slices: list[DicomSlice]) -> list[DicomSlice]:
    by_series: dict[str, list[DicomSlice]] = {}
    for item in slices:
        by_series.setdefault(item.series_instance_uid, []).append(item)
    ordered = []
    for uid in sorted(by_series):
        series = by_series[uid]
        if all(math.isfinite(s.position) for s in series):
            series.sort(key=lambda s: (s.position, s.instance_number or 0, s.frame, s.source))
            steps = np.diff([s.position for s in series])
            spacing = float(np.median(steps)) if len(steps) else math.nan
        else:
            series.sort(key=lambda s: (s.instance_number is None, s.instance_number or 0, s.frame, s.source))
            spacing = math.nan
        for item in series:
            item.slice_spacing = spacing if math.isfinite(spacing) and spacing > 0 else item.slice_thickness
        ordered.extend(series)
    return ordered


def _check_sizes(slices: list[DicomSlice]) -> None:
    """A series is one stack: every slice of it has the same rows and columns."""
    sizes: dict[str, dict[tuple[int, int], str]] = {}
    for item in slices:
        sizes.setdefault(item.series_instance_uid, {}).setdefault(item.original_size, item.source)
    for uid, found in sizes.items():
        if len(found) > 1:
            listed = ", ".join(f"{rows}×{cols} ({source})" for (rows, cols), source in list(found.items())[:3])
            raise ValueError(f"series {uid or '(no SeriesInstanceUID)'} mixes slice sizes: {listed}; a series must "
                             "be one stack of equal slices (import its files separately)")


def read_dicom_ct(paths: str | os.PathLike | Sequence[str | os.PathLike], *, series: Sequence[str] | None = None,
                  allow_secondary_capture: bool = False) -> DicomCT:
    """Read the CT slices of DICOM files and folders (folders recursively).

    Parameters
    ----------
    paths : path or sequence of paths
        Files and folders. Every file under a folder is tried.
    series : sequence of str, optional
        Keep only these SeriesInstanceUIDs (default: every series). A UID that no file
        holds is an error.
    allow_secondary_capture : bool, optional
        Read secondary-capture objects whose Modality is CT (their values need not be HU).

    Returns
    -------
    DicomCT
        ``slices``: every CT slice in HU with its metadata, once, sorted by series and slice
        position (see the module's notes); ``skipped``: ``(file, reason)`` for each file
        that gave no slice (not DICOM, not CT, a localizer, a duplicate, not an image,
        truncated, undecodable, bad rescale values, unreadable, another series) and each path
        that does not exist.

    Raises
    ------
    ValueError
        A series whose slices differ in size, or a ``series`` UID that no file holds.
    ImportError
        Without pydicom (``pip install "scoreinv[dicom]"``).
    """
    pydicom = _pydicom()
    files, skipped = _files(paths)
    slices = []
    for path in files:
        found, reason = _read_file(path, pydicom, allow_secondary_capture)
        if reason is not None:
            skipped.append((str(path), reason))
        slices.extend(found)
    if series is not None:
        wanted = list(dict.fromkeys(str(uid) for uid in series))
        present = set(s.series_instance_uid for s in slices)
        unknown = [uid for uid in wanted if uid not in present]
        if unknown:
            raise ValueError(f"no CT slice of series {', '.join(unknown)} (the series found: "
                             f"{', '.join(sorted(present)) or 'none'})")
        others = list(dict.fromkeys(s.source for s in slices if s.series_instance_uid not in wanted))
        skipped.extend((source, "another series (not chosen by --series)") for source in others)
        slices = [s for s in slices if s.series_instance_uid in wanted]
    slices, duplicates = _drop_duplicates(slices)
    skipped.extend(duplicates)
    _check_sizes(slices)
    return DicomCT(slices=_sorted(slices), skipped=skipped)


def square_side(rows: int, columns: int, square: str) -> int:
    """The side of the square a ``rows × columns`` slice becomes: the larger (pad) or the smaller (crop)."""
    return max(rows, columns) if square == "pad" else min(rows, columns)


def ct_slice_to_unit(hu: np.ndarray, size: int | None, window: tuple[float, float] | None = None,
                     square: str = "pad") -> np.ndarray:
    """One slice in HU -> ``(size, size)`` float32 in [0, 1].

    The HU are mapped to [0, 1] under ``window`` (clipped), the image is made square —
    ``"pad"``: centred in a square of side max(rows, columns) filled with 0 (air);
    ``"crop"``: the centred square of side min(rows, columns) — and resized to ``size``
    with anti-aliasing (a Gaussian pre-filter where it shrinks, then bilinear); ``size=None``
    keeps the square's own side. The padding is ``(side - rows) // 2`` rows above and
    ``(side - columns) // 2`` columns to the left (the crop starts there too), which
    :func:`scoreinv.datasets.dicom_export.resized_geometry` relies on.
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
    if size is not None and unit.shape != (size, size):
        unit = resize(unit, (size, size), order=1, anti_aliasing=unit.shape[0] > size, preserve_range=True,
                      mode="edge")
    return np.clip(unit, 0, 1).astype(np.float32)


def check_size(size: int | str) -> int | None:
    """``size`` as an int in [MIN_SIZE, MAX_SIZE], or None for ``"native"``; anything else is a ValueError."""
    if isinstance(size, str) and size.strip().lower() == "native":
        return None
    try:
        number = int(size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an integer from {MIN_SIZE} to {MAX_SIZE} or 'native', got {size!r}") from None
    if number != size and str(number) != str(size).strip():
        raise ValueError(f"size must be an integer from {MIN_SIZE} to {MAX_SIZE} or 'native', got {size!r}")
    if not MIN_SIZE <= number <= MAX_SIZE:
        raise ValueError(f"size must be from {MIN_SIZE} to {MAX_SIZE} (a slice is resized in memory: {MAX_SIZE}² "
                         f"float64 is {MAX_SIZE**2 * 8 // 2**20} MiB) or 'native', got {size}")
    return number


def _check_window(window: tuple[float, float] | None) -> tuple[float, float]:
    if window is None:
        return HU_WINDOW
    try:
        low, high = float(window[0]), float(window[1])
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"window must be (low, high) HU, two finite numbers with low < high, got {window!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"window must be (low, high) HU, two finite numbers with low < high, got ({low:g}, {high:g})")
    return low, high


def _native_side(slices: list[DicomSlice], square: str) -> int:
    sides: dict[int, str] = {}
    for item in slices:
        sides.setdefault(square_side(*item.original_size, square), item.source)
    if len(sides) > 1:
        listed = ", ".join(f"{side}² ({source})" for side, source in list(sides.items())[:3])
        raise ValueError(f"size 'native' needs slices of one size, found {listed}: choose a size, or one series "
                         "with --series")
    side = next(iter(sides))
    if side > MAX_SIZE:
        raise ValueError(f"native slices of {side}² exceed the largest size {MAX_SIZE}: choose a size")
    return side


def _check_room(out_path: Path, count: int, size: int) -> None:
    """Refuse a file that the output's disk cannot hold (float32 images, before writing anything)."""
    needed = count * size * size * 4
    folder = out_path.parent if out_path.parent.exists() else Path(".")
    if folder.is_dir() and not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {out_path}: Permission denied (in the folder {folder})")
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ValueError(f"{count} slices of {size}² need {needed / 2**30:.1f} GiB, but {folder} has "
                         f"{free / 2**30:.1f} GiB free: choose a smaller size")


def dicom_to_h5(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    size: int | str = 64,
    window: tuple[float, float] | None = None,
    *,
    square: str = "pad",
    overwrite: bool = False,
    series: Sequence[str] | None = None,
    allow_secondary_capture: bool = False,
    created_by: str | None = None,
) -> DicomImport:
    """Write the CT slices of DICOM files and folders to a data set file.

    Parameters
    ----------
    paths : path or sequence of paths
        DICOM files and folders (read recursively), see :func:`read_dicom_ct`.
    out_path : path
        The HDF5 file to write (the layout of :mod:`scoreinv.datasets.hdf5`). It must not be
        one of the files read.
    size : int or "native", optional
        N of the ``(n, 1, N, N)`` images, from 16 to 4096 (default 64); ``"native"`` keeps
        the slices' own size (after making them square), which must then be one size.
    window : (float, float), optional
        The HU mapped to 0 and 1; the package's ``HU_WINDOW`` (−1000, 2000) by default.
    square : {"pad", "crop"}, optional
        How a non-square slice is made square before resizing: padded with air (default) or
        centre-cropped.
    overwrite : bool, optional
        Replace an existing ``out_path`` (default: an error).
    series : sequence of str, optional
        Import only these SeriesInstanceUIDs.
    allow_secondary_capture : bool, optional
        Import secondary-capture objects with Modality CT too (their values need not be HU).
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
        reasons), for a series of mixed slice sizes, for a bad ``size``, ``window``,
        ``square`` or ``series``, when ``out_path`` is one of the inputs, or when the disk
        cannot hold the file. No file is written then.
    FileExistsError
        If ``out_path`` exists and ``overwrite`` is false.
    ImportError
        Without pydicom (``pip install "scoreinv[dicom]"``).

    Notes
    -----
    The file holds ``images`` ``(n, 1, N, N)`` float32 in [0, 1] and, per slice (the names
    in ``SLICE_METADATA``): ``source`` (the file), ``sop_instance_uid``,
    ``series_instance_uid`` (text), ``frame`` (int), ``slice_position`` (mm, NaN where
    unknown), ``pixel_spacing`` ``(n, 2)`` (mm, as stored, before resizing),
    ``original_size`` ``(n, 2)`` (rows, columns), ``image_position`` ``(n, 3)`` and
    ``image_orientation`` ``(n, 6)`` (as stored, LPS), ``slice_spacing`` and
    ``slice_thickness`` (mm) and ``dicom_attributes`` (JSON text: patient, study and series
    attributes). The attributes ``window_low_hu``, ``window_high_hu`` and ``square`` and the
    JSON ``config`` state the window, size and square mode. Slices are written one at a
    time and the write is atomic: a failure leaves no file.
    """
    import h5py

    from scoreinv.datasets.hdf5 import H5Writer

    wanted = check_size(size)
    if square not in SQUARE_MODES:
        raise ValueError(f"square must be one of {SQUARE_MODES}, got {square!r}")
    low, high = _check_window(window)
    out_path = Path(out_path)
    files, _ = _files(paths)
    if out_path.exists() and any(out_path.resolve() == f.resolve() for f in files):
        raise ValueError(f"the output {out_path} is one of the input files: choose another output")
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True to replace it")
    found = read_dicom_ct(paths, series=series, allow_secondary_capture=allow_secondary_capture)
    if not found.slices:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in found.skipped) or "no files found"
        raise ValueError(f"no CT slice to import ({reasons})")
    side = wanted if wanted is not None else _native_side(found.slices, square)
    _check_room(out_path, len(found.slices), side)
    config = {"kind": "dicom", "size": "native" if wanted is None else side, "image_size": side,
              "window_hu": [low, high], "square": square, "n": len(found.slices), "series": len(found.series),
              "skipped": len(found.skipped)}
    text = h5py.string_dtype()
    slices = found.slices
    with H5Writer(out_path, config, created_by=created_by or "scoreinv.datasets.dicom_to_h5", overwrite=overwrite,
                  attributes={"window_low_hu": low, "window_high_hu": high, "square": square}) as writer:
        for item in slices:
            writer.append(images=ct_slice_to_unit(item.hu, side, (low, high), square)[None, None])
        writer.put("source", [s.source for s in slices], dtype=text)
        writer.put("sop_instance_uid", [s.sop_instance_uid for s in slices], dtype=text)
        writer.put("series_instance_uid", [s.series_instance_uid for s in slices], dtype=text)
        writer.put("frame", [s.frame for s in slices], dtype="int32")
        writer.put("slice_position", [s.position for s in slices], dtype="float64")
        writer.put("pixel_spacing", [s.pixel_spacing for s in slices], dtype="float64")
        writer.put("original_size", [s.original_size for s in slices], dtype="int32")
        writer.put("image_position", [s.image_position for s in slices], dtype="float64")
        writer.put("image_orientation", [s.image_orientation for s in slices], dtype="float64")
        writer.put("slice_spacing", [s.slice_spacing for s in slices], dtype="float64")
        writer.put("slice_thickness", [s.slice_thickness for s in slices], dtype="float64")
        writer.put("dicom_attributes", [json.dumps(s.attributes, sort_keys=True) for s in slices], dtype=text)
    return DicomImport(path=out_path, n_slices=len(slices), n_series=len(found.series), size=side,
                       window=(low, high), square=square, skipped=found.skipped)


def copy_slice_metadata(source: Any, target: Any) -> list[str]:
    """Copy the per-slice DICOM metadata of an imported file between two open h5py files.

    The data sets of ``SLICE_METADATA`` and the attributes of ``SLICE_METADATA_ATTRIBUTES``
    that ``source`` holds are copied to ``target`` as they are (items stay in order: a file
    made from another keeps its items). Returns the names copied (none for a file that did
    not come from DICOM).
    """
    copied = []
    for name in SLICE_METADATA:
        if name in source and name not in target:
            source.copy(source[name], target, name=name)
            copied.append(name)
    for name in SLICE_METADATA_ATTRIBUTES:
        if name in source.attrs and name not in target.attrs:
            target.attrs[name] = source.attrs[name]
    return copied
