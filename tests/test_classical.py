"""Classical baselines and metrics."""

import math

import numpy as np
import pytest
import torch

from scoreinv.classical import _divergence, _gradient, sirt, tv_reconstruction
from scoreinv.datasets.phantoms import phantoms
from scoreinv.metrics import psnr, ssim
from scoreinv.operators import RadonOp


def test_divergence_is_minus_the_adjoint_of_the_gradient():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 9, 7, generator=generator, dtype=torch.float64)
    p = torch.randn(2, 1, 2, 9, 7, generator=generator, dtype=torch.float64)
    assert math.isclose((_gradient(x) * p).sum().item(), -(x * _divergence(p)).sum().item(), rel_tol=1e-12)


@pytest.fixture(scope="module")
def sparse_view_problem():
    x = phantoms("ellipses", 2, 32, seed=10**6)
    operator = RadonOp(12, image_size=32)
    return x, operator, operator(x)


def test_sirt_and_tv_beat_fbp_on_sparse_views(sparse_view_problem):
    x, operator, y = sparse_view_problem
    fbp = psnr(operator.pinv(y).clamp(0, 1), x)
    sirt_psnr = psnr(sirt(operator, y, iterations=200).clamp(0, 1), x)
    tv_psnr = psnr(tv_reconstruction(operator, y, weight=0.01, iterations=300).clamp(0, 1), x)
    assert (sirt_psnr > fbp + 3).all()
    assert (tv_psnr > sirt_psnr + 3).all()  # piecewise-constant phantoms: TV's home ground


def test_sirt_fits_the_data_and_is_non_negative(sparse_view_problem):
    x, operator, y = sparse_view_problem
    estimate = sirt(operator, y, iterations=300)
    assert estimate.min() >= 0
    assert (operator(estimate) - y).norm() < 0.1 * y.norm()
    with pytest.raises(ValueError, match="sinograms must be"):
        sirt(operator, y[..., :-1])


def test_tv_with_zero_weight_is_non_negative_least_squares(sparse_view_problem):
    x, operator, y = sparse_view_problem
    estimate = tv_reconstruction(operator, y, weight=0.0, iterations=400)
    assert (operator(estimate) - y).norm() < 0.05 * y.norm()


def test_metrics_match_their_formulas():
    reference = np.zeros((2, 1, 16, 16))
    estimate = reference + 0.1
    assert np.allclose(psnr(estimate, reference), 20.0)  # 10 log10(1 / 0.01)
    assert np.allclose(psnr(estimate, reference, data_range=2.0), 10 * math.log10(4 / 0.01))
    assert np.allclose(ssim(reference + 0.3, reference + 0.3), 1.0)
    assert ssim(estimate + np.random.default_rng(0).normal(0, 0.2, estimate.shape), reference).max() < 0.5
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(estimate[:, :, :8], reference)
