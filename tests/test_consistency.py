"""The consistency step's noise-aware gain and FBP windows, checked against their formulas."""

import pytest
import torch

from scoreinv.operators import MaskOp, RadonOp
from scoreinv.sde import VESDE
from scoreinv.solvers import MeasurementConsistency


def noisy_mask(noise_std):
    return MaskOp(image_size=8, boxes=[(0, 0, 4, 8)], noise_std=noise_std)


@pytest.mark.parametrize("kappa", [0.5, 1.0, 2.0])
def test_noise_aware_gain_is_the_kalman_gain_in_measurement_space(kappa):
    sde = VESDE(0.01, 10.0)
    operator = noisy_mask(0.5)
    y = operator.simulate(torch.rand(3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    step = MeasurementConsistency(sde, operator, y, weight=0.8, noise_weight=kappa)
    # A mask's rows are unit vectors: c = E‖Az‖²/M = 1, estimated from 8 probes.
    assert step.row_norm == pytest.approx(1.0, rel=0.15)
    t = torch.full((3,), 0.3)
    std = float(sde.marginal_std(t)[0])
    x = torch.zeros(3, 1, 8, 8)
    moved = step.project(x, t, torch.Generator().manual_seed(1))
    target = y + std * operator(torch.randn(x.shape, generator=torch.Generator().manual_seed(1)))
    signal = std**2 * step.row_norm
    gain = 0.8 * signal / (signal + kappa**2 * 0.5**2)
    assert torch.allclose(operator(moved), gain * target, atol=1e-6)
    assert torch.equal(moved[:, :, :4], x[:, :, :4])  # the box is missing: its pixels are untouched


def test_noise_weight_zero_or_noise_free_data_is_the_plain_step():
    sde = VESDE(0.01, 10.0)
    t = torch.full((2,), 0.1)
    x = torch.rand(2, 1, 8, 8)
    for operator, kappa in ((noisy_mask(0.5), 0.0), (noisy_mask(0.0), 1.0)):
        y = operator(torch.rand(2, 1, 8, 8))
        plain = MeasurementConsistency(sde, operator, y, weight=0.7)
        aware = MeasurementConsistency(sde, operator, y, weight=0.7, noise_weight=kappa)
        assert torch.equal(plain.project(x, t, torch.Generator().manual_seed(3)),
                           aware.project(x, t, torch.Generator().manual_seed(3)))


def test_gain_falls_as_the_diffusion_noise_falls_below_the_measurement_noise():
    sde = VESDE(0.01, 10.0)
    operator = RadonOp(8, image_size=16, noise_std=0.5)
    y = operator.simulate(torch.rand(1, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    plain = MeasurementConsistency(sde, operator, y, weight=1.0)
    aware = MeasurementConsistency(sde, operator, y, weight=1.0, noise_weight=1.0)
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    gains = []
    for time in (0.9, 0.3, 0.01):
        t = torch.tensor([time])
        # The step is linear in its weight: the aware update is the plain one times the gain.
        full = plain.project(x, t, torch.Generator().manual_seed(3)) - x
        scaled = aware.project(x, t, torch.Generator().manual_seed(3)) - x
        gain = float((scaled * full).sum() / (full * full).sum())
        assert torch.allclose(scaled, gain * full, atol=1e-5 * float(full.abs().max()))
        std = float(sde.marginal_std(t)[0])
        signal = std**2 * aware.row_norm
        assert gain == pytest.approx(signal / (signal + 0.5**2), rel=1e-4)
        gains.append(gain)
    assert gains[0] > 0.99 and gains[0] > gains[1] > gains[2] and gains[2] < 0.1


def test_bad_noise_weight_is_refused():
    operator = noisy_mask(0.5)
    with pytest.raises(ValueError, match="noise_weight"):
        MeasurementConsistency(VESDE(), operator, torch.zeros(1, 1, 8, 8)[:, :, :4], noise_weight=-1.0)
