"""DICOM import on the CT, MR and multi-frame files that pydicom and pydicom-data ship (no download).

These real slices are a test set: nothing trains on them.
"""

import json
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


# --- a PACS export: every CT file pydicom and pydicom-data ship, in every encoding, and derived copies ----------

import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

SHIPPED_CT = {  # file -> what it is
    "CT_small.dcm": "128² CT, explicit VR little endian",
    "693_UNCR.dcm": "512² head CT, uncompressed",
    "693_J2KR.dcm": "the same slice (same SOP Instance UID), JPEG 2000 lossless",
    "693_UNCI.dcm": "the same slice after lossy compression (another SOP Instance UID, same position)",
    "693_J2KI.dcm": "that lossy slice, JPEG 2000 (same SOP Instance UID as 693_UNCI)",
    "J2K_pixelrep_mismatch.dcm": "512² CT, JPEG 2000 lossless, tilted gantry",
    "explicit_VR-UN.dcm": "512² abdominal CT, JPEG 2000 lossless",
    "bad_sequence.dcm": "512² CT, JPEG Lossless (process 14, SV1), damaged UIDs",
    "eCT_Supplemental.dcm": "Enhanced CT, 2 frames",
}
SERIES_FOLDERS = {"CT5N": ["2062", "2392", "2693", "3023", "3353"], "CT2": ["17106", "17136", "17166", "17196"],
                  "CT2N": ["6293", "6924"]}  # 16² CT series of pydicom's DICOMDIR tests; CT2N are localizers


def _derived_copies(folder: Path) -> None:
    """A localizer, a duplicate, a truncated file and a secondary capture, made from CT_small."""
    import pydicom.uid

    source = shipped("CT_small.dcm")
    shutil.copy(source, folder / "duplicate_of_CT_small.dcm")
    data = open(source, "rb").read()
    (folder / "truncated.dcm").write_bytes(data[: len(data) * 2 // 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scout = pydicom.dcmread(source)
        scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        scout.SOPInstanceUID = scout.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        scout.save_as(folder / "scout.dcm")
        capture = pydicom.dcmread(source)
        capture.SOPClassUID = capture.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        capture.SOPInstanceUID = capture.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        capture.ImagePositionPatient = [0, 0, 500]
        capture.save_as(folder / "capture.dcm")


@pytest.fixture
def pacs_folder(tmp_path):
    folder = tmp_path / "pacs"
    (folder / "series").mkdir(parents=True)
    for name in SHIPPED_CT:
        shutil.copy(shipped(name), folder / name)
    for series, names in SERIES_FOLDERS.items():
        (folder / "series" / series).mkdir()
        for name in names:
            shutil.copy(shipped(name), folder / "series" / series / name)
    header_only = Path(shipped("CT_small.dcm")).parent / "dicomdirtests" / "TINY_ALPHA"
    if header_only.is_dir():  # CT image objects without pixel data (DICOMDIR test records)
        shutil.copytree(header_only, folder / "TINY_ALPHA")
    shutil.copy(shipped("MR_small.dcm"), folder / "MR_small.dcm")
    _derived_copies(folder)
    return folder


def _names(found) -> list[tuple[str, int]]:
    return [(Path(s.source).name, s.frame) for s in found.slices]


def test_a_pacs_folder_keeps_each_unique_axial_ct_slice_once_and_names_every_skipped_file(pacs_folder):
    found = read_dicom_ct(pacs_folder)
    kept = _names(found)
    assert len(kept) == len(set(kept))
    by_name = [name for name, _ in kept]
    # the 693 slice is there four times (two encodings × lossless / lossy): kept once, lossless
    assert sum(name.startswith("693_") for name in by_name) == 1 and by_name.count("693_J2KR.dcm") == 1
    expected = {"CT_small.dcm", "693_J2KR.dcm", "J2K_pixelrep_mismatch.dcm", "explicit_VR-UN.dcm",
                "bad_sequence.dcm", *SERIES_FOLDERS["CT5N"], *SERIES_FOLDERS["CT2"]}
    assert set(by_name) - {"eCT_Supplemental.dcm"} == expected
    assert sorted(frame for name, frame in kept if name == "eCT_Supplemental.dcm") == [0, 1]
    assert len(kept) == len(expected) + 2
    reasons = {Path(name).name: reason for name, reason in found.skipped}
    every_file = {p.name for p in pacs_folder.rglob("*") if p.is_file()}
    assert set(reasons) | set(by_name) == every_file and not set(reasons) & set(by_name)
    assert reasons["scout.dcm"].startswith("a localizer (scout)") and "LOCALIZER" in reasons["scout.dcm"]
    assert all(reasons[name].startswith("a localizer") for name in SERIES_FOLDERS["CT2N"])
    assert reasons["duplicate_of_CT_small.dcm"].startswith(f"duplicate of {pacs_folder / 'CT_small.dcm'}")
    assert reasons["693_UNCR.dcm"].startswith(f"duplicate of {pacs_folder / '693_J2KR.dcm'}")
    assert reasons["693_UNCI.dcm"].startswith(f"duplicate of {pacs_folder / '693_J2KI.dcm'}")
    assert reasons["693_J2KI.dcm"].startswith(f"the same slice as {pacs_folder / '693_J2KR.dcm'}")
    assert reasons["truncated.dcm"].startswith("truncated")
    assert reasons["MR_small.dcm"].startswith("not CT (Modality MR")
    assert "secondary capture" in reasons["capture.dcm"] and "--allow-secondary-capture" in reasons["capture.dcm"]
    assert all("\n" not in reason for reason in reasons.values())
    # a series is a stack sorted by position, with its spacing
    ct5n = [s for s in found.slices if Path(s.source).name in SERIES_FOLDERS["CT5N"]]
    assert [s.position for s in ct5n] == sorted(s.position for s in ct5n)
    assert all(s.slice_spacing == pytest.approx(2.5) for s in ct5n)
    assert all(s.image_orientation == (1, 0, 0, 0, 1, 0) for s in ct5n)


def test_the_secondary_capture_is_imported_when_allowed(pacs_folder):
    found = read_dicom_ct(pacs_folder / "capture.dcm", allow_secondary_capture=True)
    assert len(found.slices) == 1 and not found.skipped
    np.testing.assert_allclose(found.slices[0].hu, read_dicom_ct(shipped("CT_small.dcm")).slices[0].hu)


def test_compressed_ct_decodes_to_the_uncompressed_values():
    lossless = read_dicom_ct(shipped("693_J2KR.dcm")).slices[0].hu        # JPEG 2000 lossless
    uncompressed = read_dicom_ct(shipped("693_UNCR.dcm")).slices[0].hu
    np.testing.assert_array_equal(lossless, uncompressed)
    jpeg_lossless = read_dicom_ct(shipped("bad_sequence.dcm"))                # JPEG Lossless, process 14
    assert len(jpeg_lossless.slices) == 1, jpeg_lossless.skipped
    hu = jpeg_lossless.slices[0].hu
    ds = pydicom.dcmread(shipped("bad_sequence.dcm"), stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLosslessSV1
    assert hu.shape == (512, 512) and -1024 <= hu.min() < -900 and 1000 < hu.max() < 3100  # air to bone


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEGLSLossless", "JPEG2000Lossless"])
def test_rle_jpeg_ls_and_jpeg_2000_encodings_of_a_ct_slice_decode_exactly(syntax, tmp_path):
    uid = getattr(pydicom.uid, syntax)
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    try:
        ds.compress(uid)
    except (RuntimeError, NotImplementedError) as error:  # an encoder (not a decoder) is missing
        pytest.skip(f"no {syntax} encoder here: {error}")
    ds.save_as(tmp_path / "compressed.dcm")
    found = read_dicom_ct(tmp_path / "compressed.dcm")
    assert not found.skipped
    np.testing.assert_array_equal(found.slices[0].hu, read_dicom_ct(shipped("CT_small.dcm")).slices[0].hu)


def test_the_dicom_extra_brings_the_decoders_of_jpeg_lossless_and_jpeg_2000():
    import tomllib

    from pydicom.pixels import get_decoder

    extra = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["dicom"]
    names = {requirement.split(">")[0].split("=")[0].strip() for requirement in extra}
    assert {"pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"} <= names
    assert "pylibjpeg" in get_decoder(pydicom.uid.JPEGLosslessSV1).available_plugins
    assert "pylibjpeg" in get_decoder(pydicom.uid.JPEG2000Lossless).available_plugins
    assert "pylibjpeg" in get_decoder(pydicom.uid.JPEGLSLossless).available_plugins
    assert "pylibjpeg" in get_decoder(pydicom.uid.RLELossless).available_plugins


def test_a_missing_decoder_names_what_to_install_in_full(monkeypatch):
    from pydicom.pixels import get_decoder

    decoder = get_decoder(pydicom.uid.JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0"),
                                                  "gdcm": ("gdcm>=3.0.10",)})
    found = read_dicom_ct(shipped("693_J2KR.dcm"))
    (reason,) = [reason for _, reason in found.skipped]
    assert reason.startswith("pixel data cannot be decoded: no decoder for JPEG 2000 Image Compression (Lossless "
                             "Only) is installed")
    assert 'pip install "scoreinv[dicom]"' in reason and "pylibjpeg-openjpeg" in reason
    assert reason.endswith("[pydicom: pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0; gdcm - "
                           "requires gdcm>=3.0.10]")


def test_series_filter(pacs_folder, tmp_path):
    uid = str(pydicom.dcmread(pacs_folder / "series" / "CT5N" / "2062").SeriesInstanceUID)
    found = read_dicom_ct(pacs_folder, series=[uid])
    assert [Path(s.source).name for s in found.slices] == SERIES_FOLDERS["CT5N"][::-1]  # z falls with the name
    assert dict(found.skipped)[str(pacs_folder / "CT_small.dcm")] == "another series (not chosen by --series)"
    with pytest.raises(ValueError, match=r"no CT slice of series 1\.2\.3 \(the series found: "):
        read_dicom_ct(pacs_folder, series=["1.2.3"])


def test_size_native_and_large_sizes(tmp_path):
    result = dicom_to_h5(shipped("693_UNCR.dcm"), tmp_path / "native.h5", size="native")
    with h5py.File(tmp_path / "native.h5") as handle:
        assert handle["images"].shape == (1, 1, 512, 512)
        assert json.loads(handle.attrs["config"])["size"] == "native"
        np.testing.assert_allclose(handle["images"][0, 0], hu_to_unit(read_dicom_ct(shipped("693_UNCR.dcm"))
                                                                      .slices[0].hu), atol=1e-6)
    assert result.size == 512
    for size in (256, 512):  # clinical sizes, from a 16² series (5 slices)
        folder = tmp_path / f"series{size}"
        folder.mkdir()
        for name in SERIES:
            shutil.copy(shipped(name), folder / name)
        out = tmp_path / f"big{size}.h5"
        assert dicom_to_h5(folder, out, size=size).size == size
        with h5py.File(out) as handle:
            images = handle["images"][:]
            assert images.shape == (5, 1, size, size) and 0 <= images.min() and images.max() <= 1
            assert handle["image_position"].shape == (5, 3) and np.isfinite(handle["slice_spacing"][:]).all()
    with pytest.raises(ValueError, match="'native' needs slices of one size"):
        dicom_to_h5([shipped("CT_small.dcm"), shipped("693_UNCR.dcm")], tmp_path / "mixed.h5", size="native")
    assert not (tmp_path / "mixed.h5").exists()


@pytest.mark.parametrize("size", [100000, 4097, 15, 0, -64, "big", 64.5])
def test_size_is_bounded(size, tmp_path):
    with pytest.raises(ValueError, match="size must be"):
        dicom_to_h5(shipped("CT_small.dcm"), tmp_path / "o.h5", size=size)
    assert list(tmp_path.iterdir()) == []


def test_a_series_of_mixed_sizes_is_refused(tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(shipped("CT_small.dcm"), folder / "a.dcm")
    ds = pydicom.dcmread(shipped("693_UNCR.dcm"))
    ds.SeriesInstanceUID = pydicom.dcmread(shipped("CT_small.dcm")).SeriesInstanceUID
    ds.save_as(folder / "b.dcm")
    with pytest.raises(ValueError, match=r"mixes slice sizes: 128×128 \(.*a\.dcm\), 512×512 \(.*b\.dcm\)"):
        dicom_to_h5(folder, tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()
    from scoreinv.app.cli import main

    assert main(["data", "dicom", str(folder), str(tmp_path / "o.h5")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scoreinv: error: series ") and "mixes slice sizes" in error and "\n" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed"]


# --- rescale values, damaged values, outputs ----------------------------------------------------------------

def _with_element(tmp_path, keyword_tag: int, vr: str, raw: bytes, name: str = "x.dcm") -> Path:
    """CT_small with one element replaced by raw bytes, as a damaged file would hold it."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    raw = raw + b" " * (len(raw) % 2)
    ds[keyword_tag] = RawDataElement(Tag(keyword_tag), vr, len(raw), raw, 0, False, True)
    path = tmp_path / name
    ds.save_as(path)
    return path


SLOPE, INTERCEPT = 0x00281053, 0x00281052


@pytest.mark.parametrize("tag, value, expected", [
    (SLOPE, b"0", "RescaleSlope 0 is outside 0 < |slope| <= 1000"),
    (SLOPE, b"1e300", "RescaleSlope 1e+300 is outside"),
    (SLOPE, b"NaN", "RescaleSlope nan is not a finite number"),
    (SLOPE, b"inf", "RescaleSlope inf is not a finite number"),
    (SLOPE, b"abc", "RescaleSlope"),
    (INTERCEPT, b"-1e300", "RescaleIntercept -1e+300 is outside |intercept| <= 100000"),
    (INTERCEPT, b"NaN", "RescaleIntercept nan is not a finite number"),
])
def test_bad_rescale_values_refuse_the_file_naming_it_and_the_field(tag, value, expected, tmp_path, capsys):
    from scoreinv.app.cli import main

    path = _with_element(tmp_path, tag, "DS", value)
    found = read_dicom_ct(path)
    assert not found.slices
    (name, reason), = found.skipped
    assert name == str(path) and expected in reason
    out = tmp_path / "o.h5"
    assert main(["data", "dicom", str(path), str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scoreinv: error: no CT slice to import") and str(path) in error and expected in error
    assert "\n" not in error and not out.exists()


def test_damaged_uids_print_no_library_warning(tmp_path, capsys):
    from scoreinv.app.cli import main

    path = _with_element(tmp_path, 0x0020000E, "UI", b"dccc9599087131742838cc1162a630fea87ba9bf61ac09bfda90d4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes a file's boundary fails the test
        found = read_dicom_ct([path, shipped("bad_sequence.dcm")])
        assert len(found.slices) == 2
        assert main(["data", "dicom", str(path), shipped("bad_sequence.dcm"), str(tmp_path / "o.h5")]) == 0
    captured = capsys.readouterr()
    assert "Warning" not in captured.err and "warn_and_log" not in captured.err


def test_the_output_must_not_be_an_input(tmp_path, capsys):
    from scoreinv.app.cli import main

    path = tmp_path / "in.dcm"
    shutil.copy(shipped("CT_small.dcm"), path)
    before = path.read_bytes()
    assert main(["data", "dicom", str(path), str(path), "--overwrite"]) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is one of the input files"):
        dicom_to_h5(tmp_path, path.with_suffix(".dcm"), overwrite=True)
    assert path.read_bytes() == before


def test_an_output_whose_folder_is_a_file_names_the_output(tmp_path, capsys):
    from scoreinv.app.cli import main

    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / "file" / "o.h5"
    assert main(["data", "dicom", shipped("CT_small.dcm"), str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"scoreinv: error: cannot write {out}: ") and "\n" not in error
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_a_read_only_folder_names_the_output(tmp_path, capsys):
    import os

    from scoreinv.app.cli import main

    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who may write anywhere (root)")
        out = folder / "o.h5"
        assert main(["data", "dicom", shipped("CT_small.dcm"), str(out)]) == 2
        error = capsys.readouterr().err.strip()
        assert error == f"scoreinv: error: cannot write {out}: Permission denied"
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("window", [["-inf", "inf"], ["-1e3", "nan"], ["100", "-100"]])
def test_a_bad_window_is_one_clean_line(window, tmp_path, capsys):
    from scoreinv.app.cli import main

    out = tmp_path / "o.h5"
    assert main(["data", "dicom", shipped("CT_small.dcm"), str(out), "--window", *window]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scoreinv: error: window must be (low, high) HU, two finite numbers with low < high")
    assert "\n" not in error and not out.exists()
    assert main(["data", "dicom", shipped("CT_small.dcm"), str(out), "--window", "-1e3", "1e3"]) == 0


def test_command_line_size_series_and_secondary_capture(pacs_folder, tmp_path, capsys):
    from scoreinv.app.cli import main

    out = tmp_path / "o.h5"
    uid = str(pydicom.dcmread(pacs_folder / "CT_small.dcm").SeriesInstanceUID)
    assert main(["data", "dicom", str(pacs_folder), str(out), "--size", "native", "--series", uid,
                 "--allow-secondary-capture"]) == 0
    with h5py.File(out) as handle:
        assert handle["images"].shape == (2, 1, 128, 128)  # CT_small and its secondary capture (same series)
    assert "wrote 2 CT slices of 1 series" in capsys.readouterr().out
    assert main(["data", "dicom", str(pacs_folder), str(out), "--size", "100000", "--overwrite"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scoreinv: error: size must be from 16 to 4096 (a slice is resized in memory") and \
        "got 100000" in error
    with pytest.raises(SystemExit) as exit_code:  # a usage mistake: argparse's one line, exit 2
        main(["data", "dicom", str(pacs_folder), str(out), "--size", "huge"])
    assert exit_code.value.code == 2
    assert "argument --size: expected an integer or 'native', got 'huge'" in capsys.readouterr().err
