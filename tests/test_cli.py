"""The command line: a round trip on a tiny model, and one-line errors with exit code 2."""

import json

import numpy as np
import pytest

from scoreinv.app.cli import main

TINY = {
    "model": {"sde": {"kind": "vp"},
              "unet": {"base_channels": 8, "channel_multipliers": [1, 2], "num_res_blocks": 1}},
    "training": {"warmup_steps": 1, "batch_size": 8},
}


@pytest.fixture()
def tiny_data(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(32, 1, 8, 8)).astype(np.float32)
    path = tmp_path / "images.npy"
    np.save(path, images)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY))
    return path, config


def test_train_sample_likelihood_round_trip(tmp_path, tiny_data, capsys):
    data, config = tiny_data
    model = tmp_path / "model.pt"
    assert main(["train", str(data), "--out", str(model), "--config", str(config), "--steps", "3"]) == 0
    assert model.exists()
    samples = tmp_path / "samples.npy"
    assert main(["sample", str(model), "--n", "3", "--steps", "5", "--out", str(samples)]) == 0
    assert np.load(samples).shape == (3, 1, 8, 8)
    report = tmp_path / "bpd.json"
    few = tmp_path / "few.npy"
    np.save(few, np.load(data)[:4])
    assert main(["likelihood", str(model), str(few), "--exact", "--out", str(report)]) == 0
    result = json.loads(report.read_text())
    assert len(result["bpd"]) == 4 and result["offset"] == 8.0 and result["divergence"] == "exact"
    assert "bits/dim" in capsys.readouterr().out
    # resuming to more steps continues the same run
    assert main(["train", str(data), "--out", str(model), "--config", str(config), "--steps", "4"]) == 0
    assert "trained to step 4" in capsys.readouterr().out


def test_train_init_from_continues_a_prior_with_its_own_architecture(tmp_path, tiny_data, capsys):
    import torch

    from scoreinv.checkpoint import load_model

    data, config = tiny_data
    first = tmp_path / "first.pt"
    assert main(["train", str(data), "--out", str(first), "--config", str(config), "--steps", "2"]) == 0
    more = tmp_path / "more.pt"
    # no --config: the architecture and SDE (VP here, the default is VE) come from the prior
    assert main(["train", str(data), "--out", str(more), "--init-from", str(first), "--steps", "1"]) == 0
    assert "trained to step 1" in capsys.readouterr().out
    assert load_model(more).config == load_model(first).config
    x, t = torch.rand(2, 1, 8, 8), torch.full((2,), 0.5)
    assert not torch.equal(load_model(more)(x, t), load_model(first)(x, t))  # it trained on
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 1, 16, 16), dtype=np.float32))
    assert main(["train", str(wrong), "--out", str(tmp_path / "x.pt"), "--init-from", str(first)]) == 2
    assert "models 1-channel 8² images" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["train", "{missing}", "--out", "{out}"], "image file not found"),
        (["train", "{bad_shape}", "--out", "{out}"], "must hold images of shape (N, C, H, W)"),
        (["train", "{data}", "--out", "{out}", "--steps", "0"], "invalid configuration: training.steps"),
        (["train", "{data}", "--out", "{out}", "--config", "{bad_config}"], "unknown key 'modle'"),
        (["sample", "{missing}.pt"], "no scoreinv checkpoint"),
        (["likelihood", "{corrupt}", "{data}"], "not a readable scoreinv checkpoint"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(tmp_path, tiny_data, capsys, arguments, message):
    data, _ = tiny_data
    np.save(tmp_path / "bad.npy", np.zeros((3, 8, 8), dtype=np.float32))
    (tmp_path / "bad_config.json").write_text(json.dumps({"modle": {}}))
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    paths = {"missing": tmp_path / "missing.npy", "out": tmp_path / "out.pt", "data": data,
             "bad_shape": tmp_path / "bad.npy", "bad_config": tmp_path / "bad_config.json",
             "corrupt": tmp_path / "corrupt.pt"}
    assert main([a.format(**paths) for a in arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("scoreinv: error:") and message in error
    assert len(error.splitlines()) == 1


# --- the sampler flags are generated from ReconstructionSettings ---------------------------------

def _options(command: str) -> dict[str, object]:
    import argparse

    from scoreinv.app.cli.parser import build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {flag: action for action in subparsers.choices[command]._actions for flag in action.option_strings}


@pytest.mark.parametrize("command", ["reconstruct", "batch"])
def test_one_flag_per_reconstruction_setting(command):
    from typing import get_args

    from scoreinv.config import FilterName, ReconstructionSettings

    options = _options(command)
    for name, info in ReconstructionSettings.model_fields.items():
        action = options["--" + name.replace("_", "-")]
        assert action.dest == f"settings.{name}" and action.default is None, name
        assert info.description and info.description.split(" (")[0] in action.help, name
    assert options["--step-filter"].choices == list(get_args(FilterName))
    assert options["--final-iterations"].type is int and options["--guidance-max-ratio"].type is float


def test_sampler_flags_reach_the_settings():
    from scoreinv.app.cli.commands import configure
    from scoreinv.app.cli.parser import build_parser, settings_flags
    from scoreinv.config import BatchConfig

    args = build_parser().parse_args(["batch", "in.h5", "out.h5", "--final-iterations", "7", "--step-filter", "hann",
                                      "--guidance-max-ratio", "2.5", "--steps", "3"])
    config = configure(BatchConfig, None, {"model": args.model, **settings_flags(args)})
    assert config.model is None  # the registered prior for the input's operator
    settings = config.settings
    assert (settings.final_iterations, settings.step_filter, settings.guidance_max_ratio, settings.steps) == (
        7, "hann", 2.5, 3)
    assert settings.method is None and settings.snr is None  # not given: the operator family decides
    with pytest.raises(SystemExit):
        build_parser().parse_args(["batch", "in.h5", "out.h5", "--step-filter", "magic"])
