"""The numerical core against references that do not share its code.

Each test here pins a quantity that a realistic one-line bug changes by less than the
tolerance of the end-to-end tests: a CG iterate at small K, the decomposed sampler's damping
δ_t, the FBP filter's padded length. The references are computed independently (a Krylov
least-squares problem, the formula written out, a direct convolution), never with the
function under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scoreinv.operators import RadonOp, least_squares, ramp_filter
from scoreinv.operators.fbp import filter_sinogram
from scoreinv.sde import VESDE, VPSDE
from scoreinv.solvers.decomposed import DecomposedConsistency


def dense(op) -> torch.Tensor:
    """A as a (out_dim, in_dim) float64 matrix, column j = A e_j."""
    n = math.prod(op.in_shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *op.in_shape)
    return op(basis).reshape(n, -1).T


# --- CGLS: the K-th iterate is the minimiser over the K-dimensional Krylov space ---------------

def krylov_iterate(a: torch.Tensor, y: torch.Tensor, x0: torch.Tensor, k: int, damping: float) -> torch.Tensor:
    """The K-th CG iterate on (AᵀA + δI) x = Aᵀy from x0, by its defining property.

    CG on a symmetric positive definite system M x = b started at x0 returns after K steps
    x0 + V c, with V spanning the Krylov space {r, M r, ..., M^(K−1) r} (r = b − M x0) and c
    minimising the M-norm error, i.e. minimising ½ xᵀM x − bᵀx; for M = AᵀA + δI that is
    ‖A x − y‖² + δ‖x‖². A small dense least-squares problem, solved without any CG.
    """
    m = a.T @ a + damping * torch.eye(a.shape[1], dtype=a.dtype)
    r = a.T @ y - m @ x0
    columns = [r]
    for _ in range(k - 1):
        columns.append(m @ columns[-1])
    v = torch.stack(columns, dim=1)
    v, _ = torch.linalg.qr(v)  # an orthonormal basis of the same space, better conditioned
    c = torch.linalg.solve(v.T @ m @ v, v.T @ r)
    return x0 + v @ c


@pytest.mark.parametrize("damping", [0.0, 0.7])
@pytest.mark.parametrize("warm", [False, True])
def test_cgls_iterates_at_k_1_2_3_match_the_krylov_minimiser(damping, warm):
    """K = 1, 2, 3 iterations give exactly the K-th Krylov minimiser (float64, to 1e-10): an
    iteration fewer or more, a wrong step size or a wrong direction update all move it."""
    op = RadonOp(3, 6)
    a = dense(op)
    g = torch.Generator().manual_seed(1)
    y = torch.rand(1, *op.out_shape, generator=g, dtype=torch.float64)
    x0 = torch.rand(1, *op.in_shape, generator=g, dtype=torch.float64) if warm else None
    start = x0.reshape(-1) if warm else torch.zeros(a.shape[1], dtype=torch.float64)
    previous = None
    for k in (1, 2, 3):
        expected = krylov_iterate(a, y.reshape(-1), start, k, damping)
        got = least_squares(op, y, x0=x0, iterations=k, damping=damping).reshape(-1)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
        if previous is not None:  # each iterate is a different point: K − 1 would not pass
            assert (got - previous).abs().max() > 1e-3
        previous = got


def test_cgls_first_iterate_by_hand():
    """K = 1 from zero: x₁ = α s with s = Aᵀy and α = ‖s‖² / (‖A s‖² + δ‖s‖²), written out."""
    op = RadonOp(3, 6)
    a = dense(op)
    y = torch.linspace(0.1, 1.0, math.prod(op.out_shape), dtype=torch.float64)
    for damping in (0.0, 2.0):
        s = a.T @ y
        alpha = (s @ s) / ((a @ s) @ (a @ s) + damping * (s @ s))
        got = least_squares(op, y.reshape(1, *op.out_shape), iterations=1, damping=damping).reshape(-1)
        torch.testing.assert_close(got, alpha * s, rtol=0, atol=1e-12)
    assert torch.equal(least_squares(op, y.reshape(1, *op.out_shape), iterations=0),
                       torch.zeros(1, *op.in_shape, dtype=torch.float64))


# --- the decomposed sampler's damping δ_t = w σ_y² / σ_t² ------------------------------------------

@pytest.mark.parametrize("sde", [VESDE(0.01, 10.0), VPSDE()], ids=["ve", "vp"])
def test_decomposed_damping_is_w_sigma_y_squared_over_sigma_t_squared(sde):
    """δ_t in image units: σ_t = std(t)/m(t) (the noise of x_t/m(t)), σ_y the measurement noise."""
    for noise_std, weight in ((0.01, 3.0), (0.2, 0.5)):
        op = RadonOp(3, 6, noise_std=noise_std)
        step = DecomposedConsistency(sde, op, torch.zeros(1, *op.out_shape), 1, weight, 1e-3)
        for sigma in (0.05, 0.3, 2.0):
            t = float(sde.time_at_noise_level(torch.tensor([sigma]))[0])
            sigma_t = float(sde.marginal_std(torch.tensor([t], dtype=torch.float64))[0]
                            / sde.mean_coefficient(torch.tensor([t], dtype=torch.float64))[0])
            assert sigma_t == pytest.approx(sigma, rel=1e-6)
            assert step.damping(t) == pytest.approx(weight * noise_std**2 / sigma_t**2, rel=1e-9)
    noise_free = DecomposedConsistency(sde, RadonOp(3, 6), torch.zeros(1, 1, 3, 9), 1, 3.0, 1e-3)
    assert noise_free.damping(0.5) == 0.0


def test_decomposed_consistency_solves_the_damped_system_at_delta_t():
    """The consistency step at time t is x̂₀ + d with (AᵀA + δ_t I) d = Aᵀ(y − A x̂₀), δ_t from the
    formula above (converged CG against a dense solve)."""
    sde = VESDE(0.01, 10.0)
    op = RadonOp(3, 6, noise_std=0.05)
    a = dense(op)
    g = torch.Generator().manual_seed(2)
    y = torch.rand(1, *op.out_shape, generator=g, dtype=torch.float64)
    x0 = torch.rand(1, *op.in_shape, generator=g, dtype=torch.float64)
    step = DecomposedConsistency(sde, op, y, 200, 2.0, 1e-3)
    t = float(sde.time_at_noise_level(torch.tensor([0.1]))[0])
    delta = 2.0 * 0.05**2 / 0.1**2
    residual = y.reshape(-1) - a @ x0.reshape(-1)
    d = torch.linalg.solve(a.T @ a + delta * torch.eye(a.shape[1], dtype=a.dtype), a.T @ residual)
    torch.testing.assert_close(step.consistent(x0, t, 200).reshape(-1), x0.reshape(-1) + d, rtol=0, atol=1e-6)


# --- FBP: zero padding to ≥ 2D, i.e. a linear (not circular) convolution --------------------------

@pytest.mark.parametrize("detectors", [1, 9, 32, 33, 45, 91, 182, 300])
def test_fbp_filter_is_padded_to_at_least_twice_the_detectors(detectors):
    padded, response = ramp_filter(detectors)
    assert padded >= 2 * detectors and padded >= 64
    assert padded & (padded - 1) == 0  # a power of two
    assert padded < max(128, 4 * detectors)  # the smallest such
    assert response.shape == (padded // 2 + 1,) and response.dtype == torch.float64


def ramp_kernel(n: np.ndarray) -> np.ndarray:
    """The band-limited ramp sampled at unit spacing: 1/4 at 0, −1/(π n)² at odd n, 0 at even n."""
    h = np.zeros(n.shape)
    h[n == 0] = 0.25
    odd = n % 2 != 0
    h[odd] = -1.0 / (np.pi * n[odd]) ** 2
    return h


@pytest.mark.parametrize("detectors", [9, 45, 91])
def test_ram_lak_filtering_is_a_direct_linear_convolution(detectors):
    """Each row filtered = Σ_k row[k] h(j − k), j, k in [0, D): no wrap-around, to 1e-9 (float64)."""
    g = torch.Generator().manual_seed(3)
    rows = torch.rand(2, 1, 5, detectors, generator=g, dtype=torch.float64)
    lags = np.arange(-(detectors - 1), detectors)
    kernel = ramp_kernel(lags)
    expected = np.stack([np.convolve(row, kernel)[detectors - 1:2 * detectors - 1]
                         for row in rows.reshape(-1, detectors).numpy()])
    got = filter_sinogram(rows, "ram-lak").reshape(-1, detectors).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_cgls_contract_default_iterations_dtype_batch_and_refusals():
    """What least_squares promises besides its iterates (gaps shown by surviving mutants)."""
    op = RadonOp(3, 6)
    g = torch.Generator().manual_seed(4)
    y = torch.rand(3, *op.out_shape, generator=g, dtype=torch.float64)
    assert torch.equal(least_squares(op, y), least_squares(op, y, iterations=20))  # the documented default
    zero = least_squares(op, y, iterations=0)  # no iteration: x0 = 0 of y's batch and dtype
    assert zero.shape == (3, *op.in_shape) and zero.dtype == torch.float64 and not zero.any()
    x0 = torch.rand(3, *op.in_shape, generator=g)
    warm32 = least_squares(op, y, x0=x0, iterations=2)  # a float32 start works in y's float64
    assert warm32.dtype == torch.float64
    torch.testing.assert_close(warm32, least_squares(op, y, x0=x0.double(), iterations=2), rtol=0, atol=0)
    with pytest.raises(ValueError, match="least_squares expects a LinearOperator, got str"):
        least_squares("radon", y)
    with pytest.raises(ValueError, match=r"least_squares: y for RadonOp expects shape"):
        least_squares(op, y[:, :, :2])
    with pytest.raises(ValueError, match=r"least_squares: x0 has batch size 2, y has 3"):
        least_squares(op, y, x0=x0[:2].double())
    with pytest.raises(ValueError, match="least_squares: iterations must be >= 0, got -1"):
        least_squares(op, y, iterations=-1)
    with pytest.raises(ValueError, match=r"least_squares: damping must be a finite number >= 0, got nan"):
        least_squares(op, y, damping=float("nan"))


def test_simulate_without_noise_is_the_forward_operator():
    op = RadonOp(3, 6)
    x = torch.rand(2, *op.in_shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.equal(op.simulate(x), op(x))
