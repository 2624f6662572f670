"""log_likelihood against the analytic Gaussian density; Hutchinson's estimator is unbiased."""

import math

import pytest
import torch

from scoreinv.gaussian import GaussianPrior
from scoreinv.likelihood import (
    bpd_offset,
    dequantize,
    divergence_exact,
    divergence_hutchinson,
    log_likelihood,
)
from scoreinv.sde import SubVPSDE, VESDE, VPSDE

SDES = [VESDE(0.01, 50.0), VPSDE(0.1, 20.0), SubVPSDE(0.1, 20.0)]


def correlated_gaussian(sde, dims=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    factor = torch.randn(dims, dims, generator=generator, dtype=torch.float64)
    covariance = factor @ factor.T / dims + 0.05 * torch.eye(dims, dtype=torch.float64)
    mean = torch.linspace(-0.5, 0.5, dims, dtype=torch.float64).reshape(1, 4, dims // 4)
    return GaussianPrior(sde, mean, covariance)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_exact_divergence_likelihood_equals_analytic_density(sde):
    prior = correlated_gaussian(sde)
    generator = torch.Generator().manual_seed(1)
    x = prior.sample(8, generator)
    result = log_likelihood(prior, x, exact_divergence=True, eps=1e-5, progress=False)
    analytic = prior.log_prob(x, torch.full((8,), 1e-5))
    per_dimension = (result.logp - analytic.double()).abs() / prior.dims
    assert per_dimension.max().item() < 0.005  # measured ≤ 0.0025 (float32 drift)
    assert result.divergence == "exact"
    assert result.nfe > 10
    # bits/dim is the stated transform of logp
    expected_bpd = -result.logp / (16 * math.log(2)) + 8.0
    assert torch.allclose(result.bpd, expected_bpd)
    assert result.offset == 8.0


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_ode_error_is_only_the_prior_mismatch(sde):
    """In float64 with tight tolerances, swapping the Gaussian prior N(0, prior_std² I) for the
    true p_T at the latent makes the result exact: the remaining error of the test above
    (≈ 1e-3 nats/dim) is the SDE's p_T ≠ prior, not the integration."""
    prior = correlated_gaussian(sde)
    x = prior.sample(4, torch.Generator().manual_seed(2)).double()
    result = log_likelihood(prior, x, exact_divergence=True, eps=1e-5, rtol=1e-7, atol=1e-7,
                            progress=False)
    true_prior_logp = prior.log_prob(result.latent, torch.ones(4, dtype=torch.float64))
    corrected = result.logp - result.prior_logp + true_prior_logp
    analytic = prior.log_prob(x, torch.full((4,), 1e-5, dtype=torch.float64))
    assert ((corrected - analytic).abs() / prior.dims).max().item() < 1e-6


def test_hutchinson_estimator_is_unbiased():
    """Mean of vᵀJv over many probes → tr J, for a non-symmetric Jacobian."""
    generator = torch.Generator().manual_seed(3)
    matrix = torch.randn(16, 16, generator=generator, dtype=torch.float64)
    x = torch.randn(1, 1, 4, 4, generator=generator, dtype=torch.float64).requires_grad_(True)

    def field(z):  # nonlinear, Jacobian diag(1 − tanh²(Az)) A
        return torch.tanh(z.flatten(1) @ matrix.T).reshape(z.shape)

    output = field(x)
    exact = divergence_exact(output, x).item()
    for probe_kind in ("rademacher", "gaussian"):
        draws = 20_000
        xs = x.detach().expand(draws, 1, 4, 4).clone().requires_grad_(True)
        if probe_kind == "gaussian":
            probe = torch.randn(xs.shape, generator=generator, dtype=xs.dtype)
        else:
            probe = 2.0 * torch.randint(0, 2, xs.shape, generator=generator).to(xs.dtype) - 1.0
        estimates = divergence_hutchinson(field(xs), xs, probe)
        standard_error = estimates.std().item() / math.sqrt(draws)
        assert abs(estimates.mean().item() - exact) < 4 * standard_error
    # and the exact trace is the trace of the Jacobian
    jacobian = torch.autograd.functional.jacobian(lambda z: field(z).flatten(), x.detach()).reshape(16, 16)
    assert math.isclose(exact, torch.trace(jacobian).item(), rel_tol=1e-10)


def test_hutchinson_likelihood_averages_to_exact():
    prior = correlated_gaussian(VPSDE())
    x = prior.sample(2, torch.Generator().manual_seed(4))
    exact = log_likelihood(prior, x, exact_divergence=True, progress=False).logp
    estimates = torch.stack([
        log_likelihood(prior, x, probe="rademacher", generator=torch.Generator().manual_seed(s),
                       progress=False).logp
        for s in range(40)
    ])
    standard_error = estimates.std(0) / math.sqrt(len(estimates))
    assert ((estimates.mean(0) - exact).abs() < 4 * standard_error + 1e-3).all()


def test_bpd_offsets_and_dequantization():
    assert bpd_offset(256, (0.0, 1.0)) == 8.0
    assert bpd_offset(256, (-1.0, 1.0)) == 7.0
    x = torch.arange(256, dtype=torch.float64).reshape(1, 1, 16, 16) / 255
    u = dequantize(x, 256, (0.0, 1.0), generator=torch.Generator().manual_seed(0))
    bins = torch.floor(u * 256)
    assert torch.equal(bins, torch.arange(256, dtype=torch.float64).reshape(1, 1, 16, 16))
    with pytest.raises(ValueError, match="low < high"):
        bpd_offset(256, (1.0, 0.0))


def test_bad_input_is_refused():
    prior = correlated_gaussian(VESDE())
    with pytest.raises(ValueError, match="NaN or inf"):
        log_likelihood(prior, torch.full((1, 1, 4, 4), float("nan")), progress=False)
    with pytest.raises(ValueError, match="expected items of shape"):
        log_likelihood(prior, torch.zeros(1, 1, 8, 8), progress=False)
    with pytest.raises(ValueError, match="floating-point tensor"):
        log_likelihood(prior, torch.zeros(1, 1, 4, 4, dtype=torch.int64), progress=False)
