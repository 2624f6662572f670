"""The coarse start: a CT scan's coarse view, and the decomposed sampler begun from a coarse image."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import OPERATOR_CASES
from scoreinv.operators import FanBeamOp, RadonOp
from scoreinv.operators.base import coarse_sinogram
from scoreinv.sde import VESDE
from scoreinv.solvers.decomposed import Decomposed, DecomposedConsistency, DecomposedSettings

COARSE_CASES = [case for case in OPERATOR_CASES if "coarse-view" in case.operator.capabilities]


def _step_profile_mean(values: np.ndarray, left: float, right: float, samples: int = 200_000) -> float:
    """Mean over [left, right] of the profile that is values[i] on cell [i, i + 1) and 0 elsewhere,
    by dense midpoint sampling (an independent check of the exact binning)."""
    u = left + (np.arange(samples) + 0.5) * (right - left) / samples
    cell = np.floor(u).astype(int)
    inside = (cell >= 0) & (cell < len(values))
    return float(np.where(inside, values[np.clip(cell, 0, len(values) - 1)], 0.0).mean())


def test_binning_a_linear_profile_is_exact():
    # 12 cells, values a + b·u at their centres u_i = i − 5.5; cells of 3 are aligned with them, so each
    # coarse mean is a + b·c_j (c_j = (j − 1.5)·3), then divided by the ratio 3
    u = torch.arange(12, dtype=torch.float64) - 5.5
    y = (2.0 + 0.5 * u).reshape(1, 1, 1, 12)
    coarse = coarse_sinogram(y, 3.0, 4)
    centres = (torch.arange(4, dtype=torch.float64) - 1.5) * 3
    torch.testing.assert_close(coarse[0, 0, 0], (2.0 + 0.5 * centres) / 3, rtol=0, atol=1e-12)


@pytest.mark.parametrize("ratio, count", [(2.5, 5), (4.0, 4), (1.7, 9)])
def test_binning_agrees_with_dense_sampling(ratio, count):
    values = np.random.default_rng(1).normal(size=13)
    coarse = coarse_sinogram(torch.tensor(values).reshape(1, 13), ratio, count)[0]
    for j in range(count):
        centre = (j - (count - 1) / 2) * ratio + 13 / 2  # in cells from the first cell's left edge
        expected = _step_profile_mean(values, centre - ratio / 2, centre + ratio / 2) / ratio
        assert float(coarse[j]) == pytest.approx(expected, abs=1e-4)


def test_binning_refuses_a_finer_view():
    with pytest.raises(ValueError, match="ratio >= 1"):
        coarse_sinogram(torch.ones(1, 8), 0.5, 16)


@pytest.mark.parametrize("case", COARSE_CASES, ids=[case.name for case in COARSE_CASES])
def test_the_coarse_view_sees_a_smooth_image_as_the_coarse_operator_does(case):
    operator = case.operator
    size = operator.in_shape[-1]
    if size % 2:
        pytest.skip("an odd size has no image constant on the pixels of half its size")
    coarse_size = size // 2
    coarse = operator.coarsened(coarse_size)
    assert tuple(coarse.in_shape) == (1, coarse_size, coarse_size)
    assert coarse.out_shape[:2] == operator.out_shape[:2] and type(coarse) is type(operator)
    assert coarse.out_shape[-1] == math.ceil(operator.out_shape[-1] / 2)
    assert coarse.noise_std == 0.0 and coarse.coarsened(coarse_size // 2).in_shape[-1] == coarse_size // 2
    grid = (torch.arange(coarse_size, dtype=torch.float32) + 0.5) / coarse_size - 0.5
    bump = torch.exp(-((grid[:, None] - 0.1) ** 2 + (grid[None, :] + 0.05) ** 2) / 0.1).reshape(1, 1, coarse_size,
                                                                                                  coarse_size)
    fine = F.interpolate(bump, scale_factor=2, mode="nearest")  # constant on each coarse pixel
    binned = operator.coarse_measurement(operator(fine), coarse)
    expected = coarse(bump)
    # 2–4.5% at these few-pixel sizes (the projectors discretise differently); a wrong scale or shift: 40–98%
    assert float((binned - expected).norm() / expected.norm()) < 0.05


def test_the_coarse_geometry_scales_lengths_and_keeps_the_views():
    fan = FanBeamOp(9, 32, source_distance=64, detector_distance=40, noise_std=0.5)
    coarse = fan.coarsened(8, noise_std=0.1)
    assert (coarse.source_distance, coarse.detector_distance) == (16.0, 10.0)
    assert coarse.detector_spacing == fan.detector_spacing and coarse.noise_std == 0.1
    torch.testing.assert_close(coarse.angles, fan.angles)
    arc = RadonOp(angles=np.linspace(0, 2.0, 30, endpoint=False), image_size=40, detector_spacing=1.5)
    coarse_arc = arc.coarsened(10)
    torch.testing.assert_close(coarse_arc.measured_angles, arc.measured_angles)
    assert coarse_arc.detector_spacing == 1.5 and coarse_arc.n_detectors == math.ceil(arc.n_detectors / 4)


def test_a_coarse_view_needs_a_smaller_size_and_a_sized_operator():
    operator = RadonOp(8, 16)
    for bad in (0, 17, 8.0, True):
        with pytest.raises(ValueError, match="image size from 1 to 16"):
            operator.coarsened(bad)
    with pytest.raises(ValueError):
        RadonOp(8).coarsened(4)
    with pytest.raises(ValueError, match="shape"):
        operator.coarse_measurement(torch.zeros(1, 1, 8, 5), operator.coarsened(8))


def test_coarse_settings_are_filled_only_for_a_coarse_start():
    coarse = DecomposedSettings(steps=10, start_noise_level=0.3, start_estimate="coarse")
    assert (coarse.start_iterations, coarse.coarse_size, coarse.coarse_noise) == (30, 64, 0.01)
    data = DecomposedSettings(steps=10, start_noise_level=0.3)
    assert (data.start_estimate, data.coarse_size, data.coarse_noise) == ("data", None, None)
    assert DecomposedSettings(steps=10).start_estimate is None
    with pytest.raises(ValueError, match="start_estimate is read only with start_noise_level"):
        DecomposedSettings(steps=10, start_estimate="coarse")
    with pytest.raises(ValueError, match="coarse_size is read only with start_estimate='coarse'"):
        DecomposedSettings(steps=10, start_noise_level=0.3, coarse_size=32)
    with pytest.raises(ValueError, match="coarse_noise is read only"):
        DecomposedSettings(steps=10, coarse_noise=0.1)


def test_the_start_noises_the_given_image_when_no_iterations_run():
    sde = VESDE(0.01, 20.0)
    operator = RadonOp(6, 8)
    y = torch.zeros(2, 1, 6, operator.out_shape[-1])
    conditioning = DecomposedConsistency(sde, operator, y, 7, 0.0, 1e-5)
    settings = DecomposedSettings(steps=10, start_noise_level=0.5, start_estimate="coarse", start_iterations=0)
    image = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    start_time, state = Decomposed.start(sde, conditioning, (2, 1, 8, 8), settings,
                                         torch.Generator().manual_seed(5), y, image)
    z = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    assert float(sde.noise_level(torch.tensor([start_time], dtype=torch.float64))) == pytest.approx(0.5)
    torch.testing.assert_close(state, image + 0.5 * z)  # VE: a_t = 1
    with pytest.raises(ValueError, match="start image has shape"):
        Decomposed.start(sde, conditioning, (2, 1, 8, 8), settings, None, y, image[:1])


def test_a_start_image_goes_with_a_coarse_start_only():
    sde = VESDE(0.01, 20.0)
    operator = RadonOp(6, 8)
    y = torch.zeros(1, 1, 6, operator.out_shape[-1])

    def score(x, t):
        return -x

    image = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="read only with start_estimate='coarse'"):
        Decomposed().sample(score, sde, operator, y, DecomposedSettings(start_noise_level=0.3, steps=5),
                            start_image=image, progress=False)
    with pytest.raises(ValueError, match="needs the coarse start image"):
        Decomposed().sample(score, sde, operator, y,
                            DecomposedSettings(start_noise_level=0.3, start_estimate="coarse", steps=5), progress=False)


@pytest.mark.slow
def test_posterior_starts_a_limited_arc_from_the_bundled_coarse_prior():
    from scoreinv.datasets import phantoms
    from scoreinv.metrics import psnr
    from scoreinv.reconstruct import posterior

    truth = phantoms("anatomy", 1, 128, seed=5_000_001)
    operator = RadonOp(angles=np.linspace(0, 2 * math.pi / 3, 60, endpoint=False), image_size=128)
    y = operator(truth)
    common = dict(steps=10, num_samples=1, start_noise_level=0.3, progress=False, seed=4)
    coarse = posterior(y, operator, start_estimate="coarse", **common)
    again = posterior(y, operator, start_estimate="coarse", **common)
    data = posterior(y, operator, start_estimate="data", **common)
    torch.testing.assert_close(coarse.mean, again.mean, rtol=0, atol=0)
    assert coarse.settings["coarse_prior"] == "ct-anatomy" and coarse.settings["start_estimate"] == "coarse"
    assert data.settings["start_estimate"] == "data" and "coarse_prior" not in data.settings
    # the whole-image prior fills the missing 60° wedge that a CG start leaves empty
    gain = psnr(coarse.mean.clamp(0, 1), truth).mean() - psnr(data.mean.clamp(0, 1), truth).mean()
    assert gain > 1.0, gain


def test_a_coarse_start_names_what_it_cannot_do():
    from scoreinv.config import ReconstructionSettings
    from scoreinv.multiscale import coarse_start_image
    from scoreinv.operators import MaskOp

    settings = ReconstructionSettings(method="decomposed", steps=10, start_noise_level=0.3, start_estimate="coarse",
                                      coarse_size=64, coarse_noise=0.01)
    with pytest.raises(ValueError, match="needs an operator with a coarse view"):
        coarse_start_image(torch.zeros(1, 1, 8, 8), MaskOp(image_size=8, fraction=0.5), settings)
    operator = RadonOp(6, 64)
    with pytest.raises(ValueError, match=r"coarse_size \(64\) must be smaller than the image \(64×64\)"):
        coarse_start_image(torch.zeros(1, *operator.out_shape), operator, settings)
