"""EDM preconditioning and log-normal noise levels (Karras et al. 2022) against their algebra."""

import math

import pytest
import torch

from scoreinv.config import ModelConfig, SDEConfig, UNetConfig
from scoreinv.losses import dsm_draws, dsm_loss
from scoreinv.models import ScoreModel
from scoreinv.sde import SubVPSDE, VESDE, VPSDE

SDES = {"ve": VESDE(0.01, 50.0), "vp": VPSDE(0.1, 20.0), "subvp": SubVPSDE(0.1, 20.0)}


@pytest.mark.parametrize("kind", sorted(SDES))
def test_time_at_noise_level_inverts_noise_level(kind):
    sde = SDES[kind]
    t = torch.linspace(0.02, 1.0, 50, dtype=torch.float64)
    assert torch.allclose(sde.time_at_noise_level(sde.noise_level(t)), t, atol=1e-9)


@pytest.mark.parametrize("kind", ["ve", "vp"])
def test_an_edm_model_whose_network_knows_x0_gives_the_kernel_score(kind):
    """If F returns (x0 − c_skip x̃)/c_out, D = x0 and the score must be −(x − m x0)/std²: this
    fails for any wrong c_skip, c_out, c_in or Tweedie step."""
    sigma_data = 0.3
    config = ModelConfig(sde=SDEConfig(kind=kind), preconditioning="edm", sigma_data=sigma_data,
                         unet=UNetConfig(image_size=8, base_channels=8, channel_multipliers=(1,), num_res_blocks=1))
    model = ScoreModel(config, seed=0)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 1, 8, 8, generator=generator)
    t = torch.tensor([0.05, 0.4, 0.9])
    mean, std = model.sde.marginal_prob(x0, t)
    x = mean + std[:, None, None, None] * torch.randn(x0.shape, generator=generator)
    sigma = (model.sde.noise_level(t))[:, None, None, None]
    c_in = (sigma**2 + sigma_data**2).rsqrt()

    def oracle(scaled_input, c_noise):
        assert torch.allclose(c_noise, sigma.flatten().log() / 4)
        scaled = scaled_input / c_in  # x̃ = x / m
        c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
        c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
        return (x0 - c_skip * scaled) / c_out

    model.unet.forward = oracle  # the network replaced by an oracle
    expected = -(x - mean) / std[:, None, None, None] ** 2
    assert torch.allclose(model(x, t), expected, rtol=1e-4, atol=1e-4)


def test_lognormal_noise_levels_have_the_stated_law():
    sde = VESDE(0.001, 1000.0)  # wide enough that clamping touches almost no draw
    like = torch.zeros(1)
    t, z = dsm_draws(sde, (20000, 1, 2, 2), torch.Generator().manual_seed(1), like, eps=1e-5,
                     noise_sampling="lognormal", lognormal=(-1.2, 1.2))
    log_sigma = sde.noise_level(t.double()).log()
    assert abs(log_sigma.mean().item() + 1.2) < 0.03
    assert abs(log_sigma.std().item() - 1.2) < 0.03
    assert z.shape == (20000, 1, 2, 2)
    with pytest.raises(ValueError, match="noise_sampling"):
        dsm_draws(sde, (2, 1, 2, 2), None, like, noise_sampling="cosine")


def test_edm_weighting_is_the_std2_loss_times_sigma_factor():
    sde = VPSDE(0.1, 20.0)
    x0 = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    t, z = dsm_draws(sde, tuple(x0.shape), torch.Generator().manual_seed(3), x0)

    def score(x, time):
        return -x  # any score will do

    plain = dsm_loss(score, sde, x0, weighting="std2", draws=(t, z))
    weighted = dsm_loss(score, sde, x0, weighting="edm", draws=(t, z), sigma_data=0.4)
    sigma = float(sde.noise_level(t)[0])
    assert math.isclose(float(weighted), float(plain) * (sigma**2 + 0.16) / 0.16, rel_tol=1e-5)
