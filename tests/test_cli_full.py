"""The whole command line on a tiny model trained here in seconds.

data phantoms → train (TOML config, .h5 images) → sample, likelihood, data simulate → reconstruct
(.h5 and .npy in, .npy and .png out) and batch; configuration precedence (defaults < file < flags,
the merged configuration stored); --help shows defaults; every user mistake is one line and exit 2.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from scoreinv.checkpoint import read_checkpoint
from scoreinv.app.cli import main
from scoreinv.config import ModelConfig, TrainingConfig

TINY_TOML = """
[model.sde]
kind = "vp"

[model.unet]
base_channels = 8
channel_multipliers = [1, 2]
num_res_blocks = 1

[training]
warmup_steps = 1
batch_size = 8
steps = 50
"""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(arguments: list[str]) -> int:
    """main()'s exit code, argparse's usage errors (SystemExit) included."""
    try:
        return main(arguments)
    except SystemExit as exit_:
        return int(exit_.code)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Phantoms (12 × 16²), a model trained 10 steps on them, and their 8-view sinograms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the autouse one-thread fixture is function-scoped: not yet active here
    folder = tmp_path_factory.mktemp("cli")
    paths = SimpleNamespace(folder=folder, images=folder / "images.h5", model=folder / "model.pt",
                            config=folder / "tiny.toml", sinograms=folder / "sinograms.h5")
    try:
        assert main(["data", "phantoms", str(paths.images), "--n", "12", "--size", "16", "--seed", "1"]) == 0
        paths.config.write_text(TINY_TOML)
        assert main(["train", str(paths.images), "--out", str(paths.model), "--config", str(paths.config),
                     "--steps", "10"]) == 0
        assert main(["data", "simulate", str(paths.images), str(paths.sinograms), "--views", "8",
                     "--noise-std", "0.01", "--seed", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    return paths


def test_train_from_h5_with_toml_config_flag_wins_and_is_stored(work):
    content = read_checkpoint(work.model)
    training, model = content["training_config"], content["model_config"]
    assert isinstance(training, TrainingConfig) and isinstance(model, ModelConfig)
    assert content["step"] == 10 and training.steps == 10  # the flag beat the file's 50
    assert training.batch_size == 8 and training.warmup_steps == 1  # from the file
    assert training.learning_rate == TrainingConfig().learning_rate  # the default
    assert model.sde.kind == "vp" and model.unet.base_channels == 8
    assert (model.unet.image_size, model.unet.channels) == (16, 1)  # from the data


def test_sample_config_and_flags(work, tmp_path, capsys):
    config = tmp_path / "sample.json"
    config.write_text(json.dumps({"n": 3, "steps": 50, "seed": 4}))
    out = tmp_path / "samples.npy"
    assert main(["sample", str(work.model), "--config", str(config), "--steps", "4", "--out", str(out)]) == 0
    samples = np.load(out)
    assert samples.shape == (3, 1, 16, 16) and np.isfinite(samples).all()
    stored = json.loads((tmp_path / "samples.json").read_text())["config"]
    assert (stored["n"], stored["steps"], stored["seed"]) == (3, 4, 4)
    assert "wrote 3 samples" in capsys.readouterr().out
    # the same seed gives the same samples; an existing output needs --overwrite
    assert main(["sample", str(work.model), "--config", str(config), "--steps", "4", "--out", str(out)]) == 2
    assert main(["sample", str(work.model), "--config", str(config), "--steps", "4", "--out", str(out),
                 "--overwrite"]) == 0
    assert np.array_equal(np.load(out), samples)


def test_likelihood_reads_h5_and_npy(work, tmp_path, capsys):
    config = tmp_path / "likelihood.toml"
    config.write_text("rtol = 1e-3\natol = 1e-3\nseed = 5\n")
    report = tmp_path / "bpd.json"
    assert main(["likelihood", str(work.model), str(work.images), "--items", "0:2", "--config", str(config),
                 "--out", str(report)]) == 0
    line = capsys.readouterr().out
    assert "bits/dim" in line and "± " in line and "over 2 images" in line
    result = json.loads(report.read_text())
    assert len(result["bpd"]) == 2 and result["config"]["rtol"] == 1e-3 and result["config"]["seed"] == 5
    assert result["bpd_mean"] == pytest.approx(np.mean(result["bpd"]))
    with h5py.File(work.images) as handle:
        np.save(tmp_path / "two.npy", handle["images"][:2])
    again = tmp_path / "again.json"
    assert main(["likelihood", str(work.model), str(tmp_path / "two.npy"), "--config", str(config),
                 "--out", str(again)]) == 0
    assert json.loads(again.read_text())["bpd"] == pytest.approx(result["bpd"], abs=1e-9)


def test_reconstruct_h5_and_npy_inputs_npy_and_png_outputs(work, tmp_path, capsys):
    config = tmp_path / "reconstruct.toml"
    config.write_text(f'model = "{work.model.as_posix()}"\n\n[settings]\nsteps = 50\nnum_samples = 2\n')
    out = tmp_path / "from_h5.npy"
    assert main(["reconstruct", str(work.sinograms), str(out), "--config", str(config), "--items", "1:3",
                 "--steps", "6"]) == 0
    assert "reconstructed 2 items (2 samples each" in capsys.readouterr().out
    mean, std = np.load(out), np.load(tmp_path / "from_h5_std.npy")
    assert mean.shape == std.shape == (2, 1, 16, 16) and (std > 0).any()
    record = json.loads((tmp_path / "from_h5.json").read_text())
    assert record["config"]["settings"]["steps"] == 6 and record["config"]["settings"]["num_samples"] == 2
    assert record["operator"]["type"] == "RadonOp" and record["operator"]["n_views"] == 8
    assert record["settings"]["method"] == "decomposed" and record["nfe"] > 0

    # the same sinograms as a .npy, with the operator from the flags: the same reconstructions
    with h5py.File(work.sinograms) as handle:
        np.save(tmp_path / "sinograms.npy", handle["measurements"][1:3])
        np.save(tmp_path / "one.npy", handle["measurements"][0])
    again = tmp_path / "from_npy.npy"
    assert main(["reconstruct", str(tmp_path / "sinograms.npy"), str(again), "--config", str(config),
                 "--operator", "radon", "--views", "8", "--noise-std", "0.01", "--steps", "6"]) == 0
    assert json.loads((tmp_path / "from_npy.json").read_text())["config"]["operator"]["views"] == 8
    assert np.load(again).shape == (2, 1, 16, 16)

    # one item (C, V, D) to a .png grid, and its std panel
    picture = tmp_path / "one.png"
    assert main(["reconstruct", str(tmp_path / "one.npy"), str(picture), "--model", str(work.model),
                 "--views", "8", "--noise-std", "0.01", "--steps", "5", "--num-samples", "2"]) == 0
    assert "reconstructed 1 item " in capsys.readouterr().out
    assert picture.read_bytes()[:8] == PNG_MAGIC and (tmp_path / "one_std.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_batch_matches_reconstruct(work, tmp_path, capsys):
    single = tmp_path / "single.npy"
    assert main(["reconstruct", str(work.sinograms), str(single), "--model", str(work.model), "--items", "2:4",
                 "--steps", "5"]) == 0
    out = tmp_path / "batch.h5"
    config = tmp_path / "batch.json"
    config.write_text(json.dumps({"model": str(work.model), "batch_size": 3, "settings": {"steps": 20}}))
    assert main(["batch", str(work.sinograms), str(out), "--config", str(config), "--steps", "5"]) == 0
    line = capsys.readouterr().out
    assert "12 items: 12 computed, 0 already done, 0 failed" in line and "PSNR" in line
    with h5py.File(out) as handle:
        reconstructions = handle["reconstructions"][:]
    assert reconstructions.shape == (12, 1, 16, 16)
    # item i is seeded from (seed, i) in both commands: the same result whatever the batch
    np.testing.assert_allclose(reconstructions[2:4], np.load(single), atol=1e-5)


@pytest.mark.parametrize(
    "command, expected",
    [
        (["train"], ["--steps STEPS", "(default: 10000)", "--batch-size", "(default: 32)", "(default: ve)"]),
        (["sample"], ["(default: 16)", "(default: 1000)", "(default: 0.16)", "(default: samples.png)"]),
        (["reconstruct"], ["(default: the registered prior for the operator's modality", "(default: radon 23; fanbeam 23)",
                           "(default: per operator family", "(default: radon)"]),
        (["batch"], ["(default: the registered prior for the operator's modality", "--batch-size", "(default: 8)",
                     "(default: per operator family"]),
        (["likelihood"], ["(default: 256)", "(default: False)", "(default: 0)"]),
        (["data", "simulate"], ["(default: radon)", "(default: radon 23; fanbeam 23)", "(default: 0.0)"]),
        (["data", "phantoms"], ["(default: 64)", "(default: mixed)", "(default: required)"]),
        (["demo"], ["(default: 23)", "(default: the registered prior for CT at --size)"]),
    ],
)
def test_help_shows_defaults(capsys, command, expected):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    for piece in expected:
        assert "".join(piece.split()) in text, piece


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["reconstruct", "{missing}", "{out_npy}"], "measurement file not found"),
        (["reconstruct", "{garbage}", "{out_npy}", "--model", "{model}"], "is not a readable .npy array"),
        (["reconstruct", "{bad_shape}", "{out_npy}", "--model", "{model}", "--views", "8"],
         "produces measurements of shape (1, 8, 23), not (1, 8, 30)"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--model", "{model}", "--steps", "0"],
         "invalid configuration: settings.steps: Input should be greater than or equal to 1"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--config", "{unknown_key}"], "unknown key 'settings.stepz'"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--config", "{bad_toml}"], "is not valid TOML"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--config", "{bad_json}"], "is not valid JSON"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--config", "{config_yaml}"], "must end in .toml or .json"),
        (["reconstruct", "{big_sinograms}", "{out_npy}", "--model", "{model}"],
         "RadonOp was built for 32×32 images, the model works on 16×16"),
        (["reconstruct", "{one_npy}", "{out_npy}", "--model", "{model}", "--operator", "grayscale"],
         "operator 'grayscale' works on 3-channel images"),
        (["reconstruct", "{images}", "{out_npy}", "--model", "{model}"], "has no data set 'measurements'"),
        (["reconstruct", "{sinograms}", "{out_txt}", "--model", "{model}"], "must end in .npy or .png"),
        (["reconstruct", "{sinograms_txt}", "{out_npy}", "--model", "{model}"], "must be a .npy or .h5 file"),
        (["reconstruct", "{sinograms}", "{existing}", "--model", "{model}"], "exists; pass --overwrite"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--model", "{model}", "--views", "8"],
         "states the operator that made it"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--model", "{model}", "--items", "a:b"],
         "items must look like START:STOP"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--model", "{model}", "--items", "20:30"], "no items selected"),
        (["reconstruct", "{corrupt_h5}", "{out_npy}", "--model", "{model}"], "is not a readable HDF5 file"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--model", "no-such-prior"], "unknown bundled model"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--method", "magic"], "unknown method 'magic'"),
        (["reconstruct", "{sinograms}", "{out_npy}", "--step-filter", "magic"], "invalid choice: 'magic'"),
        (["reconstruct", "{sinograms}", "{out_npy}"], "no registered prior fits a sinogram of 23 detectors"),
        (["batch", "{sinograms}", "{out_npy}", "--model", "{model}"], "must be an .h5 file"),
        (["batch", "{images}", "{out_h5}", "--model", "{model}"], "measurements"),
        (["data", "simulate", "{images}", "{out_h5}", "--operator", "mask"], "needs exactly one of fraction"),
        (["data", "simulate", "{missing_h5}", "{out_h5}"], "not found"),
        (["data", "simulate", "{images}", "{existing_h5}"], "exists; pass --overwrite"),
        (["data", "phantoms", "{out_h5}", "--config", "{phantom_config}", "--n", "0"],
         "n: Input should be greater than or equal to 1"),
        (["likelihood", "{model}", "{sinograms_npy}"], "must hold images of shape (N, C, H, W)"),
        (["likelihood", "{model}", "{big_images}"], "the model was trained on (1, 16, 16)"),
        (["train", "{images}", "--out", "{out_pt}", "--config", "{unknown_train_key}"],
         "unknown key 'training.stepz'"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(work, tmp_path, capsys, arguments, message):
    paths = {"missing": tmp_path / "missing.npy", "missing_h5": tmp_path / "missing.h5",
             "out_npy": tmp_path / "out.npy", "out_txt": tmp_path / "out.txt", "out_h5": tmp_path / "out.h5",
             "out_pt": tmp_path / "out.pt", "model": work.model, "images": work.images,
             "sinograms": work.sinograms, "existing": tmp_path / "existing.npy",
             "existing_h5": tmp_path / "existing.h5", "garbage": tmp_path / "garbage.npy",
             "bad_shape": tmp_path / "bad_shape.npy", "one_npy": tmp_path / "one.npy",
             "sinograms_npy": tmp_path / "sinograms.npy", "sinograms_txt": tmp_path / "sinograms.txt",
             "big_sinograms": tmp_path / "big.h5", "big_images": tmp_path / "big_images.npy",
             "corrupt_h5": tmp_path / "corrupt.h5", "unknown_key": tmp_path / "unknown.toml",
             "bad_toml": tmp_path / "bad.toml", "bad_json": tmp_path / "bad.json",
             "config_yaml": tmp_path / "config.yaml", "phantom_config": tmp_path / "phantoms.toml",
             "unknown_train_key": tmp_path / "train.json"}
    paths["existing"].write_bytes(b"keep me")
    paths["existing_h5"].write_bytes(b"keep me")
    paths["garbage"].write_bytes(b"not an array")
    paths["corrupt_h5"].write_bytes(b"not an HDF5 file")
    paths["sinograms_txt"].write_text("1 2 3")
    np.save(paths["bad_shape"], np.zeros((2, 1, 8, 30), dtype=np.float32))
    np.save(paths["one_npy"], np.zeros((1, 16, 16), dtype=np.float32))
    np.save(paths["sinograms_npy"], np.zeros((2, 8, 23), dtype=np.float32))
    np.save(paths["big_images"], np.zeros((2, 1, 32, 32), dtype=np.float32))
    if "{big_sinograms}" in arguments:
        from scoreinv.datasets import simulate_h5, write_images_h5
        from scoreinv.operators import RadonOp

        write_images_h5(tmp_path / "big_images.h5", np.zeros((2, 1, 32, 32), dtype=np.float32))
        simulate_h5(tmp_path / "big_images.h5", paths["big_sinograms"], RadonOp(8, 32), progress=False)
    paths["unknown_key"].write_text("[settings]\nstepz = 3\n")
    paths["bad_toml"].write_text("[settings\nsteps = 3\n")
    paths["bad_json"].write_text("{'settings': 1}")
    paths["config_yaml"].write_text("settings: {}\n")
    paths["phantom_config"].write_text("n = 4\nsize = 16\n")
    paths["unknown_train_key"].write_text(json.dumps({"training": {"stepz": 3}}))

    assert run([argument.format(**paths) for argument in arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith("scoreinv: error: ") and message in error, error
    assert error.count("\n") == 1
    assert paths["existing"].read_bytes() == b"keep me" and paths["existing_h5"].read_bytes() == b"keep me"
    assert not paths["out_npy"].exists() and not paths["out_h5"].exists()


def test_python_m_scoreinv_exit_code_and_one_line(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "scoreinv", "reconstruct", str(tmp_path / "missing.h5"), str(tmp_path / "out.npy")],
        check=False, capture_output=True, text=True, env=environment, cwd=Path(__file__).parent, timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("scoreinv: error: measurement file not found")
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr
