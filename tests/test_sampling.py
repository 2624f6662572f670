"""Samplers driven by the exact score of Gaussian data must reproduce its mean and variance."""

import math

import pytest
import torch

from scoreinv.gaussian import GaussianPrior
from scoreinv.sampling import CORRECTORS, PREDICTORS, ode_sample, pc_sample, sample
from scoreinv.sde import SubVPSDE, VESDE, VPSDE

SDES = [VESDE(0.01, 50.0), VPSDE(0.1, 20.0), SubVPSDE(0.1, 20.0)]
N_SAMPLES = 4000


def anisotropic_gaussian(sde, side=4, smallest_variance=0.05):
    dims = side * side
    mean = torch.linspace(-0.5, 0.5, dims).reshape(1, side, side)
    variance = torch.linspace(smallest_variance, 1.0, dims).reshape(1, side, side)
    return GaussianPrior(sde, mean, variance), mean, variance


def moment_errors(x, mean, variance):
    """Max over pixels of |mean error| / data std, and of |variance ratio − 1|."""
    mean_error = ((x.mean(0) - mean).abs() / variance.sqrt()).max().item()
    variance_error = ((x.var(0) / variance) - 1).abs().max().item()
    return mean_error, variance_error


# Tolerances for n = 4000 samples, 16 pixels: the standard error of a mean is
# 1.6% of a data std, of a variance 2.2%; the max over 16 pixels of |error| stays
# below ~3.5 standard errors. The rest is discretisation error (500 steps) and,
# for the ODE, the prior mismatch p_T ≠ N(0, σ_max²) (≤ 0.5 / 50 for VE here).
MEAN_TOLERANCE = 0.07
VARIANCE_TOLERANCE = 0.10


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("predictor", sorted(set(PREDICTORS) - {"none"}))
def test_predictors_reproduce_gaussian_moments(sde, predictor):
    if predictor == "ancestral" and isinstance(sde, SubVPSDE):
        pytest.skip("sub-VP has no ancestral chain (tested as an error below)")
    prior, mean, variance = anisotropic_gaussian(sde)
    result = pc_sample(prior, sde, (N_SAMPLES, 1, 4, 4), steps=500, predictor=predictor,
                       corrector="none", generator=torch.Generator().manual_seed(1), progress=False)
    mean_error, variance_error = moment_errors(result.samples, mean, variance)
    assert mean_error < MEAN_TOLERANCE
    assert variance_error < VARIANCE_TOLERANCE
    assert result.nfe == 500


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("corrector", sorted(set(CORRECTORS) - {"none", "langevin"}))
def test_pc_with_a_corrector_reproduces_gaussian_moments(sde, corrector):
    # "langevin" (the SNR rule) is state-dependent and biased at D = 16: tested at 16² below.
    prior, mean, variance = anisotropic_gaussian(sde)
    result = pc_sample(prior, sde, (N_SAMPLES, 1, 4, 4), steps=500, corrector=corrector,
                       snr=0.16, generator=torch.Generator().manual_seed(2), progress=False)
    mean_error, variance_error = moment_errors(result.samples, mean, variance)
    assert mean_error < MEAN_TOLERANCE
    assert variance_error < VARIANCE_TOLERANCE
    assert result.nfe == 1000  # 500 predictor/denoising + 500 corrector evaluations


def test_pc_with_snr_langevin_on_a_larger_image():
    """The SNR step size ε = 2(r‖z‖/‖s‖)² depends on the state, which biases Langevin
    towards wider samples; the bias falls with the dimension (≈ 28% at D = 16, 4% at
    D = 256, see docs/sampling.md). At 16² it must stay within 10% on average."""
    sde = VESDE(0.01, 50.0)
    prior, mean, variance = anisotropic_gaussian(sde, side=16, smallest_variance=0.5)
    x = pc_sample(prior, sde, (2000, 1, 16, 16), steps=500, corrector="langevin", snr=0.16,
                  generator=torch.Generator().manual_seed(3), progress=False).samples
    ratio = x.var(0) / variance
    assert abs(ratio.mean().item() - 1) < 0.10
    assert (ratio - 1).abs().max().item() < 0.25
    assert ((x.mean(0) - mean).abs() / variance.sqrt()).max().item() < 0.12


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_ode_sampler_reproduces_gaussian_moments(sde):
    prior, mean, variance = anisotropic_gaussian(sde)
    result = ode_sample(prior, sde, (N_SAMPLES, 1, 4, 4), generator=torch.Generator().manual_seed(4),
                        progress=False)
    mean_error, variance_error = moment_errors(result.samples, mean, variance)
    assert mean_error < MEAN_TOLERANCE
    assert variance_error < VARIANCE_TOLERANCE
    assert 10 < result.nfe < 1000


def test_ode_is_the_inverse_of_the_likelihood_flow():
    """The ODE sampler started at the latent x(T) of the likelihood ODE returns x."""
    from scoreinv.likelihood import log_likelihood

    sde = VPSDE()
    prior, _, _ = anisotropic_gaussian(sde)
    x = prior.sample(6, torch.Generator().manual_seed(5)).double()
    latent = log_likelihood(prior, x, exact_divergence=True, eps=1e-3, progress=False).latent
    back = ode_sample(prior, sde, x.shape, x_init=latent, eps=1e-3, denoise=False, progress=False).samples
    assert torch.allclose(back, x, atol=1e-3)


@pytest.mark.parametrize("method, predictor, corrector", [("ode", "none", "none")] + [
    ("pc", predictor, corrector) for predictor in sorted(PREDICTORS) for corrector in sorted(CORRECTORS)
    if (predictor, corrector) != ("none", "none")])
def test_same_seed_same_samples(method, predictor, corrector):
    sde = VESDE(0.01, 50.0)
    prior, _, _ = anisotropic_gaussian(sde)
    options = {} if method == "ode" else {"predictor": predictor, "corrector": corrector}
    first = sample(prior, 8, method=method, steps=50, seed=7, progress=False, **options)
    second = sample(prior, 8, method=method, steps=50, seed=7, progress=False, **options)
    other = sample(prior, 8, method=method, steps=50, seed=8, progress=False, **options)
    assert first.shape == (8, 1, 4, 4)
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)


def test_bad_arguments_are_refused():
    sde = SubVPSDE()
    prior, _, _ = anisotropic_gaussian(sde)
    with pytest.raises(ValueError, match="ancestral predictor supports VESDE and VPSDE"):
        pc_sample(prior, sde, (2, 1, 4, 4), predictor="ancestral", progress=False)
    with pytest.raises(ValueError, match="unknown predictor 'heun'"):
        pc_sample(prior, sde, (2, 1, 4, 4), predictor="heun", progress=False)
    with pytest.raises(ValueError, match="unknown corrector"):
        pc_sample(prior, sde, (2, 1, 4, 4), corrector="hmc", progress=False)
    with pytest.raises(ValueError, match="snr must be > 0"):
        pc_sample(prior, sde, (2, 1, 4, 4), snr=0.0, progress=False)
    with pytest.raises(ValueError, match="unknown sampling method"):
        sample(prior, 2, method="ddim", progress=False)
    with pytest.raises(ValueError, match="pass sde="):
        sample(lambda x, t: -x, (2, 1, 4, 4), progress=False)
    with pytest.raises(ValueError, match="expected items of shape"):
        sample(prior, (2, 1, 8, 8), steps=5, progress=False)


def test_tweedie_denoising_is_exact_for_gaussian_data():
    """E[x0 | x_t] for Gaussian data is μ + s²/(s² + σ²)(x_t − μ) (VE, diagonal)."""
    sde = VESDE(0.01, 50.0)
    prior, mean, variance = anisotropic_gaussian(sde)
    x_t = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    t = torch.full((5,), 0.4)
    sigma2 = sde.marginal_std(t)[:, None, None, None] ** 2
    expected = mean + variance / (variance + sigma2) * (x_t - mean)
    assert torch.allclose(sde.tweedie(x_t, t, prior(x_t, t)), expected, atol=1e-5)
    assert math.isclose(sde.T, 1.0)
