"""Denoising score matching and the training loop: the loss's minimum, learning, exact resume."""

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import tiny_model, tiny_model_config
from scoreinv.checkpoint import read_checkpoint
from scoreinv.config import ModelConfig, TrainingConfig
from scoreinv.gaussian import GaussianPrior
from scoreinv.losses import dsm_loss
from scoreinv.models import ScoreModel
from scoreinv.sde import VESDE, VPSDE
from scoreinv.training import train

# -- the loss ---------------------------------------------------------------------------------

SDES = [VESDE(0.01, 5.0), VPSDE(0.1, 20.0)]


def gaussian_4x4(sde) -> GaussianPrior:
    mean = torch.linspace(-0.5, 1.0, 16).reshape(1, 4, 4)
    variance = torch.linspace(0.01, 0.5, 16).reshape(1, 4, 4)
    return GaussianPrior(sde, mean, variance)


def irreducible_loss(sde, variance: torch.Tensor, weighting: str, eps: float = 1e-5) -> float:
    """E_t λ(t)/std² · mean_pixels m² s² / (m² s² + std²): the DSM loss of the exact score.

    Per pixel, std·s* + z = z − std (m s ε + std z) / (m² s² + std²) has second moment
    m² s² / (m² s² + std²); the likelihood weighting multiplies it by g² / std².
    The t-average is a fine trapezoid rule over [eps, T].
    """
    t = torch.linspace(eps, sde.T, 20001, dtype=torch.float64)
    m = sde.mean_coefficient(t)[:, None]
    std = sde.marginal_std(t)[:, None]
    s2 = variance.flatten().double()[None]
    per_t = (m**2 * s2 / (m**2 * s2 + std**2)).mean(dim=1)
    if weighting == "likelihood":
        _, g = sde.sde(torch.zeros(t.shape[0], 1), t)
        per_t = per_t * g**2 / std[:, 0] ** 2
    return (torch.trapezoid(per_t, t) / (sde.T - eps)).item()


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("weighting", ["std2", "likelihood"])
def test_dsm_loss_of_exact_score_is_its_known_minimum(sde, weighting):
    # Under the likelihood weighting the VP integrand g²/std² ~ 1/t near 0: the Monte-Carlo
    # loss is heavy-tailed there, so the check starts at t = 1e-2 to be a sharp one.
    eps = 1e-2 if weighting == "likelihood" else 1e-5
    prior = gaussian_4x4(sde)
    x0 = prior.sample(40_000, torch.Generator().manual_seed(0))
    loss = dsm_loss(prior, sde, x0, torch.Generator().manual_seed(1), weighting=weighting, eps=eps).item()
    expected = irreducible_loss(sde, prior.eigenvalues.reshape(1, 4, 4), weighting, eps)
    assert loss == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("weighting", ["std2", "likelihood"])
def test_dsm_loss_prefers_the_exact_score(sde, weighting):
    prior = gaussian_4x4(sde)
    x0 = prior.sample(8192, torch.Generator().manual_seed(0))
    perturbed = {
        "half": lambda x, t: 0.5 * prior(x, t),
        "1.5x": lambda x, t: 1.5 * prior(x, t),
        "shifted": lambda x, t: prior(x, t) + 0.3,
    }

    def loss(score_fn):  # common random numbers: the same t and z for every candidate
        return dsm_loss(score_fn, sde, x0, torch.Generator().manual_seed(3), weighting=weighting).item()

    exact = loss(prior)
    for name, score_fn in perturbed.items():
        assert exact < 0.95 * loss(score_fn), name


def test_dsm_loss_draws_through_the_generator_and_validates():
    sde = VESDE(0.01, 5.0)
    prior = gaussian_4x4(sde)
    x0 = prior.sample(64, torch.Generator().manual_seed(0))
    a = dsm_loss(prior, sde, x0, torch.Generator().manual_seed(7))
    b = dsm_loss(prior, sde, x0, torch.Generator().manual_seed(7))
    c = dsm_loss(prior, sde, x0, torch.Generator().manual_seed(8))
    assert a.shape == () and torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="weighting"):
        dsm_loss(prior, sde, x0, weighting="uniform")
    with pytest.raises(ValueError, match="eps"):
        dsm_loss(prior, sde, x0, eps=0.0)


# -- training -------------------------------------------------------------------------------


def tiny_training(steps: int, **overrides) -> TrainingConfig:
    settings = dict(
        steps=steps, batch_size=8, learning_rate=1e-3, warmup_steps=2, ema_decay=0.9, checkpoint_every=1000, seed=3
    )
    settings.update(overrides)
    return TrainingConfig(**settings)


def build(config: ModelConfig, seed: int = 0) -> ScoreModel:
    return tiny_model(config, seed=seed)


def pattern_gaussian(sde) -> GaussianPrior:
    """N(μ, diag s²) on 1×8×8 with a smooth non-constant mean and spatially varying std."""
    i, j = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    mean = 0.5 + 0.3 * torch.sin(i / 2.5) * torch.cos(j / 3.0)
    std = 0.05 + 0.15 * (i + j) / 14
    return GaussianPrior(sde, mean[None], std[None] ** 2)


def relative_score_error(model, prior, times=(0.2, 0.4, 0.6, 0.8), n=512) -> float:
    """E‖s_θ − s*‖² / E‖s*‖² over fresh x_t ~ p_t at the given times."""
    generator = torch.Generator().manual_seed(123)
    num = den = 0.0
    with torch.no_grad():
        for value in times:
            t = torch.full((n,), value)
            x0 = prior.sample(n, generator)
            mean, std = prior.sde.marginal_prob(x0, t)
            x_t = mean + std[:, None, None, None] * torch.randn(x0.shape, generator=generator)
            exact = prior(x_t, t)
            num += (model(x_t, t) - exact).pow(2).sum().item()
            den += exact.pow(2).sum().item()
    return num / den


def test_training_learns_the_gaussian_score():
    config = tiny_model_config(base_channels=16, fourier_scale=4.0)
    model = build(config)
    prior = pattern_gaussian(model.sde)
    data = prior.sample(2048, torch.Generator().manual_seed(1))
    before = relative_score_error(model, prior)
    assert before == pytest.approx(1.0)  # zero-initialised output: s_θ = 0

    result = train(
        model,
        data,
        TrainingConfig(steps=200, batch_size=32, learning_rate=2e-3, warmup_steps=20, ema_decay=0.9, seed=0),
        progress=False,
    )
    assert result.step == 200 and len(result.losses) == 200
    first, last = sum(result.losses[:20]) / 20, sum(result.losses[-20:]) / 20
    assert last < 0.7 * first, (first, last)

    raw_error = relative_score_error(model, prior)
    ema_model = copy.deepcopy(model)
    result.ema.copy_to(ema_model)
    ema_error = relative_score_error(ema_model, prior)
    # measured: raw 0.10, EMA 0.05 (from 1.0)
    assert raw_error < 0.3 * before, raw_error
    assert ema_error < 0.3 * before, ema_error


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("kind", ["tensor", "iterable"])
def test_resume_is_exact(tmp_path, kind):
    """2k steps straight == k steps, checkpoint, a fresh model resumed to 2k (raw and EMA)."""
    config = tiny_model_config(dropout=0.2)  # dropout: the per-step global RNG must be seeded too
    data = torch.rand(64, 1, 8, 8)
    if kind == "iterable":
        data = [data[i : i + 8] for i in range(0, 40, 8)]  # 5 batches: the 6-step run cycles
    k = 3

    straight_model = build(config)
    straight = train(straight_model, data, tiny_training(2 * k), progress=False)

    path = tmp_path / "run.pt"
    first_half = train(build(config), data, tiny_training(k), checkpoint_path=path, progress=False)
    assert read_checkpoint(path)["step"] == k
    resumed_model = build(config, seed=99)  # different init: everything must come from the file
    resumed = train(resumed_model, data, tiny_training(2 * k), checkpoint_path=path, progress=False)

    assert resumed.step == 2 * k and len(resumed.losses) == k
    assert first_half.losses + resumed.losses == straight.losses
    assert_same_state(resumed_model.state_dict(), straight_model.state_dict())
    assert_same_state(resumed.ema.shadow, straight.ema.shadow)
    assert read_checkpoint(path)["step"] == 2 * k
    # a finished run resumed again does nothing
    again = train(resumed_model, data, tiny_training(2 * k), checkpoint_path=path, progress=False)
    assert again.step == 2 * k and again.losses == []


def test_tensor_and_dataset_give_the_same_run():
    config = tiny_model_config()
    data = torch.rand(32, 1, 8, 8)
    a, b = build(config), build(config)
    train(a, data, tiny_training(3), progress=False)
    train(b, TensorDataset(data), tiny_training(3), progress=False)
    assert_same_state(a.state_dict(), b.state_dict())


def test_training_leaves_global_rng_alone_and_seed_matters():
    config = tiny_model_config(dropout=0.1)
    data = torch.rand(32, 1, 8, 8)
    model = build(config)
    state = torch.get_rng_state()
    a = train(model, data, tiny_training(2, seed=0), progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    b = train(build(config), data, tiny_training(2, seed=1), progress=False)
    assert a.losses != b.losses


def test_checkpoint_cadence(tmp_path, monkeypatch):
    import scoreinv.training as training

    path = tmp_path / "cadence.pt"
    writes = []
    original = training.save_checkpoint

    def spy(*args, **kwargs):
        writes.append(kwargs["step"])
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "save_checkpoint", spy)
    config = tiny_training(5, checkpoint_every=2)
    train(build(tiny_model_config()), torch.rand(16, 1, 8, 8), config, checkpoint_path=path, progress=False)
    assert writes == [2, 4, 5]
    content = read_checkpoint(path)
    assert content["step"] == 5 and content["training_config"] == config


def test_resume_refuses_a_different_model(tmp_path):
    path = tmp_path / "other.pt"
    data = torch.rand(16, 1, 8, 8)
    train(build(tiny_model_config()), data, tiny_training(1), checkpoint_path=path, progress=False)
    with pytest.raises(ValueError, match="different model"):
        train(build(tiny_model_config(base_channels=16)), data, tiny_training(2), checkpoint_path=path, progress=False)
    # resume=False starts over and overwrites
    result = train(
        build(tiny_model_config(base_channels=16)), data, tiny_training(2), checkpoint_path=path, resume=False, progress=False
    )
    assert len(result.losses) == 2 and read_checkpoint(path)["model_config"].unet.base_channels == 16


@pytest.mark.parametrize(
    "data, pattern",
    [
        (torch.rand(16, 3, 8, 8), r"\(B, 1, 8, 8\).*\(16, 3, 8, 8\)"),
        (torch.rand(16, 1, 16, 16), r"\(B, 1, 8, 8\).*\(16, 1, 16, 16\)"),
        (torch.rand(16, 8, 8), r"\(B, 1, 8, 8\)"),
        (torch.randint(0, 255, (16, 1, 8, 8)), "floating"),
        ([torch.rand(4, 1, 8, 4)], r"\(B, 1, 8, 8\).*\(4, 1, 8, 4\)"),
        (TensorDataset(torch.rand(16, 1, 4, 4)), r"\(B, 1, 8, 8\)"),
        (torch.full((16, 1, 8, 8), float("nan")), "non-finite"),
        (42, "data must be"),
    ],
)
def test_training_rejects_data_that_does_not_fit(data, pattern):
    with pytest.raises(ValueError, match=pattern):
        train(build(tiny_model_config()), data, tiny_training(1), progress=False)


def test_non_finite_loss_names_the_step():
    batches = [torch.rand(4, 1, 8, 8), torch.full((4, 1, 8, 8), float("nan"))]
    with pytest.raises(FloatingPointError, match="step 2"):
        train(build(tiny_model_config()), batches, tiny_training(3), progress=False)


def test_one_shot_iterator_that_runs_out_is_an_error():
    batches = iter([torch.rand(4, 1, 8, 8)])
    with pytest.raises(ValueError, match="cannot be restarted"):
        train(build(tiny_model_config()), batches, tiny_training(2), progress=False)


def test_frozen_model_is_refused():
    model = build(tiny_model_config()).requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        train(model, torch.rand(8, 1, 8, 8), tiny_training(1), progress=False)


def test_resume_with_changed_hyperparameters_warns(tmp_path):
    path = tmp_path / "run.pt"
    data = torch.rand(16, 1, 8, 8)
    train(build(tiny_model_config()), data, tiny_training(1), checkpoint_path=path, progress=False)
    with pytest.warns(UserWarning, match="learning_rate"):
        train(build(tiny_model_config()), data, tiny_training(2, learning_rate=5e-4), checkpoint_path=path, progress=False)


def test_progress_bar_shows_loss_and_rate(capsys):
    train(build(tiny_model_config()), torch.rand(16, 1, 8, 8), tiny_training(2), progress=True)
    err = capsys.readouterr().err
    assert "2/2" in err and "loss=" in err and ("step/s" in err or "s/step" in err)


def test_ema_warmup_forgets_the_initial_weights():
    """With warm-up the EMA after 50 steps is close to the trained weights; with a fixed decay
    of 0.999 it still weighs the initial (zero-output) weights by 0.999^50 ≈ 95%."""
    data = torch.rand(64, 1, 8, 8)
    distances = {}
    for warmup in (True, False):
        model = ScoreModel(tiny_model_config())
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        result = train(model, data, TrainingConfig(steps=50, batch_size=8, warmup_steps=5, ema_decay=0.999,
                                                   ema_warmup=warmup, seed=0), progress=False)
        shadow, trained = result.ema.shadow, model.state_dict()
        distances[warmup] = sum((shadow[k] - trained[k]).norm() ** 2 for k in trained) / sum(
            (initial[k] - trained[k]).norm() ** 2 for k in trained)
    assert distances[True] < 0.1 < 0.8 < distances[False]


def test_cpu_amp_trains_in_bfloat16_keeps_float32_state_and_resumes_exactly(tmp_path):
    """cpu_amp: bf16 autocast changes the losses (by bf16 rounding only), not the state's dtype or the resume."""
    config = tiny_model_config()
    data = torch.rand(64, 1, 8, 8)
    full = train(build(config), data, tiny_training(4), progress=False)
    straight_model = build(config)
    straight = train(straight_model, data, tiny_training(4, cpu_amp=True), progress=False)
    assert straight.losses != full.losses
    assert straight.losses == pytest.approx(full.losses, rel=0.05)
    assert all(value.dtype == torch.float32 for value in straight_model.state_dict().values()
               if value.is_floating_point())

    path = tmp_path / "run.pt"
    train(build(config), data, tiny_training(2, cpu_amp=True), checkpoint_path=path, progress=False)
    resumed_model = build(config, seed=99)
    resumed = train(resumed_model, data, tiny_training(4, cpu_amp=True), checkpoint_path=path, progress=False)
    assert straight.losses[2:] == resumed.losses
    assert_same_state(resumed_model.state_dict(), straight_model.state_dict())
