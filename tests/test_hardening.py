"""Bad input at every boundary gets a clear error: one line and a non-zero exit on the command
line, with no file left; a ValueError / TypeError naming what was expected in the API.

Batch jobs with failed items, Ctrl-C during a batch, devices this machine does not have,
operators that cannot be rebuilt, complex measurements, empty batches, meta tensors,
unwritable outputs. Tiny 16² prior, 5 sampler steps.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from tiny_batch import data_file, tiny_checkpoint

import scoreinv.app.batch.runner as batch_module
import scoreinv.atomic as atomic_module
from scoreinv import reconstruct
from scoreinv.app.batch import reconstruct_h5, work_folder
from scoreinv.app.batch.runner import BatchInterrupted
from scoreinv.app.cli import main
from scoreinv.checkpoint import load_model
from scoreinv.config import ReconstructionSettings
from scoreinv.devices import available_devices, check_device
from scoreinv.operators import RadonOp

SETTINGS = ReconstructionSettings(steps=5, seed=3)
STEPS = ["--steps", "5", "--seed", "3"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hardening")
    return {"folder": folder, "checkpoint": tiny_checkpoint(folder / "tiny.pt"), "data": data_file(folder, n=5)}


def copy_with(source: Path, target: Path, change) -> Path:
    shutil.copy(source, target)
    with h5py.File(target, "r+") as handle:
        change(handle)
    return target


def read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        return {key: np.asarray(handle[key]) for key in handle}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error line"
    return err[-1]


# --- batch: failed items ----------------------------------------------------------------------

def test_failed_items_exit_1_keep_the_finished_ones_and_a_rerun_after_the_fix_completes_the_output(
        files, tmp_path, capsys):
    def poison(handle):
        handle["measurements"][1, 0, 0, 2] = np.nan
        handle["measurements"][3, 0, 1, 0] = np.inf

    broken = copy_with(files["data"], tmp_path / "broken.h5", poison)
    out = tmp_path / "out.h5"
    command = ["batch", str(broken), str(out), "--model", str(files["checkpoint"]), "--batch-size", "2", *STEPS]
    assert main(command) == 1
    line = one_error_line(capsys)
    assert line.startswith("scoreinv: error: 2 of 5 items failed: items 1, 3 (the measurement contains NaN or inf)")
    assert "holds the 3 finished items" in line and "rerun the same command" in line
    result = read(out)
    assert result["failed"].tolist() == [0, 1, 0, 1, 0]
    assert np.isfinite(result["reconstructions"][[0, 2, 4]]).all()
    assert work_folder(out).exists()  # kept: the rerun computes only what failed

    assert main(command) == 1  # the same input fails the same way, and still says so

    def fix(handle):
        handle["measurements"][1, 0, 0, 2] = 0.0
        handle["measurements"][3, 0, 1, 0] = 0.0

    with h5py.File(broken, "r+") as handle:
        fix(handle)
    computed: list[int] = []
    original = batch_module._posterior_rows

    def counting(y, ids, *args):
        computed.extend(ids)
        return original(y, ids, *args)

    batch_module._posterior_rows = counting
    try:
        assert main(command) == 0
    finally:
        batch_module._posterior_rows = original
    assert sorted(set(computed)) == [1, 3]  # (padded to the batch width with copies of item 1 / 3)
    assert not work_folder(out).exists()
    reference = tmp_path / "reference.h5"
    reconstruct_h5(broken, reference, files["checkpoint"], SETTINGS, batch_size=2, progress=False)
    completed, uninterrupted = read(out), read(reference)
    assert completed["failed"].tolist() == [0] * 5
    for key in uninterrupted:
        assert np.array_equal(completed[key], uninterrupted[key]), key


def test_all_items_failing_exits_1_and_the_api_lists_them(files, tmp_path, capsys):
    broken = copy_with(files["data"], tmp_path / "nan.h5",
                       lambda handle: handle["measurements"].__setitem__((slice(None), 0, 0, 0), np.nan))
    out = tmp_path / "out.h5"
    assert main(["batch", str(broken), str(out), "--model", str(files["checkpoint"]), *STEPS]) == 1
    assert "5 of 5 items failed: items 0, 1, 2, 3, 4" in one_error_line(capsys)
    summary = reconstruct_h5(broken, out, files["checkpoint"], SETTINGS, progress=False)
    assert summary.failed == 5 and [item for item, _ in summary.failed_items] == [0, 1, 2, 3, 4]
    assert all("NaN or inf" in reason for _, reason in summary.failed_items)


# --- batch: Ctrl-C ----------------------------------------------------------------------------

def test_ctrl_c_prints_one_line_exits_130_and_the_resume_is_bit_identical(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.h5"
    original, calls = batch_module._posterior_rows, []

    def interrupted_at_the_third_batch(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(batch_module, "_posterior_rows", interrupted_at_the_third_batch)
    command = ["batch", str(files["data"]), str(out), "--model", str(files["checkpoint"]), "--batch-size", "2",
               *STEPS]
    assert main(command) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "scoreinv: interrupted; 4 items done, rerun the same command to resume")
    assert not out.exists() and work_folder(out).exists()
    calls[:] = [1, 1]  # the next call is interrupted again
    with pytest.raises(BatchInterrupted, match="interrupted; 4 items done"):  # the API raises a KeyboardInterrupt
        reconstruct_h5(files["data"], out, files["checkpoint"], SETTINGS, batch_size=2, progress=False)
    monkeypatch.setattr(batch_module, "_posterior_rows", original)
    assert main(command) == 0
    reference = tmp_path / "reference.h5"
    reconstruct_h5(files["data"], reference, files["checkpoint"], SETTINGS, batch_size=2, progress=False)
    resumed, uninterrupted = read(out), read(reference)
    for key in uninterrupted:
        assert np.array_equal(resumed[key], uninterrupted[key]), key


# --- batch: bad input files -------------------------------------------------------------------

def test_an_operator_that_cannot_be_rebuilt_and_complex_measurements_are_refused(files, tmp_path, capsys):
    def no_views(handle):
        config = json.loads(handle.attrs["operator"])
        handle.attrs["operator"] = json.dumps({**config, "n_views": 0})

    def complex_values(handle):
        values = np.asarray(handle["measurements"]).astype(np.complex64) + 1j
        del handle["measurements"]
        handle["measurements"] = values

    for name, change, message in (
            ("views.h5", no_views, "the stored operator cannot be rebuilt: RadonOp: n_views must be a positive "
                                   "integer, got 0"),
            ("complex.h5", complex_values, "the measurements hold complex64 values; scoreinv takes real numbers")):
        broken = copy_with(files["data"], tmp_path / name, change)
        out = tmp_path / f"out-{name}"
        assert main(["batch", str(broken), str(out), "--model", str(files["checkpoint"]), *STEPS]) == 2
        line = one_error_line(capsys)
        assert line.startswith(f"scoreinv: error: {broken}: ") and message in line, line
        assert not out.exists() and not work_folder(out).exists()
        with pytest.raises(ValueError, match=message.split(":")[0]):
            reconstruct_h5(broken, out, files["checkpoint"], SETTINGS, progress=False)


# --- devices ------------------------------------------------------------------------------------

def test_devices_are_checked_in_one_place_before_any_work(files, tmp_path, capsys):
    assert check_device(None) is None and check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    assert available_devices()[0] == "cpu"
    with pytest.raises(ValueError, match=r"unknown device 'bogus'; this machine offers cpu"):
        check_device("bogus")
    with pytest.raises(ValueError, match="does not compute on the 'meta' device"):
        check_device("meta")
    with pytest.raises(TypeError, match="device must be a string"):
        check_device(3)
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        load_model(files["checkpoint"], device="bogus")
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        reconstruct_h5(files["data"], tmp_path / "o.h5", files["checkpoint"], SETTINGS, device="bogus",
                       progress=False)
    wanted = ["bogus"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:1"])
    for device in wanted:
        out = tmp_path / "out.h5"
        assert main(["batch", str(files["data"]), str(out), "--model", str(files["checkpoint"]), *STEPS,
                     "--device", device]) == 2
        line = one_error_line(capsys)
        assert line.startswith(f"scoreinv: error: ") and repr(device) in line and "this machine offers" in line
        assert not out.exists() and not work_folder(out).exists()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            load_model(files["checkpoint"], device="cuda")


# --- the API's entry points ---------------------------------------------------------------------

def test_reconstruct_refuses_what_is_not_an_operator_an_empty_batch_and_a_meta_tensor():
    y = np.zeros((23, 91), dtype=np.float32)
    for operator in (None, "radon", RadonOp):
        with pytest.raises(TypeError, match=r"operator must be a scoreinv LinearOperator .*got "):
            reconstruct(y, operator=operator)
    with pytest.raises(ValueError, match=r"the measurement batch is empty: shape \(0, 1, 23, 91\) holds 0 items"):
        reconstruct(np.zeros((0, 1, 23, 91)), operator=RadonOp(23))
    with pytest.raises(ValueError, match="on the 'meta' device, which holds no values"):
        reconstruct(torch.zeros(1, 23, 91, device="meta"), operator=RadonOp(23))
    with pytest.raises(ValueError, match="real numbers, got dtype complex128"):
        reconstruct(np.zeros((23, 91), dtype=complex), operator=RadonOp(23))
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        reconstruct(y, operator=RadonOp(23), device="bogus")


def test_the_no_prior_message_names_the_detectors_and_the_sizes_that_fit():
    with pytest.raises(ValueError) as caught:
        reconstruct(np.zeros((23, 90), dtype=np.float32), operator=RadonOp(23))
    message = str(caught.value)
    assert message.startswith("no registered prior fits a sinogram of 90 detectors (measurements of shape "
                              "(1, 23, 90)), from which RadonOp reconstructs 1-channel 63×63 images")
    assert "the registered priors take measurements of shape (1, 23, 91) (91 detectors, 64×64 images: " \
           "ct-anatomy, ct-phantom, ct-patch)" in message


# --- unwritable outputs -------------------------------------------------------------------------

def test_an_unwritable_output_is_named_not_its_temporary_file(files, tmp_path, capsys, monkeypatch):
    def refused(*args, dir=None, prefix="", suffix=""):
        raise PermissionError(13, "Permission denied", str(Path(dir) / f"{prefix}abc{suffix}"))

    monkeypatch.setattr(atomic_module.tempfile, "mkstemp", refused)  # a read-only folder, even for root
    out = tmp_path / "simulated.h5"
    assert main(["data", "simulate", str(files["data"]), str(out), "--views", "4"]) == 2
    line = one_error_line(capsys)
    assert line == f"scoreinv: error: cannot write {out}: Permission denied"
    assert ".tmp" not in line and not out.exists()
    monkeypatch.undo()

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    out = blocked / "out.h5"  # its folder cannot be made: the batch work folder's error names the output
    assert main(["batch", str(files["data"]), str(out), "--model", str(files["checkpoint"]), *STEPS]) == 2
    assert f"cannot write the output {out}" in one_error_line(capsys)


def test_an_item_that_diverges_fails_alone_and_the_api_says_why(files, tmp_path):
    """A finite measurement far outside the operator's range (found by the property tests) makes
    the sampler diverge: the API says so, a batch records that item as failed and keeps the
    others bit for bit."""
    noise_free = data_file(tmp_path, n=5, operator=RadonOp(4, image_size=16), name="noise-free.h5")
    huge = copy_with(noise_free, tmp_path / "huge.h5", lambda handle: handle["measurements"].__setitem__(2, 1e18))
    with h5py.File(huge) as handle:
        y = np.asarray(handle["measurements"][2])
    prior = load_model(files["checkpoint"])
    with pytest.raises(ValueError, match=r"the reconstruction diverged .* largest \|y\| is 1e\+18"):
        reconstruct(y, RadonOp(4), prior, steps=5, progress=False)
    with pytest.raises(ValueError, match=r"beyond the float32 range .*largest \|y\| = 1e\+300"):
        reconstruct(np.full(y.shape, 1e300), RadonOp(4), prior, steps=5, progress=False)
    out, clean = tmp_path / "out.h5", tmp_path / "clean.h5"
    decomposed = SETTINGS.model_copy(update={"method": "decomposed"})
    summary = reconstruct_h5(huge, out, files["checkpoint"], decomposed, batch_size=5, progress=False)
    reconstruct_h5(noise_free, clean, files["checkpoint"], decomposed, batch_size=5, progress=False)
    assert [item for item, _ in summary.failed_items] == [2] and "diverged" in summary.failed_items[0][1]
    result, reference = read(out), read(clean)
    ok = [0, 1, 3, 4]
    assert np.array_equal(result["reconstructions"][ok], reference["reconstructions"][ok])
