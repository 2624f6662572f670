"""SDEs against their closed forms."""

import math

import pytest
import torch

from scoreinv.config import SDEConfig
from scoreinv.gaussian import GaussianPrior
from scoreinv.sde import SubVPSDE, VESDE, VPSDE

SDES = [VESDE(0.01, 5.0), VPSDE(0.1, 20.0), SubVPSDE(0.1, 20.0)]


def gaussian_data(sde):
    mean = torch.tensor([0.5, -0.3, 0.1, 0.8]).reshape(1, 2, 2)
    variance = torch.tensor([0.04, 0.25, 0.5, 1.0]).reshape(1, 2, 2)
    return GaussianPrior(sde, mean, variance)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_euler_maruyama_forward_matches_marginal_prob(sde):
    """Simulate dx = f dt + g dw from Gaussian data; mean and variance at t must match
    m(t) μ and m(t)² s² + std(t)² (VE starts from data * N(0, σ_min²), see sde.py)."""
    data = gaussian_data(sde)
    generator = torch.Generator().manual_seed(0)
    n, steps = 20_000, 1000
    x = data.sample(n, generator).double()
    if isinstance(sde, VESDE):
        x = x + sde.sigma_min * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    dt = sde.T / steps
    checkpoints = {500: 0.5, 1000: 1.0}
    for k in range(1, steps + 1):
        t = torch.full((n,), (k - 1) * dt, dtype=x.dtype)
        drift, diffusion = sde.sde(x, t)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + drift * dt + diffusion[:, None, None, None] * math.sqrt(dt) * noise
        if k in checkpoints:
            t_check = torch.full((1,), checkpoints[k], dtype=x.dtype)
            mean, std = sde.marginal_prob(data.mean[None].double(), t_check)
            m = sde.mean_coefficient(t_check)
            variance = m**2 * data.eigenvalues.reshape(data.item_shape) + std**2
            scale = variance.sqrt()
            # 5 standard errors of the empirical mean; 4% on the variance (n = 20k: 1% s.e.),
            # plus the O(dt) Euler–Maruyama bias.
            assert ((x.mean(0) - mean[0]).abs() / scale).max() < 5 / math.sqrt(n) + 0.01
            assert ((x.var(0) / variance) - 1).abs().max() < 0.04


def test_marginal_std_formulas():
    t = torch.tensor([0.0, 0.3, 1.0])
    ve = VESDE(0.01, 50.0)
    assert torch.allclose(ve.marginal_std(t), 0.01 * (5000.0**t))
    vp = VPSDE(0.1, 20.0)
    integral = 0.1 * t + 0.5 * 19.9 * t**2
    assert torch.allclose(vp.mean_coefficient(t), torch.exp(-0.5 * integral))
    assert torch.allclose(vp.marginal_std(t) ** 2, 1 - torch.exp(-integral), atol=1e-7)
    sub = SubVPSDE(0.1, 20.0)
    assert torch.allclose(sub.marginal_std(t), 1 - torch.exp(-integral), atol=1e-7)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_diffusion_is_derivative_of_variance(sde):
    """For dx = −½β x dt + g dw (or f = 0), d var/dt = 2 (f-coefficient) var + g²: check by finite differences."""
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    h = 1e-5
    var = lambda s: sde.marginal_std(s) ** 2  # noqa: E731
    dvar = (var(t + h) - var(t - h)) / (2 * h)
    x = torch.ones(len(t), 1, dtype=torch.float64)
    drift, g = sde.sde(x, t)
    linear = drift[:, 0]  # f(x=1, t) is the coefficient of x
    assert torch.allclose(dvar, 2 * linear * var(t) + g**2, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_prior_sampling_and_logp(sde):
    generator = torch.Generator().manual_seed(3)
    z = sde.prior_sampling((4000, 1, 2, 2), generator=generator)
    assert z.shape == (4000, 1, 2, 2)
    assert abs(z.std().item() / sde.prior_std - 1) < 0.03
    again = sde.prior_sampling((4000, 1, 2, 2), generator=torch.Generator().manual_seed(3))
    assert torch.equal(z, again)
    expected = torch.distributions.Normal(0.0, sde.prior_std).log_prob(z).flatten(1).sum(1)
    assert torch.allclose(sde.prior_logp(z), expected, rtol=1e-5)


def test_discretize_matches_marginals():
    """The exact chains compose: running the VP DDPM chain forward over [0, 1] gives the VP marginal."""
    sde = VPSDE(0.1, 20.0)
    n, steps = 20_000, 200
    generator = torch.Generator().manual_seed(1)
    x = torch.full((n, 1), 2.0, dtype=torch.float64)
    for k in range(1, steps + 1):
        t = torch.full((n,), k / steps, dtype=torch.float64)
        f, G = sde.discretize(x, t, 1 / steps)
        x = x + f + G[:, None] * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    t1 = torch.ones(1, dtype=torch.float64)
    assert abs(x.mean().item() - 2 * sde.mean_coefficient(t1).item()) < 0.03
    assert abs(x.var().item() / sde.marginal_std(t1).item() ** 2 - 1) < 0.03


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="beta_min < beta_max"):
        VPSDE(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="finite"):
        VESDE(sigma_min=0.01, sigma_max=float("inf"))
    with pytest.raises(ValueError, match="sigma_min"):
        SDEConfig(kind="ve", sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="t must have shape"):
        VESDE().sde(torch.zeros(3, 1, 2, 2), torch.zeros(2))


# --- constructor contracts, defaults and edge cases (each pinned by a surviving mutant) ---------

def test_documented_defaults_and_the_smallest_valid_parameters():
    ve, vp, subvp = VESDE(), VPSDE(), SubVPSDE()
    assert (ve.sigma_min, ve.sigma_max, ve.N) == (0.01, 50.0, 1000)
    assert (vp.beta_min, vp.beta_max, vp.N) == (0.1, 20.0, 1000)
    assert (subvp.beta_min, subvp.beta_max, subvp.N) == (0.1, 20.0, 1000)
    assert VESDE(N=1).N == 1 and VPSDE(0.0, 1.0).beta_min == 0.0  # the boundaries are allowed


@pytest.mark.parametrize("build, message", [
    (lambda: VESDE(N=0), r"N \(number of discretisation steps\) must be >= 1, got 0"),
    (lambda: VESDE(0.0, 1.0), r"VESDE needs 0 < sigma_min < sigma_max, got sigma_min=0.0, sigma_max=1.0"),
    (lambda: VESDE(2.0, 1.0), r"VESDE needs 0 < sigma_min < sigma_max"),
    (lambda: VESDE(1.0, 1.0), r"VESDE needs 0 < sigma_min < sigma_max"),
    (lambda: VESDE(float("nan"), 1.0), r"sigma_min and sigma_max must be finite, got nan, 1.0"),
    (lambda: VESDE(0.01, float("inf")), r"sigma_min and sigma_max must be finite"),
    (lambda: VPSDE(float("nan"), 20.0), r"beta_min and beta_max must be finite, got nan, 20.0"),
    (lambda: VPSDE(0.1, float("inf")), r"beta_min and beta_max must be finite"),
    (lambda: VPSDE(-0.1, 20.0), r"VPSDE needs 0 <= beta_min < beta_max, got beta_min=-0.1, beta_max=20.0"),
    (lambda: SubVPSDE(5.0, 5.0), r"SubVPSDE needs 0 <= beta_min < beta_max"),
])
def test_invalid_parameters_are_refused_with_a_message(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_discretize_defaults_to_a_step_of_t_over_n(sde):
    x = torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(2, 1, 2, 2)
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    for default, explicit in zip(sde.discretize(x, t), sde.discretize(x, t, sde.T / sde.N)):
        assert torch.equal(default, explicit)
    assert not torch.allclose(sde.discretize(x, t)[1], sde.discretize(x, t, 0.5)[1])


def test_prior_logp_of_a_single_item_batch():
    sde = VESDE(0.01, 3.0)
    z = torch.tensor([[[[0.5, -1.0], [2.0, 0.0]]]], dtype=torch.float64)  # (1, 1, 2, 2)
    expected = -2 * math.log(2 * math.pi * 9.0) - (0.25 + 1.0 + 4.0) / 18.0
    assert sde.prior_logp(z).tolist() == pytest.approx([expected], rel=1e-12)


def test_probability_flow_has_a_zero_diffusion_tensor():
    sde = VPSDE()
    x = torch.ones(2, 1, 2, 2)
    t = torch.tensor([0.5, 0.5])
    drift, diffusion = sde.reverse(lambda x, t: -x, probability_flow=True).sde(x, t)
    assert isinstance(diffusion, torch.Tensor) and torch.equal(diffusion, torch.zeros(2))


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_time_at_noise_level_is_float64_precise_for_float32_input(sde):
    sigma = torch.tensor([0.05, 0.3, 1.7], dtype=torch.float32)
    t = sde.time_at_noise_level(sigma)
    assert t.dtype == torch.float64
    torch.testing.assert_close(sde.noise_level(t), sigma.double(), rtol=1e-12, atol=0)


def test_repr_names_the_parameters():
    assert repr(VESDE(0.01, 5.0, N=10)) == "VESDE(sigma_min=0.01, sigma_max=5.0, N=10)"
    assert repr(VPSDE()) == "VPSDE(beta_min=0.1, beta_max=20.0, N=1000)"
    assert repr(SubVPSDE(0.2, 10.0, N=7)) == "SubVPSDE(beta_min=0.2, beta_max=10.0, N=7)"


def test_ve_first_step_ends_at_zero_noise():
    """The SMLD chain: the step that ends at t = 0 has σ_prev = 0, so its G = σ(dt)."""
    sde = VESDE(0.01, 5.0, N=10)
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    t = torch.tensor([0.1], dtype=torch.float64)
    _, g = sde.discretize(x, t)
    assert float(g[0]) == pytest.approx(float(sde.sigma(t)[0]), rel=1e-12)


@pytest.mark.parametrize("flow", [False, True])
def test_reverse_discretize_is_the_forward_step_with_the_score_term(flow):
    """rev_f = f_i − c G_i² s (c = 1, or ½ for the probability flow) and rev_G = G_i (0 for the flow)."""
    sde = VESDE(0.01, 5.0, N=10)
    x = torch.linspace(-1, 1, 4, dtype=torch.float64).reshape(1, 1, 2, 2)
    t = torch.tensor([0.5], dtype=torch.float64)

    def score(x, t):
        return -2 * x

    f, g = sde.discretize(x, t)
    rev_f, rev_g = sde.reverse(score, probability_flow=flow).discretize(x, t)
    weight = 0.5 if flow else 1.0
    torch.testing.assert_close(rev_f, f - g[0] ** 2 * score(x, t) * weight, rtol=1e-12, atol=0)
    assert isinstance(rev_g, torch.Tensor)
    assert torch.equal(rev_g, torch.zeros_like(g) if flow else g)


def test_prior_sampling_draws_in_the_requested_dtype_from_the_generator():
    sde = VESDE(0.01, 3.0)
    z = sde.prior_sampling((2, 1, 2, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    assert z.dtype == torch.float64
    expected = 3.0 * torch.randn((2, 1, 2, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(z, expected)


def test_a_time_of_the_wrong_shape_is_refused_naming_the_batch():
    with pytest.raises(ValueError, match=r"t must have shape \(B,\) = \(2,\) to match x of shape \(2, 1, 2, 2\), "
                                         r"got \(3,\)"):
        VESDE().sde(torch.zeros(2, 1, 2, 2), torch.zeros(3))
