"""Linear operators: adjointness, batching, validation, norms, configurations, binding and
options over the shared registry (conftest.OPERATOR_CASES); the A = Λ T identities, least
squares and noise models (scoreinv.operators)."""

import math
import pickle
import re

import numpy as np
import pytest
import torch

from scoreinv.operators import (
    OPERATORS,
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
    register_operator,
)


def dense_matrix(op: LinearOperator) -> torch.Tensor:
    n = math.prod(op.in_shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *op.in_shape)
    return op(basis).reshape(n, -1).T  # (out_dim, in_dim)


# --- every operator of the registry ----------------------------------------------------------------

def test_adjoint_float64_and_float32(operator_case):
    op = operator_case.operator
    assert op.check_adjoint(dtype=torch.float64) < 1e-10
    assert op.check_adjoint(dtype=torch.float32) < 1e-5
    # and against the dense matrix: adjoint(e_j) is row j of Aᵀ
    a = dense_matrix(op)
    m = a.shape[0]
    at = op.adjoint(torch.eye(m, dtype=torch.float64).reshape(m, *op.out_shape)).reshape(m, -1)
    torch.testing.assert_close(at, a, rtol=0, atol=1e-12)


def test_batch_equals_per_item_and_dtype_follows_input(operator_case):
    op = operator_case.operator
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


def test_wrong_shape_and_nonfinite_input_raise(operator_case):
    op = operator_case.operator
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


def test_power_method_norm_matches_largest_singular_value(operator_case):
    op = operator_case.operator
    sigma_max = float(torch.linalg.svdvals(dense_matrix(op))[0])
    assert op.norm(iterations=200) == pytest.approx(sigma_max, rel=1e-6)


def test_config_round_trip_gives_identical_outputs(operator_case):
    op = operator_case.operator
    config = op.config()
    rebuilt = operator_from_config(config)
    assert type(rebuilt) is type(op) and rebuilt.config() == config
    assert rebuilt.noise_std == op.noise_std
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, *op.in_shape, generator=g)
    y = torch.randn(2, *op.out_shape, generator=g)
    assert torch.equal(rebuilt(x), op(x))
    assert torch.equal(rebuilt.adjoint(y), op.adjoint(y))
    assert torch.equal(rebuilt.pinv(y), op.pinv(y))
    # and through pickling (DataLoader workers): the description travels, outputs are identical
    clone = pickle.loads(pickle.dumps(op))
    assert torch.equal(clone(x), op(x)) and clone.config() == config


def test_bind_returns_the_sized_operator_and_names_both_sizes(operator_case):
    op = operator_case.operator
    assert op.bind() is op
    assert op.bind(image_shape=op.in_shape, measurement_shape=op.out_shape) is op
    assert op.measurement_ndim == len(op.out_shape)
    c, h, w = op.in_shape
    with pytest.raises(ValueError) as err:
        op.bind(image_shape=(c, h + 2, w + 2))
    assert f"{h + 2}" in str(err.value) and f"{h}" in str(err.value)
    unsized = operator_case.unsized
    if unsized is not None:  # bound from an operator without a size: the same copy again
        assert not unsized.is_sized and op.is_sized
        assert unsized.bind(image_shape=op.in_shape) is op
        assert unsized.bind(measurement_shape=op.out_shape) is op
        assert unsized.measurement_ndim == op.measurement_ndim == 3
        with pytest.raises(ValueError, match="no image size yet.*image_size"):
            unsized.in_shape
        with pytest.raises(ValueError, match="no image size yet"):
            unsized.out_shape
        x = torch.rand(2, *op.in_shape)
        assert torch.equal(unsized(x), op(x))  # called on data, it binds to the data's size


def test_with_options_refuses_an_option_the_operator_lacks(operator_case):
    op = operator_case.operator
    with pytest.raises(ValueError, match=re.escape(f"{op.name} has no option 'no_such_option'")):
        op.with_options(no_such_option=1)
    assert op.with_options() is op


# --- binding and sizes ---------------------------------------------------------------------------------

def test_unsized_radon_binds_from_the_sinogram():
    op = RadonOp(23)
    assert op.measurement_ndim == 3 and not op.is_sized
    bound = op.bind(measurement_shape=(1, 23, 91))  # ceil(64√2) = 91
    assert bound.image_size == 64 and bound.in_shape == (1, 64, 64) and bound.out_shape == (1, 23, 91)
    assert op.bind(image_shape=(1, 64, 64), measurement_shape=(1, 23, 91)) is bound
    explicit = RadonOp(23, image_size=64)
    x = torch.rand(2, 1, 64, 64)
    y = op(x)  # the card's y = op(x): binds to 64² and keeps the copy
    assert torch.equal(y, explicit(x)) and y.shape == (2, 1, 23, 91)
    assert torch.equal(op.adjoint(y), explicit.adjoint(y))
    assert torch.equal(op.pinv(y), explicit.pinv(y))
    full = explicit.transform(x)
    assert torch.equal(op.inverse_transform(full), explicit.inverse_transform(full))
    assert torch.equal(op.inverse_transform_measured(y), explicit.inverse_transform_measured(y))
    # bound copies share the system matrices with every other operator of that geometry
    assert bound._matrix("measured") is explicit._matrix("measured")


def test_radon_size_mismatches_name_both_sizes():
    with pytest.raises(ValueError, match="the sinogram's 91 detectors fit 64×64 images, the model works on 128×128"):
        RadonOp(23).bind(image_shape=(1, 128, 128), measurement_shape=(1, 23, 91))
    with pytest.raises(ValueError, match="built for 128×128 images.*64×64"):
        RadonOp(23, image_size=128).bind(image_shape=(1, 64, 64))
    with pytest.raises(ValueError, match=r"built for 128×128 images .*\(1, 23, 182\), not \(1, 23, 91\): "
                                         "the sinogram has 91 detectors, which fit 64×64 images"):
        RadonOp(23, image_size=128).bind(measurement_shape=(1, 23, 91))
    with pytest.raises(ValueError, match="93 detectors fits no N×N image.*65×65 images give 92, 66×66 give 94"):
        RadonOp(23).bind(measurement_shape=(1, 23, 93))
    with pytest.raises(ValueError, match="the sinogram has 20 views, the RadonOp measures 23"):
        RadonOp(23).bind(measurement_shape=(1, 20, 91))
    with pytest.raises(ValueError, match=r"add a leading batch dimension"):
        RadonOp(23)(torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match="cannot tell the image size"):
        RadonOp(23, n_detectors=100).bind(measurement_shape=(1, 23, 100))
    assert RadonOp(23, n_detectors=100).bind(image_shape=(1, 64, 64)).out_shape == (1, 23, 100)


def test_unsized_grayscale_acts_on_any_image_size():
    op = GrayscaleOp()
    assert op.measurement_ndim == 3
    for h, w in ((5, 7), (8, 8), (1, 13), (16, 3)):
        assert op.check_adjoint(shape=(3, h, w)) < 1e-12
        x = torch.rand(2, 3, h, w, dtype=torch.float64)
        torch.testing.assert_close(op(x), x.sum(1, keepdim=True) / math.sqrt(3))
        y = op(x)
        torch.testing.assert_close(op.inverse_transform(op.transform(x)), x)
        torch.testing.assert_close(op(op.pinv(y)), y)
        assert op.embed(y).shape == (2, 3, h, w)
    assert op.bind(measurement_shape=(1, 4, 6)).in_shape == (3, 4, 6)
    with pytest.raises(ValueError, match="the measurement is 4×6, the model works on 5×5"):
        op.bind(image_shape=(3, 5, 5), measurement_shape=(1, 4, 6))
    with pytest.raises(ValueError, match="built for 6×6 images, the model works on 5×5"):
        GrayscaleOp(6).bind(image_shape=(3, 5, 5))
    with pytest.raises(ValueError, match=r"images of shape \(3, H, W\)"):
        op(torch.zeros(1, 1, 4, 4))


# --- options ------------------------------------------------------------------------------------------

def test_with_options_changes_one_option_and_shares_the_matrices():
    radon = RadonOp(8, 16).build()
    hann = radon.with_options(fbp_filter="hann")
    assert hann.fbp_filter == "hann" and radon.fbp_filter == "ram-lak"
    assert hann._matrices is radon._matrices
    y = radon(torch.rand(2, 1, 16, 16))
    assert torch.equal(hann.pinv(y), radon.pinv(y, filter="hann"))
    assert not torch.equal(hann.pinv(y), radon.pinv(y))
    noisy = radon.with_options(noise_std=0.1)
    assert noisy.noise_std == 0.1 and radon.noise_std == 0.0
    assert noisy.with_options(noise=PoissonNoise(1e4)).noise_std == PoissonNoise(1e4).std
    with pytest.raises(ValueError, match="unknown FBP filter"):
        radon.with_options(fbp_filter="butterworth")
    # an unsized operator keeps its options through binding
    assert RadonOp(4, fbp_filter="cosine").bind(image_shape=(1, 8, 8)).fbp_filter == "cosine"
    # a random mask is kept as drawn, not drawn again
    mask = MaskOp(image_size=8, fraction=0.5, generator=torch.Generator().manual_seed(0))
    quieter = mask.with_options(noise_std=0.2)
    assert torch.equal(quieter.mask, mask.mask) and quieter.config()["fraction"] == 0.5
    assert mask.with_options(boxes=[(0, 0, 2, 2)]).known_fraction == pytest.approx(1 - 4 / 64)


# --- configurations -------------------------------------------------------------------------------------

def test_every_mask_rebuilds_from_its_configuration_alone():
    explicit = torch.rand(3, 9, 10, generator=torch.Generator().manual_seed(1)) > 0.5
    for op in (MaskOp(explicit), MaskOp(explicit[0], channels=3),
               MaskOp(image_size=12, channels=3, fraction=0.4, generator=torch.Generator().manual_seed(2))):
        config = op.config()
        assert len(config["mask_packed"]) < 200 and "mask_sha256" in config
        rebuilt = operator_from_config(config)
        assert torch.equal(rebuilt.mask, op.mask) and rebuilt.config() == config
    assert operator_from_config(MaskOp(explicit[0], channels=3).config())  # one plane stored for 3 channels
    assert MaskOp(explicit[0], channels=3).config()["mask_shape"] == [9, 10]


def test_configurations_written_before_the_packed_mask_still_load():
    op = MaskOp(image_size=8, fraction=0.5, generator=torch.Generator().manual_seed(3))
    old = {k: v for k, v in op.config().items() if k not in ("mask_packed", "mask_shape")}
    with pytest.raises(ValueError, match="cannot be rebuilt from its configuration alone"):
        operator_from_config(old)
    with pytest.raises(ValueError, match="mask_sha256 differs"):
        operator_from_config(old, mask=1 - op.mask)
    assert torch.equal(operator_from_config(old, mask=op.mask.numpy()).mask, op.mask)
    # a Radon configuration without fbp_filter: ram-lak
    legacy = {k: v for k, v in RadonOp(4, 8).config().items() if k != "fbp_filter"}
    assert operator_from_config(legacy).fbp_filter == "ram-lak"


def test_composed_and_unsized_configurations_round_trip():
    explicit = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(0)) > 0.3
    composed = RadonOp(3, 6, fbp_filter="hann") @ MaskOp(explicit)
    rebuilt = operator_from_config(composed.config())
    assert isinstance(rebuilt, ComposedOperator) and rebuilt.config() == composed.config()
    x = torch.rand(2, 1, 6, 6)
    assert torch.equal(rebuilt(x), composed(x))
    for unsized in (RadonOp(7, projector="strip", fbp_filter="cosine", noise_std=0.1), GrayscaleOp(noise_std=0.2)):
        again = operator_from_config(unsized.config())
        assert not again.is_sized and again.config() == unsized.config()


def test_registry_by_type_name():
    assert {"RadonOp", "GrayscaleOp", "MaskOp", "ComposedOperator"} <= set(OPERATORS)

    class Scale(LinearOperator):
        def __init__(self, factor, size=4):
            super().__init__((1, size, size), (1, size, size))
            self.factor = factor

        def _forward(self, x):
            return self.factor * x

        _adjoint = _forward

        def config(self):
            return {**super().config(), "factor": self.factor}

    try:
        @register_operator("Scale")
        def build(config):
            return Scale(config["factor"], config["in_shape"][-1])

        assert build is OPERATORS["Scale"]
        rebuilt = operator_from_config(Scale(2.5).config())
        assert isinstance(rebuilt, Scale) and rebuilt.factor == 2.5
        with pytest.raises(ValueError, match="Scale has no option 'fbp_filter'"):
            rebuilt.with_options(fbp_filter="hann")
    finally:
        OPERATORS.pop("Scale", None)
    with pytest.raises(ValueError, match="cannot rebuild an operator of type 'Blur'.*registered: "):
        operator_from_config({"type": "Blur"})


# --- the families ---------------------------------------------------------------------------------------

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
    assert MaskOp(np.ones((2, 5, 4))).in_shape == (2, 5, 4)  # the mask alone sizes it


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
    torch.testing.assert_close(op.inverse_transform_measured(y), op.inverse_transform(op.embed(y)))


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
    with pytest.raises(ValueError, match="no image size yet"):
        RadonOp(3) @ mask


# --- least squares --------------------------------------------------------------------------------------

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


# --- noise ---------------------------------------------------------------------------------------------

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
