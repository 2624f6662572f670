"""Property-based tests of DICOM import: whatever the header holds, a valid output or a clean reason.

Rows, Columns, BitsAllocated, BitsStored, PixelRepresentation, NumberOfFrames, the rescale
values and the UIDs of pydicom's CT_small.dcm are replaced by drawn values (written as raw
bytes, as a damaged file holds them), or the file is cut at a drawn point. Every outcome must be
one of: slices with finite HU of the stored size, or the file skipped with a one-line reason;
no library warning escapes; ``dicom_to_h5`` writes a valid file or raises ``ValueError`` and
leaves nothing. ``HYPOTHESIS_PROFILE=deep`` searches longer (tests/conftest.py).
"""

import struct
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataelem import RawDataElement  # noqa: E402
from pydicom.tag import Tag  # noqa: E402

from scoreinv.datasets.dicom import dicom_to_h5, read_dicom_ct  # noqa: E402

SOURCE = get_testdata_file("CT_small.dcm", download=False)
US_FIELDS = {"Rows": 0x00280010, "Columns": 0x00280011, "BitsAllocated": 0x00280100, "BitsStored": 0x00280101,
             "PixelRepresentation": 0x00280103}
TEXT_FIELDS = {"RescaleSlope": (0x00281053, "DS"), "RescaleIntercept": (0x00281052, "DS"),
               "NumberOfFrames": (0x00280008, "IS"), "SOPInstanceUID": (0x00080018, "UI"),
               "SeriesInstanceUID": (0x0020000E, "UI"), "StudyInstanceUID": (0x0020000D, "UI")}

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-0", "1", "-1024", "1e300", "-1e300", "nan", "NaN", "inf", "-inf", "abc", "", "1\\2",
                     "1e-320", "  7 ", "0x10"]),
    st.text(alphabet="0123456789.eE+- ", max_size=16),
)
uids = st.one_of(st.text(max_size=64), st.sampled_from(["", "1.2.3", "1..2", "01.2", "a" * 64, "1.2." + "9" * 70]),
                 st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
headers = st.fixed_dictionaries({}, optional={
    **{name: st.integers(0, 2**16 - 1) | st.sampled_from([0, 1, 7, 8, 12, 16, 32, 64, 128, 129, 4096])
       for name in US_FIELDS},
    "RescaleSlope": numbers, "RescaleIntercept": numbers, "NumberOfFrames": numbers,
    "SOPInstanceUID": uids, "SeriesInstanceUID": uids, "StudyInstanceUID": uids,
})


def _damaged(changes: dict, folder: Path) -> Path:
    ds = pydicom.dcmread(SOURCE)
    for name, value in changes.items():
        if name in US_FIELDS:
            tag, vr, raw = US_FIELDS[name], "US", struct.pack("<H", value)
        else:
            (tag, vr), raw = TEXT_FIELDS[name], value.encode("latin-1", errors="replace")
            raw = raw + b" " * (len(raw) % 2)
        ds[tag] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, False, True)
    path = folder / "damaged.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path)
    return path


def _check_outcome(path: Path, folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a library warning that escapes a file's boundary fails
        found = read_dicom_ct(path)
        if found.slices:
            assert not found.skipped
            for item in found.slices:
                assert item.hu.dtype == np.float32 and item.hu.ndim == 2 and min(item.hu.shape) >= 1
                assert np.isfinite(item.hu).all() and np.abs(item.hu).max() <= 1e6
        else:
            (name, reason), = found.skipped
            assert name == str(path) and reason and "\n" not in reason
        out = folder / "out.h5"
        try:
            result = dicom_to_h5(path, out, size=16)
        except ValueError as error:
            assert not found.slices or "mixes slice sizes" in str(error)
            assert str(path) in str(error) or "series" in str(error)
            assert not out.exists()
        else:
            assert found.slices and result.n_slices == len(found.slices)
            with h5py.File(out) as handle:
                images = handle["images"][:]
                assert images.shape == (len(found.slices), 1, 16, 16)
                assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary file left


@given(changes=headers)
def test_any_header_gives_slices_or_a_clean_reason(changes):
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        _check_outcome(_damaged(changes, folder), folder)


@given(cut=st.integers(0, 40_000), data=st.data())
def test_any_truncation_gives_slices_or_a_clean_reason(cut, data):
    content = Path(SOURCE).read_bytes()
    cut = min(cut, len(content))
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path = folder / "cut.dcm"
        path.write_bytes(content[:cut])
        _check_outcome(path, folder)


rescales = st.fixed_dictionaries({}, optional={"RescaleSlope": numbers, "RescaleIntercept": numbers,
                                               "SOPInstanceUID": uids, "SeriesInstanceUID": uids})


def _as_number(text: str | None, default: float) -> float | None:
    """What a rescale value must mean if the file is accepted (None: it must be refused)."""
    if text is None or not text.strip():
        return default
    try:
        return float(text)
    except ValueError:
        return None


@hypothesis.example(changes={"RescaleSlope": "", "SeriesInstanceUID": "\x000"})  # NULs in a UID
@hypothesis.example(changes={"RescaleSlope": "457"})  # finite, in bounds, but HU beyond 1e6
@given(changes=rescales)
def test_rescale_values_are_applied_exactly_or_refused_by_name(changes):
    stored = pydicom.dcmread(SOURCE).pixel_array.astype(np.float64)
    slope = _as_number(changes.get("RescaleSlope"), 1.0) if "RescaleSlope" in changes else 1.0
    intercept = _as_number(changes.get("RescaleIntercept"), 0.0) if "RescaleIntercept" in changes else -1024.0
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path = _damaged(changes, folder)
        _check_outcome(path, folder)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            found = read_dicom_ct(path)
    usable = (slope is not None and intercept is not None and np.isfinite(slope) and np.isfinite(intercept)
              and 0 < abs(slope) <= 1000 and abs(intercept) <= 100_000
              and np.abs(stored * slope + intercept).max() <= 1e6)  # beyond: not CT values, refused
    if found.slices:  # never a silent default: the values stated are the values applied
        assert usable
        np.testing.assert_allclose(found.slices[0].hu, (stored * slope + intercept).astype(np.float32), rtol=1e-6)
    else:
        (_, reason), = found.skipped
        assert not usable and ("RescaleSlope" in reason or "RescaleIntercept" in reason), reason
