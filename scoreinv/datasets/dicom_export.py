"""Reconstructed CT slices back into the scanner's frame: a derived DICOM CT series, a NIfTI volume.

An imported file (:func:`scoreinv.datasets.dicom_to_h5`) keeps, per slice, where its pixels
were in the patient (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, the size as
stored and the square mode). :func:`resized_geometry` follows a slice through the import:
made square (padded or cropped), then resized from side S to N, so that output pixel ``(i, j)``
sits where it sits in the patient. :func:`derived_ct_series` writes such slices, in HU, as a
new CT series of the same study; :func:`nifti_volume` as a NIfTI image with its RAS affine.

Conventions. DICOM's patient frame is LPS (x to the patient's left, y to the posterior, z to
the head). The centre of stored pixel (row r, column c) is

.. math::

    P(r, c) = P_0 + c\\,Δ_c\\,\\mathbf{u} + r\\,Δ_r\\,\\mathbf{v},

with ``P_0`` = ImagePositionPatient, ``u`` and ``v`` the first and second triple of
ImageOrientationPatient (the directions of increasing column and row index) and
``(Δ_r, Δ_c)`` = PixelSpacing (between rows, between columns). scikit-image's ``resize`` from
S to N puts output pixel k at input coordinate ``(k + ½)·S/N − ½``, so the resized slice has
``P_0' = P(o_r + s, o_c + s)`` with ``s = S/(2N) − ½`` and spacing ``Δ·S/N``, where
``(o_r, o_c)`` is the square's first pixel in stored coordinates (negative where padded).
NIfTI's frame is RAS: x and y flip.

Needs pydicom (DICOM) and nibabel (NIfTI), both in ``pip install "scoreinv[dicom]"``;
imported only when a function here is called.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scoreinv._version import __version__
from scoreinv.datasets.dicom import square_side

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class SliceGeometry:
    """Where a slice's pixels are in the patient (LPS, mm) and what it came from.

    Attributes
    ----------
    position : (3,) array
        ImagePositionPatient of the first pixel's centre.
    orientation : (6,) array
        ImageOrientationPatient: the column-index direction, then the row-index direction.
    spacing : (2,) array
        PixelSpacing: between rows, between columns.
    thickness : float
        SliceThickness (NaN where unknown).
    source_sop_instance_uid : str
        The SOP instance the slice was made from ("" where unknown).
    attributes : dict
        The source's patient, study and series attributes (text).
    """

    position: np.ndarray
    orientation: np.ndarray
    spacing: np.ndarray
    thickness: float = math.nan
    source_sop_instance_uid: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def normal(self) -> np.ndarray:
        """The slice normal, ``u × v``."""
        return np.cross(self.orientation[:3], self.orientation[3:])


def resized_geometry(position: Sequence[float], orientation: Sequence[float], spacing: Sequence[float],
                     original_size: Sequence[int], square: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """ImagePositionPatient and PixelSpacing of a stored slice once made square and resized to ``size``.

    Parameters
    ----------
    position, orientation, spacing:
        The stored slice's ImagePositionPatient (3), ImageOrientationPatient (6) and
        PixelSpacing (2: between rows, between columns).
    original_size:
        ``(rows, columns)`` as stored.
    square:
        ``"pad"`` or ``"crop"``, as :func:`scoreinv.datasets.dicom.ct_slice_to_unit` made it square.
    size:
        N of the N×N image.

    Returns
    -------
    (position (3,), spacing (2,))
        ``P(o_r + s, o_c + s)`` and ``Δ·S/N`` (see the module's notes).
    """
    rows, columns = int(original_size[0]), int(original_size[1])
    side = square_side(rows, columns, square)
    if square == "pad":
        first_row, first_column = -((side - rows) // 2), -((side - columns) // 2)
    else:
        first_row, first_column = (rows - side) // 2, (columns - side) // 2
    scale = side / int(size)
    shift = scale / 2 - 0.5
    position = np.asarray(position, dtype=np.float64)
    orientation = np.asarray(orientation, dtype=np.float64)
    row_spacing, column_spacing = float(spacing[0]), float(spacing[1])
    moved = (position + (first_column + shift) * column_spacing * orientation[:3]
             + (first_row + shift) * row_spacing * orientation[3:])
    return moved, np.array([row_spacing * scale, column_spacing * scale])


def hu_storage(window: tuple[float, float]) -> tuple[float, float]:
    """``(slope, intercept)`` that store HU of ``window`` as int16: slope 1 and intercept −1024 where they fit
    (a rounding error of at most ½ HU), else a slope that spreads the window over 60000 values."""
    low, high = window
    if low + 1024 >= -32768 and high + 1024 <= 32767:
        return 1.0, -1024.0
    slope = (high - low) / 60000.0
    return slope, (low + high) / 2


def _valid(keyword: str, value: str) -> str:
    """A source attribute's value if it is valid for its VR, else "" (a damaged source value is not
    copied into the new series; type 2 attributes stay present and empty)."""
    from pydicom.config import RAISE
    from pydicom.datadict import dictionary_VR
    from pydicom.valuerep import validate_value

    if not value:
        return ""
    try:
        validate_value(dictionary_VR(keyword), value, RAISE)
    except (ValueError, KeyError):
        return ""
    return value


def _ds(value: float) -> str:
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def derived_ct_series(hu: Sequence[np.ndarray], geometry: Sequence[SliceGeometry], *, description: str,
                      window: tuple[float, float], derivation: str, series_number: int = 1000) -> list[Any]:
    """One new derived CT series (CT Image Storage, one file per slice) of the same study as its source.

    Parameters
    ----------
    hu:
        The slices, ``(N, N)`` Hounsfield units each, in the order of ``geometry``.
    geometry:
        Each slice's position, orientation, spacing (of the N×N image), thickness, source SOP
        instance and the source's patient / study attributes.
    description:
        SeriesDescription (cut to 64 characters): the method and its key settings.
    window:
        The HU window the values came from: stored as the display window (Window Center / Width).
    derivation:
        DerivationDescription (cut to 1024 characters).
    series_number:
        SeriesNumber of the new series.

    Returns
    -------
    list of pydicom.Dataset
        Patient and study attributes kept, new Series Instance UID and SOP Instance UIDs,
        ImageType DERIVED\\SECONDARY\\AXIAL, a Source Image Sequence to the source SOP
        instance, HU stored as int16 through RescaleSlope and RescaleIntercept (:func:`hu_storage`).
        Each is checked by :func:`check_ct_image`.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    if len(hu) != len(geometry) or not len(hu):
        raise ValueError(f"derived_ct_series needs one geometry per slice and at least one slice, got {len(hu)} "
                         f"slices and {len(geometry)} geometries")
    slope, intercept = hu_storage(window)
    series_uid = generate_uid()
    first = geometry[0].attributes
    # kept from the source; a missing or damaged one (not a valid UID) is replaced by a new one
    frame_of_reference = _valid("FrameOfReferenceUID", first.get("FrameOfReferenceUID", "")) or generate_uid()
    study_uid = _valid("StudyInstanceUID", first.get("StudyInstanceUID", "")) or generate_uid()
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    centre, width = (window[0] + window[1]) / 2, window[1] - window[0]
    datasets = []
    for index, (image, where) in enumerate(zip(hu, geometry), start=1):
        image = np.asarray(image, dtype=np.float64)
        if image.ndim != 2 or not np.isfinite(image).all():
            raise ValueError(f"slice {index} must be a finite 2-D image, got shape {image.shape}")
        stored = np.clip(np.rint((image - intercept) / slope), -32768, 32767).astype(np.int16)
        source = where.attributes
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
        # patient and study: kept (type 2 attributes empty where the source had none)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                        "ReferringPhysicianName", "StudyID", "AccessionNumber"):
            setattr(ds, keyword, _valid(keyword, source.get(keyword, "")))
        for keyword in ("PatientAge", "StudyDescription", "BodyPartExamined"):
            if _valid(keyword, source.get(keyword, "")):
                setattr(ds, keyword, source[keyword])
        ds.StudyInstanceUID = study_uid
        # the new series
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = int(series_number)
        ds.SeriesDescription = description[:64]
        ds.SeriesDate, ds.SeriesTime = date, time
        ds.PatientPosition = _valid("PatientPosition", source.get("PatientPosition", ""))
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = _valid("PositionReferenceIndicator", source.get("PositionReferenceIndicator", ""))
        ds.Manufacturer = "scoreinv"
        ds.SoftwareVersions = __version__
        # the image: derived from its source slice
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.DerivationDescription = derivation[:1024]
        references = []
        referenced = _valid("ReferencedSOPInstanceUID", where.source_sop_instance_uid)
        if referenced:  # a source whose SOP Instance UID is damaged cannot be referenced
            reference = Dataset()
            reference.ReferencedSOPClassUID = _valid("SOPClassUID", source.get("SOPClassUID", "")) or CT_IMAGE_STORAGE
            reference.ReferencedSOPInstanceUID = referenced
            references.append(reference)
        ds.SourceImageSequence = DicomSequence(references)
        ds.InstanceNumber = index
        ds.AcquisitionNumber = _valid("AcquisitionNumber", source.get("AcquisitionNumber", ""))
        ds.ContentDate, ds.ContentTime = date, time
        ds.LossyImageCompression = "00"
        ds.ImagePositionPatient = [_ds(x) for x in where.position]
        ds.ImageOrientationPatient = [_ds(x) for x in where.orientation]
        ds.PixelSpacing = [_ds(x) for x in where.spacing]
        ds.SliceThickness = _ds(where.thickness) if math.isfinite(where.thickness) else ""
        ds.SliceLocation = _ds(float(np.dot(where.position, where.normal)))
        ds.KVP = _valid("KVP", source.get("KVP", ""))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = _ds(slope)
        ds.RescaleType = "HU"
        ds.WindowCenter = _ds(centre)
        ds.WindowWidth = _ds(width)
        ds.WindowCenterWidthExplanation = "the HU window of the reconstruction"
        ds.PixelData = stored.tobytes()
        check_ct_image(ds)
        datasets.append(ds)
    return datasets


def check_ct_image(ds: Any) -> None:
    """Check a dataset against the CT Image IOD: every type 1 and 2 attribute of its mandatory modules.

    Uses the standard's module tables as shipped by highdicom (its ``check_required_attributes``)
    where highdicom is installed, then the values this package relies on. Raises ``ValueError``
    naming what is missing or wrong.
    """
    try:
        from highdicom._standard_utils import check_required_attributes, get_iod_module_map, get_sop_class_iod_map
    except ImportError:  # highdicom absent (or moved its tables): the package's own checks below still run
        modules = []
    else:
        iod = get_sop_class_iod_map()[CT_IMAGE_STORAGE]
        modules = [m["key"] for m in get_iod_module_map()[iod] if m["usage"] == "M"]
        modules += ["general-reference", "voi-lut"]
    for module in modules:
        try:
            check_required_attributes(ds, module=module, recursive=True)
        except AttributeError as error:
            raise ValueError(f"the derived CT image fails the CT Image IOD's {module} module: {error}") from None
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
        if not str(ds.get(keyword, "")):
            raise ValueError(f"the derived CT image has no {keyword}")
    if int(ds.Rows) * int(ds.Columns) * 2 != len(ds.PixelData):
        raise ValueError("the derived CT image's pixel data does not fit its Rows and Columns")
    if list(ds.ImageType)[:2] != ["DERIVED", "SECONDARY"]:
        raise ValueError(f"the derived CT image's ImageType is {list(ds.ImageType)}")


def ras_affine(first: SliceGeometry, step: np.ndarray) -> np.ndarray:
    """The 4×4 NIfTI (RAS) affine of a stack: voxel ``(i, j, k)`` = column i, row j, slice k.

    ``step`` is the LPS vector from one slice's first pixel to the next one's.
    """
    lps = np.eye(4)
    lps[:3, 0] = first.orientation[:3] * first.spacing[1]
    lps[:3, 1] = first.orientation[3:] * first.spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = first.position
    return LPS_TO_RAS @ lps


def nifti_volume(hu: Sequence[np.ndarray], geometry: Sequence[SliceGeometry]) -> Any:
    """A series as a NIfTI-1 image: float32 HU ``(columns, rows, slices)`` with its RAS affine.

    The slices must be ordered along their normal (as imported). The slice step is the mean
    distance between neighbouring first pixels; for one slice, the normal times its thickness
    (1 mm where unknown). Both the qform and the sform hold the affine (code 1, scanner).
    """
    try:
        import nibabel
    except ImportError:
        raise ImportError('writing NIfTI needs nibabel: pip install "scoreinv[dicom]"') from None
    if len(hu) != len(geometry) or not len(hu):
        raise ValueError(f"nifti_volume needs one geometry per slice and at least one slice, got {len(hu)} slices "
                         f"and {len(geometry)} geometries")
    first, last = geometry[0], geometry[-1]
    if len(geometry) > 1:
        step = (last.position - first.position) / (len(geometry) - 1)
    else:
        step = first.normal * (first.thickness if math.isfinite(first.thickness) and first.thickness > 0 else 1.0)
    volume = np.stack([np.asarray(image, dtype=np.float32).T for image in hu], axis=-1)
    affine = ras_affine(first, step)
    image = nibabel.Nifti1Image(volume, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    return image
