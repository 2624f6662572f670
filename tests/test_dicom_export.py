"""Export to DICOM, NIfTI and PNG: round trips through import on pydicom's CT files (no download)."""

import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")
from pydicom.data import get_testdata_file  # noqa: E402

from scoreinv.app.cli import main  # noqa: E402
from scoreinv.app.export import export_h5  # noqa: E402
from scoreinv.datasets.dicom import ct_slice_to_unit, dicom_to_h5, read_dicom_ct  # noqa: E402
from scoreinv.datasets.dicom_export import check_ct_image, resized_geometry  # noqa: E402
from scoreinv.datasets.hounsfield import HU_WINDOW  # noqa: E402

SERIES = ["2062", "2392", "2693", "3023", "3353"]  # a 5-slice 16² CT series, 2.5 mm apart


def shipped(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pydicom-data)")
    return path


@pytest.fixture
def study(tmp_path):
    """Two series: CT_small (128², one slice) and the 5-slice 16² series."""
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(shipped("CT_small.dcm"), folder / "CT_small.dcm")
    for name in SERIES:
        shutil.copy(shipped(name), folder / name)
    return folder


def test_resized_geometry_follows_pixel_centres():
    # a 4×6 slice (rows × columns), padded to 6×6 then resized to 3×3: the square's pixel (0, 0) is stored
    # pixel (-1, 0); output pixel 0 is square coordinate (0 + ½)·2 − ½ = ½
    position, spacing = resized_geometry([10, 20, 30], [1, 0, 0, 0, 1, 0], [0.5, 0.25], (4, 6), "pad", 3)
    np.testing.assert_allclose(position, [10 + 0.5 * 0.25, 20 + (-1 + 0.5) * 0.5, 30])
    np.testing.assert_allclose(spacing, [1.0, 0.5])
    # cropped to 4×4 (columns 1..4), kept at 4: first pixel is stored (0, 1)
    position, spacing = resized_geometry([0, 0, 0], [0, 1, 0, 0, 0, -1], [2, 3], (4, 6), "crop", 4)
    np.testing.assert_allclose(position, [0, 3, 0])
    np.testing.assert_allclose(spacing, [2, 3])
    # the closed form agrees with resizing a linear ramp whose values are their own x positions (bilinear is exact
    # on a ramp away from the edges, where scikit-image clamps)
    rows, columns, size = 5, 7, 8
    x = (np.arange(columns) * 1.5)[None].repeat(rows, 0) + 100.0
    unit = ct_slice_to_unit(x, size, window=(0, 1000), square="crop")  # the ramp stays inside the window
    moved, new_spacing = resized_geometry([100, 0, 0], [1, 0, 0, 0, 1, 0], [1.0, 1.5], (rows, columns), "crop", size)
    centres = moved[0] + np.arange(size) * new_spacing[1]
    np.testing.assert_allclose(unit[2, 1:-1] * 1000, centres[1:-1], atol=1e-3)


def test_dicom_round_trip_keeps_images_patient_and_study(study, tmp_path):
    imported = tmp_path / "ct.h5"
    dicom_to_h5(study, imported, size=32)
    out = tmp_path / "dicom"
    result = export_h5(imported, out, "dicom")
    assert result.items == 6 and result.series == 2 and len(result.files) == 6
    again = tmp_path / "again.h5"
    dicom_to_h5(out, again, size="native")
    with h5py.File(imported) as a, h5py.File(again) as b:
        # the same slices (same order: both files sort by series UID then position; match by position instead)
        key_a = [tuple(np.round(p, 3)) for p in a["image_position"][:]]
        assert len(set(key_a)) == 6
        source_uids = a["sop_instance_uid"].asstr()[:]
        exported = {str(pydicom.dcmread(p).SourceImageSequence[0].ReferencedSOPInstanceUID): p
                    for p in sorted(out.rglob("*.dcm"))}
        assert set(exported) == set(source_uids)  # each exported slice refers to its source SOP instance
        images_a, images_b = a["images"][:], b["images"][:]
        order = {uid: k for k, uid in enumerate(b["source"].asstr()[:])}
        for k, uid in enumerate(source_uids):
            back = images_b[order[str(exported[uid])]]
            # stored as integers HU: at most ½ HU apart, i.e. 0.5 / 3000 in the image
            assert np.abs(back - images_a[k]).max() <= 0.5 / (HU_WINDOW[1] - HU_WINDOW[0]) + 1e-6
        assert json.loads(b.attrs["config"])["image_size"] == 32
    sources = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, sorted(study.iterdir()))}
    new_series: dict[str, str] = {}
    for path in sorted(out.rglob("*.dcm")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = pydicom.dcmread(path)  # no warning: every value is valid for its VR
        check_ct_image(ds)  # every type 1 and 2 attribute of the CT Image IOD's modules (highdicom's tables)
        source = sources[str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)]
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.SOPInstanceUID != source.SOPInstanceUID
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.RescaleType == "HU" and float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == -1024
        assert float(ds.WindowWidth) == 3000 and float(ds.WindowCenter) == 500
        assert ds.SeriesDescription == "scoreinv images 32x32"
        # patient and study kept, a new series in the source's frame of reference
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
            assert ds.get(keyword) == source.get(keyword), keyword
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert new_series.setdefault(str(source.SeriesInstanceUID), str(ds.SeriesInstanceUID)) == ds.SeriesInstanceUID
        scale = source.Rows / 32  # square sources: pixel spacing × stored size / reconstruction size
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing],
                                   [float(v) * scale for v in source.PixelSpacing], rtol=1e-9)
    assert len(set(new_series.values())) == 2


def test_nifti_has_the_ras_affine(study, tmp_path):
    imported = tmp_path / "ct.h5"
    dicom_to_h5(study, imported, size=32)
    result = export_h5(imported, tmp_path / "nifti", "nifti")
    assert result.series == 2
    first = pydicom.dcmread(study / SERIES[-1])  # the lowest slice of the 16² series (z falls with the name)
    spacing = [float(v) for v in first.PixelSpacing]
    for path in sorted((tmp_path / "nifti").glob("*.nii.gz")):
        image = nibabel.load(path)
        if image.shape[2] != 5:
            continue
        assert image.shape == (32, 32, 5)
        # 16 → 32: half the pixel spacing; 2.5 mm between slices
        np.testing.assert_allclose(image.header.get_zooms(), [spacing[1] / 2, spacing[0] / 2, 2.5], rtol=1e-6)
        # first voxel centre: the stored first pixel moved by (½·16/32 − ½) pixels along rows and columns, then LPS
        # → RAS (x and y flip)
        x, y, z = (float(v) for v in first.ImagePositionPatient)
        shift = (0.5 * 16 / 32 - 0.5)
        expected = [-(x + shift * spacing[1]), -(y + shift * spacing[0]), z]
        np.testing.assert_allclose(image.affine @ [0, 0, 0, 1], [*expected, 1], atol=1e-6)
        np.testing.assert_allclose(image.affine[:3, 2], [0, 0, 2.5], atol=1e-6)
        assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
        hu = np.asarray(image.dataobj)
        with h5py.File(imported) as handle:
            rows = [k for k, s in enumerate(handle["source"].asstr()[:]) if Path(s).name in SERIES]
            np.testing.assert_allclose(hu[:, :, 0].T, handle["images"][rows[0], 0] * 3000 - 1000, atol=1e-3)
        break
    else:
        pytest.fail("no 5-slice volume exported")


def test_png_montage_and_no_partial_output(study, tmp_path, capsys):
    imported = tmp_path / "ct.h5"
    dicom_to_h5(study, imported, size=16)
    assert main(["data", "export", str(imported), str(tmp_path / "png"), "--format", "png"]) == 0
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["series-1.png", "series-2.png"]
    assert "wrote 6 images of 2 series as png" in capsys.readouterr().out
    # an existing output without --overwrite
    assert main(["data", "export", str(imported), str(tmp_path / "png"), "--format", "dicom"]) == 2
    assert capsys.readouterr().err.strip() == f"scoreinv: error: {tmp_path / 'png'} exists; pass --overwrite to replace it"
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["series-1.png", "series-2.png"]
    assert main(["data", "export", str(imported), str(tmp_path / "png"), "--format", "nifti", "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["series-1.nii.gz", "series-2.nii.gz"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_exports_are_one_line_and_leave_nothing(tmp_path, capsys):
    from scoreinv.datasets import write_images_h5

    plain = tmp_path / "plain.h5"
    write_images_h5(plain, np.full((2, 1, 8, 8), 0.5, dtype=np.float32))
    cases = [
        ([str(plain), str(tmp_path / "a"), "--format", "dicom"], "holds no DICOM geometry"),
        ([str(tmp_path / "none.h5"), str(tmp_path / "b"), "--format", "png"], "HDF5 file not found"),
        ([str(plain), str(plain), "--format", "png"], "is a file; give a folder"),
    ]
    for arguments, message in cases:
        assert main(["data", "export", *arguments]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("scoreinv: error: ") and message in error and "\n" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.h5"]
    (tmp_path / "file").write_text("x")
    assert main(["data", "export", str(plain), str(tmp_path / "file" / "out"), "--format", "png"]) == 2
    assert f"cannot write {tmp_path / 'file' / 'out'}" in capsys.readouterr().err


def test_no_ct_slice_is_one_line_and_no_file(tmp_path, capsys):
    folder = tmp_path / "mr"
    folder.mkdir()
    shutil.copy(shipped("MR_small.dcm"), folder / "MR_small.dcm")
    out = tmp_path / "o.h5"
    assert main(["data", "dicom", str(folder), str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scoreinv: error: no CT slice to import") and "\n" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mr"]


def test_batch_results_keep_the_slice_metadata_and_export_as_a_derived_series(study, tmp_path, capsys):
    from tiny_batch import tiny_checkpoint

    imported, measured, result = tmp_path / "ct.h5", tmp_path / "sino.h5", tmp_path / "recon.h5"
    uid = str(pydicom.dcmread(study / SERIES[0]).SeriesInstanceUID)
    assert main(["data", "dicom", str(study), str(imported), "--size", "16", "--series", uid]) == 0
    assert main(["data", "simulate", str(imported), str(measured), "--views", "8", "--noise-std", "0.1"]) == 0
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    assert main(["batch", str(measured), str(result), "--model", str(checkpoint), "--steps", "5",
                 "--batch-size", "5"]) == 0
    with h5py.File(imported) as a, h5py.File(measured) as m, h5py.File(result) as r:
        for name in ("source", "sop_instance_uid", "image_position", "dicom_attributes"):
            np.testing.assert_array_equal(m[name][:], a[name][:])
            np.testing.assert_array_equal(r[name][:], a[name][:])
        assert r.attrs["window_low_hu"] == a.attrs["window_low_hu"]
    assert main(["data", "export", str(result), str(tmp_path / "out"), "--format", "dicom"]) == 0
    files = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(files) == 5
    ds = pydicom.dcmread(files[0])
    assert ds.SeriesDescription.startswith("scoreinv ") and "5 steps" in ds.SeriesDescription
    assert "8 views" in ds.SeriesDescription and "noise 0.1" in ds.SeriesDescription
    assert ds.StudyInstanceUID == pydicom.dcmread(study / SERIES[0]).StudyInstanceUID
    with h5py.File(result) as handle:
        recon = handle["reconstructions"][:]
    again = read_dicom_ct(tmp_path / "out")
    assert len(again.slices) == 5
    for k, item in enumerate(again.slices):  # re-imported in position order, as the result is
        expected = np.clip(recon[k, 0], 0, 1) * 3000 - 1000
        assert np.abs(item.hu - expected).max() <= 0.5 + 1e-3


@pytest.mark.parametrize("size", [256, 512])
def test_clinical_sizes_export_and_reimport_with_their_geometry(size, tmp_path):
    """A 16² series imported at a clinical size: the export's pixel spacing shrinks by 16 / size."""
    folder = tmp_path / "series"
    folder.mkdir()
    for name in SERIES:
        shutil.copy(shipped(name), folder / name)
    imported = tmp_path / "ct.h5"
    dicom_to_h5(folder, imported, size=size)
    export_h5(imported, tmp_path / "dicom", "dicom")
    export_h5(imported, tmp_path / "nifti", "nifti")
    again = read_dicom_ct(tmp_path / "dicom")
    source = pydicom.dcmread(folder / SERIES[0])
    assert len(again.slices) == 5 and all(s.original_size == (size, size) for s in again.slices)
    np.testing.assert_allclose(again.slices[0].pixel_spacing, [float(v) * 16 / size for v in source.PixelSpacing])
    assert again.slices[0].slice_spacing == pytest.approx(2.5)
    (volume,) = (tmp_path / "nifti").glob("*.nii.gz")
    assert nibabel.load(volume).shape == (size, size, 5)
