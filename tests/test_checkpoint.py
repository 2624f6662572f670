"""Checkpoints: round trip, atomic writes, clear errors, bundled names, float16 export."""

import copy
import os

import pytest
import torch

import scoreinv.checkpoint as checkpoint
from conftest import tiny_model, tiny_model_config
from scoreinv.checkpoint import (
    FORMAT,
    bundled_models,
    export_model,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from scoreinv.config import ModelConfig, TrainingConfig
from scoreinv.models import EMA, ScoreModel
from scoreinv.training import train


def tiny_config(channels: int = 1) -> ModelConfig:
    return tiny_model_config(sde="vp", value_range=(-1.0, 1.0), channels=channels, attention_resolutions=(4,))


def randomised_model(seed: int = 0, channels: int = 1) -> ScoreModel:
    """A model whose every weight is random (the zero-initialised layers would hide bugs)."""
    return tiny_model(tiny_config(channels), seed=seed, randomise="all", scale=0.2)


def model_with_ema() -> tuple[ScoreModel, EMA]:
    model = randomised_model(0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.5)
    ema.update(model)  # the EMA now differs from the raw weights
    return model, ema


def probe(channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(42)
    return torch.randn(4, channels, 8, 8, generator=generator), torch.tensor([0.01, 0.3, 0.7, 1.0])


def test_round_trip_ema_and_raw(tmp_path):
    model, ema = model_with_ema()
    training = TrainingConfig(steps=10, batch_size=4)
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, ema=ema, training_config=training, step=7)
    assert path.is_file()
    x, t = probe()

    ema_reference = copy.deepcopy(model)
    ema.copy_to(ema_reference)
    loaded = load_model(path)
    assert torch.equal(loaded(x, t), ema_reference(x, t))
    assert not torch.equal(loaded(x, t), model(x, t))  # EMA by default, not the raw weights
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert loaded.config == model.config and loaded.value_range == (-1.0, 1.0)

    raw = load_model(str(path), weights="raw")
    assert torch.equal(raw(x, t), model(x, t))

    content = read_checkpoint(path)
    assert content["format"] == FORMAT and content["format_version"] == 1
    assert content["scoreinv_version"] == __import__("scoreinv").__version__
    assert content["model_config"] == model.config
    assert content["training_config"] == training
    assert content["step"] == 7 and content["optimizer"] is None


def test_round_trip_after_training_on_three_channels(tmp_path):
    torch.manual_seed(0)
    model = ScoreModel(tiny_config(channels=3))
    path = tmp_path / "rgb.pt"
    config = TrainingConfig(steps=2, batch_size=4, warmup_steps=0, ema_decay=0.5)
    result = train(model, torch.rand(8, 3, 8, 8), config, checkpoint_path=path, progress=False)
    reference = copy.deepcopy(model)
    result.ema.copy_to(reference)
    x, t = probe(channels=3)
    assert torch.equal(load_model(path)(x, t), reference(x, t))
    assert read_checkpoint(path)["optimizer"] is not None


def test_save_is_atomic(tmp_path, monkeypatch):
    model, ema = model_with_ema()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, ema=ema, step=1)
    before = path.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]  # no temporary file left behind

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, ema=ema, step=2)
    assert path.read_bytes() == before  # the previous checkpoint survives intact
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]
    monkeypatch.undo()
    assert read_checkpoint(path)["step"] == 1


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.pt"
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_model(path)
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        read_checkpoint(str(path))


def test_truncated_file(tmp_path):
    model, ema = model_with_ema()
    path = save_checkpoint(tmp_path / "cut.pt", model, ema=ema)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.pt.*not a readable scoreinv checkpoint"):
        load_model(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"cut\.pt.*not a readable scoreinv checkpoint"):
        load_model(path)
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ValueError, match=r"cut\.pt.*not a readable scoreinv checkpoint"):
        load_model(path)


class Foreign:
    """An arbitrary pickled object: a weights-only load must refuse it."""

    def __init__(self) -> None:
        self.value = 1


@pytest.mark.parametrize(
    "content",
    [
        "state_dict",
        {"weights": torch.zeros(2), "format": "someone-else"},
        [torch.zeros(3)],
        Foreign(),
    ],
    ids=["bare-state-dict", "other-format", "list", "pickled-object"],
)
def test_foreign_torch_file(tmp_path, content):
    if content == "state_dict":
        content = randomised_model().state_dict()
    path = tmp_path / "foreign.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=r"foreign\.pt.*(not a scoreinv checkpoint|not a readable scoreinv)"):
        load_model(path)


def test_newer_format_version_is_refused(tmp_path):
    model, ema = model_with_ema()
    path = save_checkpoint(tmp_path / "future.pt", model, ema=ema)
    content = torch.load(path, weights_only=True)
    content["format_version"] = 99
    torch.save(content, path)
    with pytest.raises(ValueError, match=r"future\.pt.*version 99"):
        read_checkpoint(path)


def test_registered_names(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown bundled model 'no-such-prior'.*available"):
        load_model("no-such-prior")
    # a prior registered from outside the package resolves by name and becomes the default
    # prior of its modality and size
    model, ema = model_with_ema()
    save_checkpoint(tmp_path / "tiny-prior.pt", model, ema=ema)
    monkeypatch.setattr(checkpoint, "PRIORS", {})
    checkpoint.register_prior("tiny-prior", tmp_path / "tiny-prior.pt", modality="mri", channels=1,
                              image_size=model.image_size)
    assert bundled_models() == ["tiny-prior"]
    assert checkpoint.default_prior("mri", 1, model.image_size) == "tiny-prior"
    assert checkpoint.default_prior(None, 1, model.image_size) == "tiny-prior"
    with pytest.raises(ValueError, match=r"no bundled prior fits.*tiny-prior \(mri, 1 channel"):
        checkpoint.default_prior("ct", 1, model.image_size)
    x, t = probe()
    assert torch.equal(load_model("tiny-prior")(x, t), load_model(tmp_path / "tiny-prior.pt")(x, t))
    with pytest.raises(ValueError, match=r"'ct'.*\['tiny-prior'\]"):
        load_model("ct")


def test_the_bundled_priors_are_registered_with_what_their_files_say():
    for entry in checkpoint.PRIORS.values():
        model = load_model(entry.name)
        assert model.channels == entry.channels
        assert model.image_sizes == (entry.image_size, entry.max_image_size)


def test_fp16_export_loads_as_float32(tmp_path):
    model, ema = model_with_ema()
    full = save_checkpoint(tmp_path / "full.pt", model, ema=ema, optimizer=torch.optim.Adam(model.parameters()), step=3)
    small = export_model(full, tmp_path / "small.pt")

    content = read_checkpoint(small)
    assert content["weights"] is None and content["optimizer"] is None and content["step"] == 3
    parameter_names = {name for name, _ in model.named_parameters()}
    for name, value in content["ema"]["shadow"].items():
        assert value.dtype == (torch.float16 if name in parameter_names else torch.float32), name
    assert small.stat().st_size < 0.6 * full.stat().st_size

    x, t = probe()
    reference = load_model(full)
    exported = load_model(small)
    assert all(p.dtype == torch.float32 for p in exported.parameters())
    out, ref = exported(x, t), reference(x, t)
    assert out.dtype == torch.float32
    relative = (out - ref).norm() / ref.norm()
    assert 0 < relative < 1e-2, relative  # rounded, yet close
    with pytest.raises(ValueError, match="no raw weights"):
        load_model(small, weights="raw")


def test_export_from_a_model_and_full_precision(tmp_path):
    model = randomised_model(1)
    x, t = probe()
    exact = export_model(model, tmp_path / "exact.pt", half=False)
    assert torch.equal(load_model(exact)(x, t), model(x, t))
    half = export_model(model, tmp_path / "half.pt")
    assert torch.allclose(load_model(half)(x, t), model(x, t), rtol=2e-2, atol=2e-2 * model(x, t).abs().max().item())


def test_load_model_argument_checks(tmp_path):
    model = randomised_model()
    path = save_checkpoint(tmp_path / "bare.pt", model)  # no EMA
    with pytest.raises(ValueError, match="no EMA weights.*weights='raw'"):
        load_model(path)
    x, t = probe()
    assert torch.equal(load_model(path, weights="raw", device="cpu")(x, t), model(x, t))
    with pytest.raises(ValueError, match="'ema' or 'raw'"):
        load_model(path, weights="best")


def test_trainable_copy_starts_from_the_ema_weights(tmp_path):
    model, ema = model_with_ema()
    path = save_checkpoint(tmp_path / "prior.pt", model, ema=ema)
    copy = checkpoint.trainable_copy(path)
    assert copy.training and all(parameter.requires_grad for parameter in copy.parameters())
    x, t = probe()
    copy.eval()
    assert torch.equal(copy(x, t), load_model(path)(x, t))
