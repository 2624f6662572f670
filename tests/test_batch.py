"""Batch reconstruction: per-item determinism, reconstruct_h5's output, resume after SIGKILL,
refusals, per-item failures and bad-input errors. Tiny 16² prior, 5 sampler steps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from tiny_batch import SIZE, data_file, images, tiny_checkpoint, tiny_model

import scoreinv.app.batch.runner as batch_module
from scoreinv.config import ReconstructionSettings
from scoreinv.app.batch import reconstruct_h5, work_folder
from scoreinv.datasets import simulate_h5, write_images_h5
from scoreinv.gaussian import GaussianPrior
from scoreinv.operators import GrayscaleOp, MaskOp, RadonOp
from scoreinv.reconstruct import posterior
from scoreinv.sde import VESDE
from scoreinv.seeding import ItemGenerators, item_seed, standard_normal

SETTINGS = ReconstructionSettings(steps=5, num_samples=2, seed=5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    return {"folder": folder, "checkpoint": tiny_checkpoint(folder / "tiny.pt"),
            "data": data_file(folder, n=5)}


def read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        return {key: np.asarray(handle[key]) for key in handle}


# --- per-item randomness ----------------------------------------------------------------------

def test_item_generators_draw_each_row_from_its_own_generator():
    seeds = [item_seed(3, i) for i in range(3)]
    z = standard_normal(torch.empty(3, 2, 4), ItemGenerators.from_seeds(seeds))
    for b, seed in enumerate(seeds):
        assert torch.equal(z[b], torch.randn(2, 4, generator=torch.Generator().manual_seed(seed)))
    prior = VESDE(0.01, 5.0).prior_sampling((3, 2, 4), ItemGenerators.from_seeds(seeds))
    assert torch.equal(prior, 5.0 * z)
    # a plain generator draws exactly as before
    plain = standard_normal(torch.empty(3, 2, 4), torch.Generator().manual_seed(1))
    assert torch.equal(plain, torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(1)))
    assert len({item_seed(0, 1), item_seed(1, 0), item_seed(0, 0, 1), item_seed(0, 1, 0, "simulate")}) == 4
    with pytest.raises(ValueError, match="holds 2 generators"):
        standard_normal(torch.empty(3, 4), ItemGenerators.from_seeds([1, 2]))


def case_operator(case: str):
    return {"radon": RadonOp(4, image_size=SIZE), "guidance": RadonOp(4, image_size=SIZE),
            "mask": MaskOp(image_size=SIZE, fraction=0.5, generator=torch.Generator().manual_seed(1)),
            "grayscale": GrayscaleOp(SIZE)}[case]


@pytest.mark.parametrize("case", ["radon", "mask", "grayscale", "guidance"])
def test_an_items_result_does_not_depend_on_its_batch(case):
    # The sampler, the solvers and the operators are bit-for-bit batch-invariant: shown with an
    # analytic (elementwise) prior, for batches of 1 to 6 items.
    operator = case_operator(case)
    channels = operator.in_shape[0]
    prior = GaussianPrior(VESDE(0.01, 5.0), torch.full((channels, SIZE, SIZE), 0.5),
                          torch.full((channels, SIZE, SIZE), 0.05))
    options = {"method": "guidance", "steps": 100} if case == "guidance" else {"steps": 5}
    y = operator(images(6, channels))
    results = {}
    for size in (1, 2, 3, 6):
        results[size] = torch.cat([
            posterior(y[i:i + size], operator, prior, seed=7, num_samples=2, progress=False,
                      item_seeds=range(i, i + size), **options).samples
            for i in range(0, 6, size)])
    for size in (2, 3, 6):
        assert torch.equal(results[1], results[size]), size
    assert not torch.equal(results[1][0], results[1][1])  # items and samples do get their own noise
    assert not torch.equal(results[1][0, 0], results[1][0, 1])


@pytest.mark.parametrize("case", ["radon", "mask"])
def test_with_a_network_an_item_depends_only_on_the_batch_size_not_on_its_batch_mates(case):
    # CPU conv kernels choose their blocking by batch size, so a network's rows are only
    # bit-identical between calls of the same shape (reconstruct_h5 pads short batches).
    operator, model = case_operator(case), tiny_model()
    y = operator(images(6))

    def run(items):
        return posterior(y[items], operator, model, steps=5, seed=7, num_samples=2, progress=False,
                         item_seeds=items).samples

    first, second = run([0, 1, 2]), run([4, 2, 0])
    assert torch.equal(first[0], second[2]) and torch.equal(first[2], second[1])
    # across batch sizes they agree to rounding amplified by the sampler (0 on the test machine)
    scale = float(first.abs().max())
    torch.testing.assert_close(run([0, 1]), first[:2], rtol=0, atol=0.05 * scale)


def test_item_seeds_must_match_the_batch():
    operator = RadonOp(4, image_size=SIZE)
    with pytest.raises(ValueError, match="item_seeds holds 1 values but the batch has 2 items"):
        posterior(operator(images(2)), operator, tiny_model(), steps=5, item_seeds=[0], progress=False)


# --- reconstruct_h5 ---------------------------------------------------------------------------

def test_reconstruct_h5_writes_every_item_with_metrics_and_configuration(files, tmp_path):
    out = tmp_path / "out.h5"
    summary = reconstruct_h5(files["data"], out, files["checkpoint"], SETTINGS, batch_size=2, progress=False)
    assert summary.items == 5 and summary.computed == 5 and summary.reused == 0 and summary.failed == 0
    assert not work_folder(out).exists()
    result = read(out)
    assert result["reconstructions"].shape == (5, 1, SIZE, SIZE)
    assert result["posterior_std"].shape == (5, 1, SIZE, SIZE) and (result["posterior_std"] > 0).all()
    assert result["done"].tolist() == [1] * 5 and result["failed"].tolist() == [0] * 5
    assert np.isfinite(result["psnr"]).all() and np.isfinite(result["ssim"]).all()
    assert summary.psnr == pytest.approx(result["psnr"].mean())
    config = summary.config
    assert config["settings"]["steps"] == 5 and config["settings"]["method"] == "decomposed"  # default resolved
    assert config["settings"]["cg_iterations"] is not None
    assert config["operator"]["type"] == "RadonOp"
    assert config["model"]["config"]["unet"]["image_size"] == SIZE and len(config["model"]["sha256"]) == 64

    # items 2 and 3 through scoreinv.posterior, a batch of two like the job's: the same numbers
    with h5py.File(files["data"], "r") as handle:
        y = torch.from_numpy(np.asarray(handle["measurements"][2:4]))
    from scoreinv.checkpoint import load_model
    pair = posterior(y, RadonOp(4, image_size=SIZE, noise_std=0.01), load_model(files["checkpoint"]),
                     steps=5, num_samples=2, seed=5, item_seeds=[2, 3], progress=False)
    assert np.array_equal(result["reconstructions"][2:4], pair.mean.numpy())

    other = tmp_path / "other.h5"
    reconstruct_h5(files["data"], other, files["checkpoint"], SETTINGS, batch_size=3, progress=False)
    again = read(other)
    # another batch size: the same up to kernel rounding amplified by the sampler (bit-identical here)
    scale = np.abs(result["reconstructions"]).max()
    for key in ("reconstructions", "posterior_std"):
        np.testing.assert_allclose(result[key], again[key], rtol=0, atol=0.05 * scale)


def test_a_complete_output_is_returned_without_recomputing(files, tmp_path):
    out = tmp_path / "out.h5"
    reconstruct_h5(files["data"], out, files["checkpoint"], SETTINGS, batch_size=2, progress=False)
    stamp = out.stat().st_mtime_ns
    # batch size, device and progress are not part of the configuration
    summary = reconstruct_h5(files["data"], out, files["checkpoint"], SETTINGS, batch_size=4, device="cpu",
                             progress=True)
    assert summary.computed == 0 and summary.reused == 5 and out.stat().st_mtime_ns == stamp
    again = reconstruct_h5(files["data"], out, files["checkpoint"], SETTINGS, batch_size=2, progress=False,
                           overwrite=True)  # starts over
    assert again.computed == 5 and again.reused == 0 and out.stat().st_mtime_ns != stamp


def test_a_different_configuration_is_refused(files, tmp_path):
    out = tmp_path / "out.h5"
    reconstruct_h5(files["data"], out, files["checkpoint"], SETTINGS, batch_size=5, progress=False)
    changed = SETTINGS.model_copy(update={"steps": 6})
    with pytest.raises(FileExistsError, match=r"different configuration \(settings.steps: 5 -> 6\)"):
        reconstruct_h5(files["data"], out, files["checkpoint"], changed, progress=False)
    reconstruct_h5(files["data"], out, files["checkpoint"], changed, progress=False, overwrite=True)
    assert read(out)["done"].all()


def test_an_interrupted_job_resumes_and_a_different_configuration_cannot_take_its_folder(files, tmp_path,
                                                                                         monkeypatch):
    out = tmp_path / "out.h5"
    original, written = batch_module.write_part, []

    def fail_after_two(folder, arrays):
        if len(written) == 2:
            raise RuntimeError("simulated crash")
        written.append(original(folder, arrays))
        return written[-1]

    monkeypatch.setattr(batch_module, "write_part", fail_after_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        reconstruct_h5(files["data"], out, files["checkpoint"], SETTINGS, batch_size=1, progress=False)
    monkeypatch.setattr(batch_module, "write_part", original)
    assert not out.exists() and len(list(work_folder(out).glob("part-*.h5"))) == 2
    assert not list(work_folder(out).glob(".*.tmp"))

    with pytest.raises(FileExistsError, match=r"work folder .* unfinished job with a different configuration"):
        reconstruct_h5(files["data"], out, files["checkpoint"], SETTINGS.model_copy(update={"seed": 6}),
                       progress=False)
    summary = reconstruct_h5(files["data"], out, files["checkpoint"], SETTINGS, batch_size=1, progress=False)
    assert summary.reused == 2 and summary.computed == 3
    reference = tmp_path / "reference.h5"
    reconstruct_h5(files["data"], reference, files["checkpoint"], SETTINGS, batch_size=1, progress=False)
    resumed, uninterrupted = read(out), read(reference)
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert np.array_equal(resumed[key], uninterrupted[key]), key


def test_an_item_with_nan_is_recorded_as_failed_and_the_others_are_unaffected(files, tmp_path):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(Path(files["data"]).read_bytes())
    with h5py.File(broken, "r+") as handle:
        handle["measurements"][2, 0, 1, 3] = np.nan
    out, clean = tmp_path / "out.h5", tmp_path / "clean.h5"
    summary = reconstruct_h5(broken, out, files["checkpoint"], SETTINGS, batch_size=5, progress=False)
    reconstruct_h5(files["data"], clean, files["checkpoint"], SETTINGS, batch_size=5, progress=False)
    result, reference = read(out), read(clean)
    assert summary.failed == 1 and result["failed"].tolist() == [0, 0, 1, 0, 0]
    assert result["done"].all()
    assert "NaN or inf" in result["failure_reason"][2].decode() and result["failure_reason"][0].decode() == ""
    assert np.isnan(result["reconstructions"][2]).all() and np.isnan(result["psnr"][2])
    ok = [0, 1, 3, 4]
    assert np.array_equal(result["reconstructions"][ok], reference["reconstructions"][ok])


def test_bad_input_gets_a_clear_error(files, tmp_path):
    checkpoint = files["checkpoint"]
    with pytest.raises(FileNotFoundError, match="HDF5 file not found"):
        reconstruct_h5(tmp_path / "missing.h5", tmp_path / "o.h5", checkpoint, progress=False)
    only_images = write_images_h5(tmp_path / "images.h5", images(2))
    with pytest.raises(ValueError, match="has no 'measurements' data set"):
        reconstruct_h5(only_images, tmp_path / "o.h5", checkpoint, progress=False)
    no_operator = write_images_h5(tmp_path / "no_op.h5", images(2), measurements=torch.zeros(2, 1, 4, 23))
    with pytest.raises(ValueError, match="has no 'operator' attribute"):
        reconstruct_h5(no_operator, tmp_path / "o.h5", checkpoint, progress=False)
    wrong_shape = data_file(tmp_path, n=2, operator=RadonOp(5, image_size=SIZE), name="five.h5")
    with h5py.File(wrong_shape, "r+") as handle:
        handle.attrs["operator"] = batch_module.json.dumps(RadonOp(4, image_size=SIZE).config())
    with pytest.raises(ValueError, match=r"measurements of shape \(2, 1, 5, 23\) do not match the operator"):
        reconstruct_h5(wrong_shape, tmp_path / "o.h5", checkpoint, progress=False)
    big = write_images_h5(tmp_path / "big-images.h5", torch.rand(2, 1, 32, 32))
    big = simulate_h5(big, tmp_path / "big.h5", RadonOp(4, image_size=32), progress=False)
    with pytest.raises(ValueError, match=r"works on images of shape \(1, 16, 16\) but the operator"):
        reconstruct_h5(big, tmp_path / "o.h5", checkpoint, progress=False)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        reconstruct_h5(files["data"], tmp_path / "o.h5", tmp_path / "none.pt", progress=False)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        reconstruct_h5(files["data"], tmp_path / "o.h5", checkpoint, batch_size=0, progress=False)
    assert not (tmp_path / "o.h5").exists() and not work_folder(tmp_path / "o.h5").exists()


# --- resume after SIGKILL ---------------------------------------------------------------------

KILLED_JOB = """
import sys, time
import torch
torch.set_num_threads(1)
import scoreinv.app.batch.runner as b
from scoreinv.config import ReconstructionSettings

original = b.write_part

def slow(folder, arrays):  # leave time to be killed between parts
    path = original(folder, arrays)
    time.sleep(0.4)
    return path

b.write_part = slow
b.reconstruct_h5(sys.argv[1], sys.argv[2], sys.argv[3],
                 ReconstructionSettings(steps=5, num_samples=2, seed=5), batch_size=3, progress=False)
"""


def test_a_job_killed_with_sigkill_resumes_bit_identically(files, tmp_path, monkeypatch):
    data = data_file(tmp_path, n=8)
    out = tmp_path / "out.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_JOB), str(data), str(out),
                            str(files["checkpoint"])], env=env, stderr=subprocess.PIPE)
    folder = work_folder(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.poll() is None:
        if folder.exists() and len(list(folder.glob("part-*.h5"))) >= 1:
            break
        time.sleep(0.05)
    assert job.poll() is None, job.stderr.read().decode()
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    job.stderr.close()
    assert not out.exists()
    before = batch_module.part_items(folder)
    assert 3 <= len(before) < 8 and not len(before) % 3

    computed: list[int] = []
    original = batch_module._posterior_rows

    def counting(y, ids, *args):
        computed.extend(ids)
        return original(y, ids, *args)

    monkeypatch.setattr(batch_module, "_posterior_rows", counting)
    summary = reconstruct_h5(data, out, files["checkpoint"], SETTINGS, batch_size=3, progress=False)
    monkeypatch.setattr(batch_module, "_posterior_rows", original)
    # every item done exactly once: the killed run's items are not redone, the rest are done once
    assert sorted(computed) == sorted(set(range(8)) - set(before))
    assert summary.reused == len(before) and summary.computed == 8 - len(before)
    assert not folder.exists()

    reference = tmp_path / "reference.h5"
    reconstruct_h5(data, reference, files["checkpoint"], SETTINGS, batch_size=3, progress=False)
    resumed, uninterrupted = read(out), read(reference)
    assert resumed["done"].tolist() == [1] * 8
    for key in uninterrupted:
        assert np.array_equal(resumed[key], uninterrupted[key]), key
