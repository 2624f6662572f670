"""DICOM import on the CT, MR and multi-frame files that pydicom and pydicom-data ship (no download).

These real slices are a test set: nothing trains on them.
"""

import math
import shutil
import sys

import h5py
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

from scoreinv.datasets.dicom import DicomCT, dicom_to_h5, read_dicom_ct  # noqa: E402
from scoreinv.datasets.dicom import ct_slice_to_unit  # noqa: E402
from scoreinv.datasets.hounsfield import HU_WINDOW, hu_to_unit  # noqa: E402


def shipped(name: str) -> str:
    """A file shipped with pydicom or pydicom-data; skip (never download) where it is absent."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data)")
    return path


CT_SLICES = ["CT_small.dcm", "693_UNCR.dcm"]  # 128² (pydicom) and 512² (pydicom-data) CT Image Storage


@pytest.fixture
def ct_folder(tmp_path):
    """pydicom's CT slices, an MR file in a subfolder and a truncated CT slice."""
    folder = tmp_path / "study"
    (folder / "other").mkdir(parents=True)
    for name in CT_SLICES:
        shutil.copy(shipped(name), folder / name)
    shutil.copy(shipped("MR_small.dcm"), folder / "other" / "MR_small.dcm")
    data = open(shipped("CT_small.dcm"), "rb").read()
    (folder / "other" / "cut.dcm").write_bytes(data[: len(data) // 2])
    return folder


def test_folder_import_writes_the_ct_slices_and_names_the_skipped_files(ct_folder, tmp_path):
    out = tmp_path / "real.h5"
    result = dicom_to_h5(ct_folder, out, size=32)
    assert result.n_slices == 2 and result.window == HU_WINDOW
    skipped = dict(result.skipped)
    assert set(skipped) == {str(ct_folder / "other" / "MR_small.dcm"), str(ct_folder / "other" / "cut.dcm")}
    assert "not CT" in skipped[str(ct_folder / "other" / "MR_small.dcm")]
    assert "MR" in skipped[str(ct_folder / "other" / "MR_small.dcm")]
    assert "truncated" in skipped[str(ct_folder / "other" / "cut.dcm")]
    assert "skipped 2 files" in result.summary()
    assert "2 CT slices of 2 series" in result.summary()
    with h5py.File(out) as handle:
        images = handle["images"][:]
        assert images.shape == (2, 1, 32, 32) and images.dtype == np.float32
        assert images.min() >= 0 and images.max() <= 1
        assert (images.reshape(2, -1).std(axis=1) > 0.05).all()  # real anatomy, not blank
        sources = [s.rsplit("/", 1)[-1] for s in handle["source"].asstr()[:]]
        assert sorted(sources) == sorted(CT_SLICES)
        assert all(uid for uid in handle["sop_instance_uid"].asstr()[:])
        assert len(set(handle["series_instance_uid"].asstr()[:])) == 2
        np.testing.assert_allclose(sorted(handle["original_size"][:, 0]), [128, 512])
        spacing = dict(zip(sources, handle["pixel_spacing"][:, 0]))
        assert spacing["CT_small.dcm"] == pytest.approx(0.661468)
        assert np.isfinite(handle["slice_position"][:]).all()
        assert handle.attrs["window_low_hu"] == HU_WINDOW[0] and handle.attrs["window_high_hu"] == HU_WINDOW[1]


def test_hounsfield_units_and_window(tmp_path):
    path = shipped("CT_small.dcm")
    found = read_dicom_ct(path)
    assert isinstance(found, DicomCT) and len(found.slices) == 1 and not found.skipped
    item = found.slices[0]
    stored = pydicom.dcmread(path).pixel_array.astype(np.float64)
    np.testing.assert_allclose(item.hu, stored * 1.0 - 1024.0)  # RescaleSlope 1, RescaleIntercept -1024
    assert item.original_size == (128, 128)
    # the window maps HU linearly to [0, 1] and clips; an own window is stated in the file
    unit = ct_slice_to_unit(item.hu, 128)
    np.testing.assert_allclose(unit, hu_to_unit(item.hu), atol=1e-6)
    result = dicom_to_h5(path, tmp_path / "soft.h5", size=64, window=(-160, 240))
    with h5py.File(tmp_path / "soft.h5") as handle:
        assert handle.attrs["window_low_hu"] == -160 and handle.attrs["window_high_hu"] == 240
        assert (handle["images"][:] == 1).mean() > (hu_to_unit(item.hu) == 1).mean()
    assert result.window == (-160.0, 240.0)


def test_multi_frame_objects_are_split_and_ordered_by_position(tmp_path):
    path = shipped("eCT_Supplemental.dcm")  # Enhanced CT Image Storage, 2 frames
    found = read_dicom_ct(path)
    assert [s.frame for s in found.slices] in ([0, 1], [1, 0]) and len(found.slices) == 2
    positions = [s.position for s in found.slices]
    assert positions == sorted(positions) and positions[0] != positions[1]
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.astype(np.float64)
    intercept = float(ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleIntercept)
    for item in found.slices:
        np.testing.assert_allclose(item.hu, frames[item.frame] + intercept)
    assert found.slices[0].pixel_spacing == pytest.approx((0.388672, 0.388672))


def test_square_pad_or_crop():
    wide = np.full((20, 40), 1000.0, dtype=np.float32)
    padded = ct_slice_to_unit(wide, 40, square="pad")
    cropped = ct_slice_to_unit(wide, 20, square="crop")
    assert padded.shape == (40, 40) and cropped.shape == (20, 20)
    assert padded[0].max() == 0 and padded[20, 20] == pytest.approx(hu_to_unit(1000.0))  # air above and below
    assert np.allclose(cropped, hu_to_unit(1000.0))
    with pytest.raises(ValueError, match="square"):
        ct_slice_to_unit(wide, 20, square="stretch")


def test_no_ct_slice_is_an_error_and_leaves_no_file(tmp_path):
    folder = tmp_path / "mr_only"
    folder.mkdir()
    shutil.copy(shipped("MR_small.dcm"), folder / "MR_small.dcm")
    (folder / "readme.txt").write_text("not an image")
    out = tmp_path / "none.h5"
    with pytest.raises(ValueError, match="no CT slice") as error:
        dicom_to_h5(folder, out)
    assert "MR_small.dcm" in str(error.value) and "readme.txt" in str(error.value)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file either


def test_existing_output_is_kept(tmp_path):
    out = tmp_path / "kept.h5"
    out.write_bytes(b"previous")
    with pytest.raises(FileExistsError):
        dicom_to_h5(shipped("CT_small.dcm"), out)
    assert out.read_bytes() == b"previous"


def test_without_pydicom_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r'pip install "scoreinv\[dicom\]"'):
        read_dicom_ct(".")


def test_missing_paths_are_named():
    found = read_dicom_ct([shipped("CT_small.dcm"), "/nonexistent/folder"])
    assert len(found.slices) == 1
    assert found.skipped == [("/nonexistent/folder", "no such file or folder")]
    assert not math.isnan(found.slices[0].position)


def test_command_line(ct_folder, tmp_path, capsys):
    from scoreinv.app.cli import main

    out = tmp_path / "cli.h5"
    assert main(["data", "dicom", str(ct_folder), str(out), "--size", "24", "--window", "-1000", "1000"]) == 0
    captured = capsys.readouterr()
    assert "wrote 2 CT slices" in captured.out and "(2, 1, 24, 24)" in captured.out
    assert "MR_small.dcm: not CT" in captured.err and "cut.dcm: truncated" in captured.err
    with h5py.File(out) as handle:
        assert handle["images"].shape == (2, 1, 24, 24) and handle.attrs["window_high_hu"] == 1000
        assert handle.attrs["created_by"] == "scoreinv data dicom"
    # nothing usable: one error line, exit 2, no file
    empty = tmp_path / "none.h5"
    assert main(["data", "dicom", str(ct_folder / "other"), str(empty)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scoreinv: error: no CT slice") and "\n" not in error
    assert not empty.exists()
    # an existing output without --overwrite
    assert main(["data", "dicom", str(ct_folder), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_command_line_without_pydicom(ct_folder, tmp_path, capsys, monkeypatch):
    from scoreinv.app.cli import main

    monkeypatch.setitem(sys.modules, "pydicom", None)
    assert main(["data", "dicom", str(ct_folder), str(tmp_path / "x.h5")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == 'scoreinv: error: reading DICOM needs pydicom: pip install "scoreinv[dicom]"'


SERIES = ["2062", "2392", "2693", "3023", "3353"]  # one 5-slice CT series (pydicom's DICOMDIR tests), z falling


def test_a_series_is_ordered_by_slice_position_then_instance_number(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for k, name in enumerate(SERIES):  # file names in the order of falling z
        shutil.copy(shipped(name), folder / f"{k}.dcm")
    found = read_dicom_ct(folder)
    positions = [s.position for s in found.slices]
    assert len(positions) == 5 and positions == sorted(positions)
    assert [s.source.rsplit("/", 1)[-1] for s in found.slices] == ["4.dcm", "3.dcm", "2.dcm", "1.dcm", "0.dcm"]
    # without positions, InstanceNumber orders the series
    for k, path in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.InstanceNumber = [3, 1, 5, 2, 4][k]
        ds.save_as(path)
    found = read_dicom_ct(folder)
    assert all(math.isnan(s.position) for s in found.slices)
    assert [s.instance_number for s in found.slices] == [1, 2, 3, 4, 5]


def test_every_reason_to_skip(tmp_path):
    data = open(shipped("CT_small.dcm"), "rb").read()
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "cut_pixels.dcm").write_bytes(data[: len(data) // 2])        # pixel data cut short
    (tmp_path / "cut_header.dcm").write_bytes(data[: len(data) // 10])       # cut before the pixel data
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    for keyword in ("PixelData", "Rows", "Columns", "SOPClassUID"):
        delattr(ds, keyword)
    ds.save_as(tmp_path / "no_pixels.dcm")                                   # CT modality, no image
    shutil.copy(shipped("MR_small.dcm"), tmp_path / "mr.dcm")
    reasons = dict((name.rsplit("/", 1)[-1], reason) for name, reason in read_dicom_ct(tmp_path).skipped)
    assert reasons["notes.txt"].startswith("not DICOM")
    assert reasons["cut_pixels.dcm"].startswith("truncated")
    assert reasons["cut_header.dcm"].startswith("truncated")
    assert reasons["no_pixels.dcm"].startswith("not an image")
    assert reasons["mr.dcm"].startswith("not CT")
