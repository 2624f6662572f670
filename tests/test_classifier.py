"""The time-dependent classifier: checkpoints, exact resume, the registry, labelled files, the CLI."""

import json

import numpy as np
import pytest
import torch

from conftest import tiny_model
from scoreinv.app.cli import main
from scoreinv.checkpoint import export_model, save_checkpoint
from scoreinv.classifier import (CLASSIFIERS, ClassifierArchitecture, ClassifierConfig, ClassifierTrainingConfig,
                                 TimeClassifier, accuracy_by_time, export_classifier, load_classifier,
                                 read_classifier, register_classifier, train_classifier)
from scoreinv.config import SDEConfig
from scoreinv.datasets.labelled import read_labelled_h5, write_labelled_h5

SMALL = ClassifierArchitecture(base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1)


def config(sde="vp", **changes):
    sde_config = SDEConfig(kind="ve", sigma_max=4.0) if sde == "ve" else SDEConfig(kind="vp")
    return ClassifierConfig(class_names=("dark", "bright"), image_size=8, channels=1, sde=sde_config,
                            architecture=SMALL, **changes)


def two_class_data(n=64):
    """Dark and bright 8×8 images: separable, so a few steps of training already help."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = (0.2 + 0.6 * labels.float()[:, None, None, None] + 0.1 * torch.rand(n, 1, 8, 8, generator=g)).clamp(0, 1)
    return images, labels


def test_logits_shape_and_label_names():
    model = TimeClassifier(config(), seed=0)
    logits = model(torch.rand(3, 1, 8, 8), torch.full((3,), 0.5))
    assert logits.shape == (3, 2)
    assert model.label_index("bright") == 1 and model.label_index(0) == 0 and model.label_index("1") == 1
    with pytest.raises(ValueError, match="unknown class 'grey'"):
        model.label_index("grey")
    with pytest.raises(ValueError, match="out of range"):
        model.label_index(2)
    with pytest.raises(ValueError, match="x must be a floating tensor of shape"):
        model(torch.rand(3, 1, 4, 4), torch.full((3,), 0.5))


def test_training_resumes_exactly(tmp_path):
    images, labels = two_class_data()
    settings = ClassifierTrainingConfig(steps=4, batch_size=8, warmup_steps=2, checkpoint_every=2, seed=1)
    whole = TimeClassifier(config(), seed=0)
    train_classifier(whole, images, labels, settings, checkpoint_path=tmp_path / "whole.pt", progress=False)

    part = TimeClassifier(config(), seed=0)
    train_classifier(part, images, labels, settings.model_copy(update={"steps": 2}),
                     checkpoint_path=tmp_path / "part.pt", progress=False)
    resumed = TimeClassifier(config(), seed=0)  # a fresh process: everything comes from the file
    result = train_classifier(resumed, images, labels, settings, checkpoint_path=tmp_path / "part.pt", progress=False)
    assert result.step == 4 and len(result.losses) == 2
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    ema_a = read_classifier(tmp_path / "whole.pt")["ema"]["shadow"]
    ema_b = read_classifier(tmp_path / "part.pt")["ema"]["shadow"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


def test_resume_refuses_other_settings(tmp_path):
    images, labels = two_class_data()
    settings = ClassifierTrainingConfig(steps=2, batch_size=8, warmup_steps=1)
    train_classifier(TimeClassifier(config(), seed=0), images, labels, settings, checkpoint_path=tmp_path / "c.pt",
                     progress=False)
    with pytest.raises(ValueError, match="different settings \\['learning_rate'\\]"):
        train_classifier(TimeClassifier(config(), seed=0), images, labels,
                         settings.model_copy(update={"learning_rate": 0.1, "steps": 3}),
                         checkpoint_path=tmp_path / "c.pt", progress=False)
    with pytest.raises(ValueError, match="different classifier configuration"):
        train_classifier(TimeClassifier(config(data_std=0.3), seed=0), images, labels, settings,
                         checkpoint_path=tmp_path / "c.pt", progress=False)


def test_trained_classifier_separates_the_classes_at_low_noise(tmp_path):
    images, labels = two_class_data(128)
    model = TimeClassifier(config(), seed=0)
    train_classifier(model, images, labels, ClassifierTrainingConfig(steps=60, batch_size=32, warmup_steps=5,
                     ema_decay=0.0), progress=False)
    low, high = accuracy_by_time(model, images, labels, [1e-3, 1.0])
    assert low > 0.95  # clean: dark and bright are trivially apart
    assert high < 0.75  # t = T: the VP prior's noise has erased the image


def test_export_loads_back_half_and_keeps_the_default_scale(tmp_path):
    images, labels = two_class_data()
    model = TimeClassifier(config(), seed=0)
    train_classifier(model, images, labels, ClassifierTrainingConfig(steps=2, batch_size=8, warmup_steps=1),
                     checkpoint_path=tmp_path / "c.pt", progress=False)
    export_classifier(tmp_path / "c.pt", tmp_path / "small.pt", default_scale=3.0, prior="mine")
    content = read_classifier(tmp_path / "small.pt")
    assert content["optimizer"] is None and content["weights"] is None
    assert content["ema"]["shadow"]["head.weight"].dtype == torch.float16
    loaded = load_classifier(tmp_path / "small.pt")
    assert loaded.default_scale == 3.0 and loaded.config.prior == "mine"
    reference = load_classifier(tmp_path / "c.pt")
    x, t = torch.rand(4, 1, 8, 8), torch.full((4,), 0.2)
    assert torch.allclose(loaded(x, t), reference(x, t), atol=1e-2)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_a_prior_file_is_not_a_classifier(tmp_path):
    save_checkpoint(tmp_path / "prior.pt", tiny_model())
    with pytest.raises(ValueError, match="it is a prior"):
        load_classifier(tmp_path / "prior.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable scoreinv classifier"):
        load_classifier(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_classifier(tmp_path / "missing.pt")


def test_registry_refuses_a_duplicate_name_and_unknown_names(tmp_path):
    assert {"digits-classifier", "ct-region-classifier"} <= set(CLASSIFIERS)
    with pytest.raises(ValueError, match="registered already"):
        register_classifier("digits-classifier", tmp_path / "x.pt")
    with pytest.raises(ValueError, match="unknown classifier 'nope'"):
        load_classifier("nope")


def test_labelled_file_round_trip_and_errors(tmp_path):
    images, labels = two_class_data(10)
    write_labelled_h5(tmp_path / "l.h5", images, labels, ["dark", "bright"])
    back, back_labels, names = read_labelled_h5(tmp_path / "l.h5")
    assert torch.equal(back, images) and torch.equal(back_labels, labels) and names == ("dark", "bright")
    with pytest.raises(ValueError, match="labels must lie in 0…1"):
        write_labelled_h5(tmp_path / "bad.h5", images, labels + 1, ["dark", "bright"])
    with pytest.raises(ValueError, match="whole numbers"):
        write_labelled_h5(tmp_path / "bad.h5", images, labels + 0.5, ["dark", "bright"])
    assert not (tmp_path / "bad.h5").exists()


def test_sampling_refuses_a_classifier_of_another_sde(tmp_path):
    import scoreinv

    prior = tiny_model()  # VE, σ_max 4
    with pytest.raises(ValueError, match="trained on noise from VPSDE"):
        scoreinv.sample(prior, 2, classifier=TimeClassifier(config("vp"), seed=0), label=0, steps=3, progress=False)
    samples = scoreinv.sample(prior, 2, classifier=TimeClassifier(config("ve"), seed=0), label="bright", steps=3,
                              progress=False, seed=0)
    assert samples.shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="need a classifier"):
        scoreinv.sample(prior, 2, label=1, steps=3, progress=False)


def test_cli_train_classifier_and_guided_sample(tmp_path, capsys):
    prior_path = tmp_path / "prior.pt"
    export_model(tiny_model(), prior_path)
    images, labels = two_class_data(32)
    data = tmp_path / "labelled.h5"
    write_labelled_h5(data, images, labels, ["dark", "bright"])
    settings = tmp_path / "c.toml"
    settings.write_text("[architecture]\nbase_channels = 8\n[training]\nwarmup_steps = 1\nbatch_size = 8\n")
    out = tmp_path / "cls.pt"
    assert main(["train-classifier", str(data), str(out), "--prior", str(prior_path), "--config", str(settings),
                 "--steps", "2"]) == 0
    assert "2-class classifier (dark, bright)" in capsys.readouterr().out
    samples = tmp_path / "s.npy"
    assert main(["sample", str(prior_path), "--n", "2", "--steps", "3", "--out", str(samples), "--classifier", str(out),
                 "--label", "bright", "--scale", "2"]) == 0
    assert np.load(samples).shape == (2, 1, 8, 8)
    record = json.loads(samples.with_suffix(".json").read_text())
    assert record["class_index"] == 1 and record["classifier_scale"] == 2.0
    assert main(["sample", str(prior_path), "--n", "2", "--steps", "3", "--out", str(tmp_path / "t.npy"),
                 "--label", "bright"]) == 2
    assert "needs both --classifier and --label" in capsys.readouterr().err
    assert main(["train-classifier", str(tmp_path / "missing.h5"), str(out), "--prior", str(prior_path)]) == 2


@pytest.mark.parametrize("name", ["digits-classifier", "ct-region-classifier"])
def test_bundled_classifiers_load_and_fit_their_priors(name):
    from scoreinv.checkpoint import load_model

    entry = CLASSIFIERS[name]
    assert entry.path.stat().st_size < 2**20  # float16 exports
    classifier = load_classifier(name)
    prior = load_model(entry.prior)
    assert repr(classifier.sde) == repr(prior.sde)
    assert (classifier.channels, classifier.image_size) == (prior.channels, prior.image_size)
    assert classifier.default_scale > 0 and classifier.config.prior == entry.prior


@pytest.mark.slow
def test_the_bundled_digits_pair_samples_a_three_as_written():
    """The call of the docs, with its defaults (1000 PC steps and a Langevin corrector)."""
    from sklearn.svm import SVC

    import scoreinv
    from scoreinv.checkpoint import load_model
    from scoreinv.datasets.labelled import digits_labelled

    x = scoreinv.sample(load_model("digits"), 64, classifier="digits-classifier", label=3, seed=0, progress=False)
    assert x.shape == (64, 1, 8, 8)
    (train_x, train_y), _, _ = digits_labelled()
    judge = SVC(C=10.0).fit(train_x.flatten(1).numpy(), train_y.numpy())
    assert (judge.predict(x.clamp(0, 1).flatten(1).numpy()) == 3).mean() >= 0.8
