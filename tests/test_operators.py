"""Linear operators: adjointness, batching, validation, norms, the A = Λ T identities,
least squares and noise models (scoreinv.operators)."""

import math

import pytest
import torch

from scoreinv.operators import (
    ComposedOperator,
    GaussianNoise,
    GrayscaleOp,
    LinearOperator,
    MaskOp,
    PoissonNoise,
    RadonOp,
    SubsampledTransformOp,
    least_squares,
    operator_from_config,
)


def small_operators():
    g = torch.Generator().manual_seed(3)
    explicit = torch.rand(2, 7, 5, generator=g) > 0.4
    return {
        "mask-boxes": MaskOp(image_size=8, channels=3, boxes=[(1, 2, 3, 4), (6, 0, 5, 2)]),
        "mask-fraction": MaskOp(image_size=(6, 9), fraction=0.3, generator=g),
        "mask-explicit": MaskOp(explicit, channels=2),
        "grayscale": GrayscaleOp(6),
        "radon": RadonOp(4, 8),
        "radon-strip": RadonOp(5, 7, projector="strip", full_views=10),
        "composed": RadonOp(3, 6) @ MaskOp(image_size=6, boxes=[(0, 0, 2, 6)]),
    }


OPS = small_operators()


def dense_matrix(op: LinearOperator) -> torch.Tensor:
    n = math.prod(op.in_shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *op.in_shape)
    return op(basis).reshape(n, -1).T  # (out_dim, in_dim)


@pytest.mark.parametrize("name", OPS)
def test_adjoint_float64_and_float32(name):
    op = OPS[name]
    assert op.check_adjoint(dtype=torch.float64) < 1e-10
    assert op.check_adjoint(dtype=torch.float32) < 1e-5
    # and against the dense matrix: adjoint(e_j) is row j of Aᵀ
    a = dense_matrix(op)
    m = a.shape[0]
    at = op.adjoint(torch.eye(m, dtype=torch.float64).reshape(m, *op.out_shape)).reshape(m, -1)
    torch.testing.assert_close(at, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", OPS)
def test_batch_equals_per_item_and_dtype_follows_input(name):
    op = OPS[name]
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, *op.in_shape, generator=g)
    y = torch.rand(3, *op.out_shape, generator=g)
    for method, arg in ((op.forward, x), (op.adjoint, y), (op.pinv, y)):
        batch = method(arg)
        assert batch.dtype == torch.float32
        items = torch.cat([method(arg[i:i + 1]) for i in range(3)])
        torch.testing.assert_close(batch, items, rtol=1e-5, atol=1e-6)
    assert op(x.double()).dtype == torch.float64
    assert op(x).shape == (3, *op.out_shape)


@pytest.mark.parametrize("name", OPS)
def test_wrong_shape_and_nonfinite_input_raise(name):
    op = OPS[name]
    expected = "(B, " + ", ".join(map(str, op.in_shape)) + ")"
    with pytest.raises(ValueError, match=r"expects shape \(B, .*got") as err:
        op(torch.zeros(2, op.in_shape[0], op.in_shape[1] + 1, op.in_shape[2]))
    assert expected in str(err.value)
    with pytest.raises(ValueError, match="add a leading batch dimension"):
        op(torch.zeros(op.in_shape))
    with pytest.raises(ValueError, match=r"expects shape \(B, " + ", ".join(map(str, op.out_shape))):
        op.adjoint(torch.zeros(1, *op.in_shape[:-1], op.in_shape[-1] + 3))
    for bad in (float("nan"), float("inf")):
        x = torch.zeros(2, *op.in_shape)
        x[1, 0, 0, 0] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            op(x)
        y = torch.zeros(1, *op.out_shape)
        y.view(-1)[0] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            op.pinv(y)
    with pytest.raises(ValueError, match="floating-point"):
        op(torch.zeros(1, *op.in_shape, dtype=torch.int64))
    with pytest.raises(ValueError, match="torch.Tensor"):
        op(torch.zeros(1, *op.in_shape).numpy())


@pytest.mark.parametrize("name", OPS)
def test_power_method_norm_matches_largest_singular_value(name):
    op = OPS[name]
    sigma_max = float(torch.linalg.svdvals(dense_matrix(op))[0])
    assert op.norm(iterations=200) == pytest.approx(sigma_max, rel=1e-6)


def test_mask_keeps_known_pixels_and_zeroes_unknown():
    op = MaskOp(image_size=(6, 8), channels=3, boxes=[(1, 2, 3, 4), (4, -1, 9, 2)])
    x = torch.rand(2, 3, 6, 8) + 0.5
    y = op(x)
    missing = torch.zeros(6, 8, dtype=torch.bool)
    missing[1:4, 2:6] = True
    missing[4:, 0:1] = True
    assert op.mask.shape == (3, 6, 8) and op.mask.dtype == torch.float32
    assert torch.equal(op.mask[0] == 0, missing) and torch.equal(op.mask[0], op.mask[2])
    assert torch.equal(y[:, :, ~missing], x[:, :, ~missing])
    assert bool((y[:, :, missing] == 0).all())
    assert torch.equal(op.pinv(y), y)
    assert op.known_fraction == pytest.approx(1 - missing.float().mean().item())


def test_mask_from_fraction_is_exact_and_seeded():
    a = MaskOp(image_size=10, fraction=0.37, generator=torch.Generator().manual_seed(5))
    b = MaskOp(image_size=10, fraction=0.37, generator=torch.Generator().manual_seed(5))
    c = MaskOp(image_size=10, fraction=0.37, generator=torch.Generator().manual_seed(6))
    assert int(a.mask.sum()) == 37
    assert torch.equal(a.mask, b.mask) and not torch.equal(a.mask, c.mask)


def test_mask_argument_errors():
    with pytest.raises(ValueError, match="exactly one of"):
        MaskOp(image_size=4)
    with pytest.raises(ValueError, match="exactly one of"):
        MaskOp(torch.ones(4, 4), boxes=[(0, 0, 1, 1)], image_size=4)
    with pytest.raises(ValueError, match="0 \\(missing\\) or 1"):
        MaskOp(torch.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="image_size"):
        MaskOp(torch.ones(4, 4), image_size=5)
    with pytest.raises(ValueError, match="fraction"):
        MaskOp(image_size=4, fraction=1.5)


def test_grayscale_matrix_orthonormal_and_gray_is_scaled_mean():
    m = GrayscaleOp.matrix.double()
    torch.testing.assert_close(m.T @ m, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-7)
    torch.testing.assert_close(m[0], torch.full((3,), 1 / math.sqrt(3), dtype=torch.float64))
    # score_sde's decoupling columns, to their printed precision
    torch.testing.assert_close(m[1], torch.tensor([-0.816, 0.408, 0.408], dtype=torch.float64),
                               rtol=0, atol=1e-3)
    torch.testing.assert_close(m[2], torch.tensor([0.0, 0.707, -0.707], dtype=torch.float64),
                               rtol=0, atol=1e-3)
    op = GrayscaleOp((5, 7))
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    y = op(x)
    assert y.shape == (2, 1, 5, 7)
    torch.testing.assert_close(y, x.mean(1, keepdim=True) * math.sqrt(3))
    torch.testing.assert_close(op.transform(x)[:, :1], y)
    torch.testing.assert_close(GrayscaleOp.to_gray(y), x.mean(1, keepdim=True))
    torch.testing.assert_close(GrayscaleOp.from_gray(x.mean(1, keepdim=True)), y)
    # pinv = minimum-norm solution: consistent with y, all channels equal the gray image
    x_pinv = op.pinv(y)
    torch.testing.assert_close(op(x_pinv), y)
    torch.testing.assert_close(x_pinv, x.mean(1, keepdim=True).expand(-1, 3, -1, -1))


@pytest.mark.parametrize("op", [MaskOp(image_size=6, channels=3, boxes=[(1, 1, 3, 2)]), GrayscaleOp(6)],
                         ids=["mask", "grayscale"])
def test_subsampled_transform_identity_for_exact_transforms(op):
    x = torch.rand(2, *op.in_shape, dtype=torch.float64)
    z = op.transform(x)
    assert z.shape == (2, *op.full_shape) and op.mask.shape == op.full_shape
    replaced = op.embed(op.subsample(z)) + (1 - op.mask.double()) * z
    torch.testing.assert_close(op.inverse_transform(replaced), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.inverse_transform(z), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.subsample(z), op(x))
    # embed is the adjoint of subsample, and its zero-filled entries are where mask = 0
    y = torch.rand(2, *op.out_shape, dtype=torch.float64)
    torch.testing.assert_close((op.subsample(z) * y).sum(), (z * op.embed(y)).sum())
    assert bool((op.embed(y) * (1 - op.mask.double()) == 0).all())


def test_subsampled_transform_family():
    for op in (MaskOp(image_size=4, fraction=0.5), GrayscaleOp(4), RadonOp(4, 8)):
        assert isinstance(op, SubsampledTransformOp)
        with pytest.raises(ValueError, match="expects shape"):
            op.inverse_transform(torch.zeros(1, *op.out_shape[:-1], op.out_shape[-1] + 1))


def test_composition_reverses_adjoint_and_checks_shapes():
    radon = RadonOp(3, 6)
    mask = MaskOp(image_size=6, boxes=[(0, 0, 2, 6)])
    composed = radon @ mask
    assert isinstance(composed, ComposedOperator)
    assert composed.in_shape == mask.in_shape and composed.out_shape == radon.out_shape
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    y = torch.rand(2, *radon.out_shape, dtype=torch.float64)
    torch.testing.assert_close(composed(x), radon(mask(x)))
    torch.testing.assert_close(composed.adjoint(y), mask.adjoint(radon.adjoint(y)))
    with pytest.raises(ValueError, match="cannot compose"):
        GrayscaleOp(6) @ radon


def test_least_squares_matches_dense_lstsq():
    """Overdetermined Radon (12 views of 8²): CG reaches the unique least-squares solution of an
    inconsistent y; with damping, the Tikhonov solution; per item in a batch."""
    op = RadonOp(12, 8)
    a = dense_matrix(op)
    g = torch.Generator().manual_seed(0)
    y = torch.rand(3, *op.out_shape, generator=g, dtype=torch.float64)
    b = y.reshape(3, -1).T
    x_true = torch.linalg.lstsq(a, b).solution.T.reshape(3, *op.in_shape)
    x = least_squares(op, y, iterations=150)
    torch.testing.assert_close(x, x_true, rtol=0, atol=1e-8 * float(x_true.abs().max()))
    damping = 5.0
    x_damped_true = torch.linalg.solve(a.T @ a + damping * torch.eye(64, dtype=a.dtype), a.T @ b)
    x_damped = least_squares(op, y, iterations=100, damping=damping)
    torch.testing.assert_close(x_damped, x_damped_true.T.reshape(3, *op.in_shape), rtol=0, atol=1e-9)
    # per-item step sizes: a batch gives each item's own iterates (compared after a few
    # iterations: CG's intermediate iterates amplify rounding differences ~10× per step here)
    per_item = torch.cat([least_squares(op, y[i:i + 1], iterations=5) for i in range(3)])
    torch.testing.assert_close(least_squares(op, y, iterations=5), per_item, rtol=0, atol=1e-11)


def test_least_squares_warm_start_is_the_projection():
    """Underdetermined (4 views of 8²): from x0, CG gives x0 + A⁺(y − A x0), the point of
    {A x = y} nearest to x0."""
    op = RadonOp(4, 8, n_detectors=10)
    a = dense_matrix(op)
    g = torch.Generator().manual_seed(1)
    x_gt = torch.rand(2, *op.in_shape, generator=g, dtype=torch.float64)
    x0 = torch.rand(2, *op.in_shape, generator=g, dtype=torch.float64)
    y = op(x_gt)
    residual = (y - op(x0)).reshape(2, -1).T
    expected = x0 + (torch.linalg.pinv(a) @ residual).T.reshape(2, *op.in_shape)
    x = least_squares(op, y, x0=x0, iterations=100)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-8)
    torch.testing.assert_close(op(x), y, rtol=0, atol=1e-8)
    # zero iterations returns x0; a converged item stays put (no division by zero)
    torch.testing.assert_close(least_squares(op, y, x0=x0, iterations=0), x0)
    again = least_squares(op, y, x0=x, iterations=5)
    assert torch.isfinite(again).all()
    torch.testing.assert_close(again, x, rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="x0"):
        least_squares(op, y, x0=torch.zeros(2, 1, 9, 8))
    with pytest.raises(ValueError, match="damping"):
        least_squares(op, y, damping=-1.0)


def test_gaussian_noise_seeded_and_std():
    op = GrayscaleOp(64, noise_std=0.05)
    assert op.noise_std == 0.05 and isinstance(op.noise, GaussianNoise)
    x = torch.rand(16, 3, 64, 64)
    y1 = op.simulate(x, generator=torch.Generator().manual_seed(0))
    y2 = op.simulate(x, generator=torch.Generator().manual_seed(0))
    y3 = op.simulate(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    assert float((y1 - op(x)).std()) == pytest.approx(0.05, rel=0.02)  # 65k draws
    assert float((y1 - op(x)).mean()) == pytest.approx(0.0, abs=1e-3)
    assert GrayscaleOp(8).noise is None and GrayscaleOp(8).noise_std == 0.0


def test_mask_noise_only_on_known_pixels():
    op = MaskOp(image_size=8, boxes=[(0, 0, 4, 8)], noise_std=0.1)
    y = op.simulate(torch.rand(2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert bool((y[:, :, :4] == 0).all()) and bool((y[:, :, 4:] != 0).all())


def test_poisson_noise_mean_std_and_seed():
    noise = PoissonNoise(incident_photons=1e5, attenuation_scale=0.05)
    op = RadonOp(8, 16, noise=noise)
    x = torch.rand(1, 1, 16, 16)
    clean = op(x)
    reps = 400
    g = torch.Generator().manual_seed(0)
    noisy = torch.cat([op.simulate(x, generator=g) for _ in range(reps)])
    torch.testing.assert_close(noisy.mean(0, keepdim=True), clean, rtol=0,
                               atol=6 * float(noise.std_at(clean).max()) / math.sqrt(reps))
    ratio = noisy.std(0) / noise.std_at(clean)[0]
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.03)
    assert op.noise_std == pytest.approx(1 / (0.05 * math.sqrt(1e5)))
    a = op.simulate(x, generator=torch.Generator().manual_seed(3))
    b = op.simulate(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.float32
    with pytest.raises(ValueError, match="either noise_std or noise"):
        RadonOp(8, 16, noise=noise, noise_std=0.1)
    with pytest.raises(ValueError, match="incident_photons"):
        PoissonNoise(0)


def test_config_round_trip():
    for op in (RadonOp(6, 12, full_views=36, projector="strip", noise=PoissonNoise(1e4, 0.02)),
               GrayscaleOp((4, 5), noise_std=0.1),
               MaskOp(image_size=8, channels=3, boxes=[(1, 1, 2, 3)])):
        rebuilt = operator_from_config(op.config())
        assert rebuilt.config() == op.config()
        x = torch.rand(1, *op.in_shape)
        torch.testing.assert_close(rebuilt(x), op(x))
