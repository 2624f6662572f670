"""The operator base classes' own behaviour, on tiny operators defined here (fast).

``Diag`` is A = diag(w) on (1, 2, 2) items; ``Halves`` a subsampled transform A = Λ T with T = 2 I,
Λ a mask that keeps the full shape, so every member has a closed form. What is checked: options
and copies, pickling, the validation and size messages, composition, the adjointness check,
the power method, the per-device cache and the bound copies.
"""

import math
import pickle

import pytest
import torch

from scoreinv.operators import ComposedOperator, GaussianNoise, GrayscaleOp, LinearOperator, SubsampledTransformOp
from scoreinv.operators.base import _BOUND_COPIES, _cgls, least_squares, validate

WEIGHTS = torch.tensor([1.0, -2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)


class Diag(LinearOperator):
    received: list = []

    def __init__(self, weights=WEIGHTS, noise_std=0.0, noise=None, adjoint_factor=1.0):
        Diag.received.append({"weights": weights, "noise_std": noise_std, "noise": noise,
                              "adjoint_factor": adjoint_factor})
        if noise is None and noise_std:
            noise = GaussianNoise(noise_std)
        super().__init__((1, 2, 2), (1, 2, 2), noise=noise)
        self.weights = weights
        self.adjoint_factor = adjoint_factor
        self.shared = []

    def _forward(self, x):
        return self.weights.to(x) * x

    def _adjoint(self, y):
        return self.adjoint_factor * self.weights.to(y) * y

    def _options(self):
        return {"weights": self.weights, "noise_std": self.noise_std, "noise": self.noise,
                "adjoint_factor": self.adjoint_factor}

    def _share_from(self, other, changes):
        self.shared.append((other, dict(changes)))


class Bare(LinearOperator):
    def _forward(self, x):
        return x

    def _adjoint(self, y):
        return y


class Halves(SubsampledTransformOp):
    """T = 2 I, Λ = keep the entries of ``MASK`` (zero elsewhere, same shape)."""

    MASK = torch.tensor([1.0, 0.0, 1.0, 1.0]).reshape(1, 2, 2)

    def __init__(self, sized=True):
        super().__init__((1, 2, 2), (1, 2, 2))
        if sized:
            self.full_shape = [1.0, 2, 2]
            self.mask = self.MASK

    def _transform(self, x):
        return 2 * x

    def _inverse_transform(self, z):
        return z / 2

    def _transform_adjoint(self, z):
        return 2 * z

    def _subsample(self, z):
        return self.MASK * z

    def _embed(self, y):
        return self.MASK * y


X = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64).reshape(1, 1, 2, 2)


def test_with_options_copies_with_the_merged_options_and_shares():
    Diag.received.clear()
    op = Diag(noise_std=0.1)
    assert op.with_options() is op
    copy = op.with_options(adjoint_factor=2.0)
    assert type(copy) is Diag and copy is not op and copy.adjoint_factor == 2.0
    assert copy.shared == [(op, {"adjoint_factor": 2.0})]
    assert Diag.received[-1]["noise"] is op.noise and Diag.received[-1]["noise_std"] == 0.1
    # noise_std= and noise= describe the same thing: setting one clears the other
    op.with_options(noise_std=0.3)
    assert Diag.received[-1]["noise_std"] == 0.3 and Diag.received[-1]["noise"] is None
    other = GaussianNoise(0.2)
    op.with_options(noise=other)
    assert Diag.received[-1]["noise"] is other and Diag.received[-1]["noise_std"] == 0.0
    op.with_options(noise=other, noise_std=0.5)
    assert Diag.received[-1]["noise"] is other and Diag.received[-1]["noise_std"] == 0.5
    assert op._merge_options({"a": 1}, {"noise_std": 0.3}) == {"a": 1, "noise_std": 0.3}
    assert op._merge_options({"a": 1}, {"noise": other}) == {"a": 1, "noise": other}
    with pytest.raises(ValueError, match=r"^Diag has no option 'bogus' \(its options: weights, noise_std, noise, "
                                         r"adjoint_factor\)$"):
        op.with_options(weights=WEIGHTS, bogus=1, other=2)
    with pytest.raises(ValueError, match=r"^Bare has no option 'x' \(its options: none\)$"):
        Bare((1,), (1,)).with_options(x=1)


def test_pickles_leave_the_caches_behind():
    op = Diag()
    op._on("w", WEIGHTS, X)
    op._bound["k"] = op
    state = op.__getstate__()
    assert state["_device_cache"] == {} and len(state["_bound"]) == 0 and state["weights"] is op.weights
    assert len(op._device_cache) == 1 and len(op._bound) == 1  # the operator keeps its own
    again = pickle.loads(pickle.dumps(op))
    assert again._device_cache == {} and torch.equal(again(X), op(X))


def test_on_caches_per_name_device_and_dtype():
    op = Diag()
    first = op._on("w", WEIGHTS, X)
    assert first.dtype == torch.float64 and op._on("w", WEIGHTS, X) is first
    assert op._on("w", WEIGHTS, X.float()).dtype == torch.float32
    assert op._on("v", 2 * WEIGHTS, X) is not first and len(op._device_cache) == 3


class Line(LinearOperator):
    """diag(w) on 32 entries with 32 distinct w: CG is far from converged after 20 iterations."""

    def __init__(self):
        super().__init__((32,), (32,))
        self.w = torch.logspace(-3, 0, 32, dtype=torch.float64)

    def _forward(self, x):
        return self.w * x

    def _adjoint(self, y):
        return self.w * y


def test_base_pinv_is_twenty_cgls_iterations():
    op = Line()
    y = op(torch.linspace(-1, 1, 32, dtype=torch.float64)[None])
    twenty = _cgls(op, y, None, 20, 0.0)
    assert torch.equal(op.pinv(y), twenty)
    assert not torch.allclose(twenty, _cgls(op, y, None, 19, 0.0), rtol=0, atol=1e-12)


def test_validation_messages():
    op = Diag()
    with pytest.raises(ValueError, match=r"^Diag.forward expects shape \(B, 1, 2, 2\), got \(1, 2, 2\) \(add a leading "
                                         r"batch dimension\)$"):
        op(X[0])
    with pytest.raises(ValueError, match=r"^Diag.adjoint expects shape \(B, 1, 2, 2\), got \(1, 1, 2, 3\)$"):
        op.adjoint(torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match=r"^Diag.pinv expects a floating-point tensor of shape \(B, 1, 2, 2\), "
                                         r"got dtype torch.int64$"):
        op.pinv(torch.zeros(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^here expects a torch.Tensor of shape \(B, 3\), got list$"):
        validate([1.0], (3,), "here")
    with pytest.raises(ValueError, match=r"^here: the input of shape \(1, 3\) contains NaN or inf$"):
        validate(torch.tensor([[1.0, math.inf, 0.0]]), (3,), "here")
    nan = torch.tensor([[math.nan, 0.0, 0.0]])
    assert validate(nan, (3,), "here", check_finite=False) is nan


def test_sizes_noise_config_repr_and_matmul():
    op = Diag(noise_std=0.25)
    assert op.noise_std == 0.25 and type(op.noise_std) is float and Diag().noise_std == 0.0
    assert op.is_sized and op.measurement_ndim == 3 and Bare((4,), (2, 5)).measurement_ndim == 2
    assert op.name == "Diag" and op.capabilities == frozenset() and op.modality is None
    assert op.bind() is op and op.bind(image_shape=(1, 2, 2), measurement_shape=[1, 2, 2]) is op
    with pytest.raises(ValueError, match=r"^Diag works on images of shape \(1, 2, 2\), not \(1, 3, 3\)$"):
        op.bind(image_shape=(1, 3, 3))
    with pytest.raises(ValueError, match=r"^Diag produces measurements of shape \(1, 2, 2\), not \(2, 2\)$"):
        op.bind(measurement_shape=(2, 2))
    assert op.config() == {"type": "Diag", "in_shape": [1, 2, 2], "out_shape": [1, 2, 2],
                           "noise": op.noise.config()}
    assert Diag().config()["noise"] is None
    assert repr(Diag()) == "Diag(in_shape=(1, 2, 2), out_shape=(1, 2, 2), noise=None)"
    simulated = op.simulate(X, generator=torch.Generator().manual_seed(0))
    assert torch.equal(simulated, op.noise(op(X), generator=torch.Generator().manual_seed(0)))
    assert torch.equal(Diag().simulate(X), Diag()(X))
    with pytest.raises(TypeError):
        op @ 3
    unsized = Bare(None, None)
    assert not unsized.is_sized and unsized.measurement_ndim == 3
    for what in ("in_shape", "out_shape"):
        with pytest.raises(ValueError, match=rf"^Bare has no image size yet, so no {what}: pass image_size=\.\.\. or "
                                             r"bind it \(op.bind\(image_shape=\.\.\., measurement_shape=\.\.\.\); "
                                             r"calling it on data binds it to the data's shape\)$"):
            getattr(unsized, what)


def test_composition():
    outer, inner = Diag(noise_std=0.5), Diag(weights=2 * WEIGHTS)
    both = outer @ inner
    assert isinstance(both, ComposedOperator) and both.outer is outer and both.inner is inner
    assert both.name == "(Diag @ Diag)" and both.noise is outer.noise and both.noise_std == 0.5
    assert (inner @ outer).noise is None
    assert torch.allclose(both(X), 2 * WEIGHTS.double() ** 2 * X)
    assert torch.allclose(both.adjoint(X), 2 * WEIGHTS.double() ** 2 * X)
    assert torch.allclose(both.pinv(both(X)), X, atol=1e-6)
    swapped = both.with_options(inner=outer)
    assert swapped.inner is outer and swapped.outer is outer
    assert both.config() == {"type": "ComposedOperator", "outer": outer.config(), "inner": inner.config()}
    assert repr(both) == f"ComposedOperator({outer!r} @ {inner!r})"
    with pytest.raises(ValueError, match=r"^cannot compose Bare @ Diag: Diag produces \(B, 1, 2, 2\) but Bare "
                                         r"expects \(B, 4\)$"):
        Bare((4,), (4,)) @ Diag()


def test_check_adjoint_is_the_relative_error_of_seeded_draws():
    assert Diag().check_adjoint() < 1e-15
    wrong = Diag(adjoint_factor=3.0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, 1, 2, 2), generator=generator, dtype=torch.float64)
    y = torch.randn((2, 1, 2, 2), generator=generator, dtype=torch.float64)
    ax = WEIGHTS.double() * x
    expected = float(2 * (ax * y).sum().abs() / (ax.norm() * y.norm()))
    assert wrong.check_adjoint() == pytest.approx(expected, rel=1e-12)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn((3, 1, 2, 2), generator=generator, dtype=torch.float32)
    y = torch.randn((3, 1, 2, 2), generator=generator, dtype=torch.float32)
    ax = WEIGHTS * x
    expected = float(2 * (ax * y).sum().abs() / (ax.norm() * y.norm()))
    assert wrong.check_adjoint(torch.Generator().manual_seed(5), dtype=torch.float32, batch=3) == pytest.approx(
        expected, rel=1e-5)
    # A x = 0 but Aᵀ y ≠ 0: no scale to divide by, the absolute error
    zero = Diag(weights=torch.zeros(1, 1, 2, 2))
    zero._adjoint = lambda y: y
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, 1, 2, 2), generator=generator, dtype=torch.float64)
    y = torch.randn((2, 1, 2, 2), generator=generator, dtype=torch.float64)
    assert zero.check_adjoint() == pytest.approx(float((x * y).sum().abs()), rel=1e-12)
    assert GrayscaleOp().check_adjoint(shape=(3, 4, 4)) < 1e-15
    with pytest.raises(ValueError, match="GrayscaleOp was built for 2×2 images"):
        GrayscaleOp(2).check_adjoint(shape=(3, 4, 4))


def test_norm_by_the_power_method():
    assert Diag().norm() == pytest.approx(4.0, rel=1e-9)
    generator = torch.Generator().manual_seed(0)
    start = torch.randn((1, 1, 2, 2), generator=generator, dtype=torch.float64)
    assert Diag().norm(iterations=0) == pytest.approx(float((WEIGHTS.double() * start).norm() / start.norm()),
                                                      rel=1e-12)
    start = torch.randn((1, 1, 2, 2), generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    once = Diag().norm(iterations=1, generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    z = WEIGHTS**2 * start
    assert once == pytest.approx(float((WEIGHTS * z).norm() / z.norm()), rel=1e-6)
    assert Diag().norm(iterations=3) < Diag().norm(iterations=30)  # more iterations approach ‖A‖ from below
    assert Diag(weights=torch.zeros(1, 1, 2, 2)).norm() == 0.0
    assert type(Diag().norm()) is float


def test_unsized_operators_bind_on_call_and_keep_their_copies():
    op = GrayscaleOp()
    with pytest.raises(ValueError, match=r"^GrayscaleOp expects a torch.Tensor of shape \(B, C, H, W\), got list$"):
        op([1.0])
    with pytest.raises(ValueError, match=r"^GrayscaleOp expects a batch of shape \(B, C, H, W\), got \(3, 4, 4\) "
                                         r"\(add a leading batch dimension\)$"):
        op(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match=r"^GrayscaleOp expects a batch of shape \(B, C, H, W\), got \(1, 1, 3, 4, 4\)$"):
        op(torch.zeros(1, 1, 3, 4, 4))
    image = torch.rand(1, 3, 4, 4)
    assert torch.equal(op(image), GrayscaleOp(4)(image))
    assert torch.equal(op.adjoint(torch.ones(1, 1, 4, 4)), GrayscaleOp(4).adjoint(torch.ones(1, 1, 4, 4)))
    assert torch.equal(op.inverse_transform(image), GrayscaleOp(4).inverse_transform(image))
    first = op.bind(image_shape=(3, 1, 1))
    copies = [op.bind(image_shape=(3, n, n)) for n in range(2, _BOUND_COPIES + 1)]
    assert _BOUND_COPIES == 16 and len(op._bound) == _BOUND_COPIES
    assert op.bind(image_shape=(3, 1, 1)) is first  # 16 kept; using one moves it to the end
    op.bind(image_shape=(3, 40, 40))
    assert len(op._bound) == _BOUND_COPIES and op.bind(image_shape=(3, 1, 1)) is first
    assert op.bind(image_shape=(3, 5, 5)) is copies[3]
    assert op.bind(image_shape=(3, 2, 2)) is not copies[0]  # the least recently used one was dropped


def test_subsampled_transform_members_and_messages():
    op = Halves()
    assert op.full_shape == (1, 2, 2) and all(type(s) is int for s in op.full_shape)
    assert op.capabilities == frozenset({"full-transform"}) and op.mask is Halves.MASK
    x = X.float()
    assert torch.equal(op.transform(x), 2 * x) and torch.equal(op.inverse_transform(x), x / 2)
    assert torch.equal(op.transform_adjoint(x), 2 * x) and torch.equal(op.subsample(x), Halves.MASK * x)
    assert torch.equal(op.embed(x), Halves.MASK * x)
    assert torch.equal(op(x), 2 * Halves.MASK * x) and torch.equal(op.adjoint(x), 2 * Halves.MASK * x)
    assert torch.equal(op.inverse_transform_measured(x), Halves.MASK * x / 2)
    bad = torch.zeros(1, 1, 2, 3)
    for member in ("transform", "inverse_transform", "transform_adjoint", "subsample", "embed",
                   "inverse_transform_measured"):
        with pytest.raises(ValueError, match=rf"^Halves.{member} expects shape \(B, 1, 2, 2\), got \(1, 1, 2, 3\)$"):
            getattr(op, member)(bad)
    unsized = Halves(sized=False)
    for what in ("full_shape", "mask"):
        with pytest.raises(ValueError, match=rf"^Halves has no image size yet, so no {what}: pass image_size="):
            getattr(unsized, what)
    with pytest.raises(ValueError, match=r"^Bare has no image size yet, so no full_shape: "):
        Bare(None, None)._bind_full((1, 2, 2))


def test_least_squares_and_cgls_on_a_diagonal():
    """diag(w): CG on AᵀA = diag(w²) from 0 needs one iteration per distinct |w|; 4 here."""
    op = Diag()
    y = op(X)
    assert torch.allclose(least_squares(op, y, iterations=4), X, atol=1e-12)
    assert not torch.allclose(least_squares(op, y, iterations=3), X, atol=1e-3)
    damped = least_squares(op, y, iterations=4, damping=0.5)
    assert torch.allclose(damped, WEIGHTS.double() ** 2 * X / (WEIGHTS.double() ** 2 + 0.5), atol=1e-12)
    warm = least_squares(op, y, x0=X + 1.0, iterations=4)
    assert torch.allclose(warm, X, atol=1e-12)
    with pytest.raises(ValueError, match=r"^least_squares expects a LinearOperator, got str$"):
        least_squares("A", y)


# --- what the mutation run of operators/base.py asked for -----------------------------------------

def test_check_adjoint_is_relative_also_below_unit_scale():
    """‖Ax‖ ‖y‖ < 1: the error is still divided by it."""
    tiny = Diag(weights=1e-3 * WEIGHTS, adjoint_factor=3.0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, 1, 2, 2), generator=generator, dtype=torch.float64)
    y = torch.randn((2, 1, 2, 2), generator=generator, dtype=torch.float64)
    ax = 1e-3 * WEIGHTS.double() * x
    assert float(ax.norm() * y.norm()) < 1
    assert tiny.check_adjoint() == pytest.approx(float(2 * (ax * y).sum().abs() / (ax.norm() * y.norm())), rel=1e-6)


def test_norm_runs_fifty_iterations_by_default():
    op = Line()
    op.w = torch.linspace(0.9, 1.0, 32, dtype=torch.float64)  # close singular values: slow convergence
    assert op.norm() == op.norm(iterations=50) != op.norm(iterations=51)


def test_unsized_operators_take_images_and_full_transforms_by_role():
    from scoreinv.operators import RadonOp

    image = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    sized = RadonOp(8, image_size=16)
    assert torch.allclose(RadonOp(8).transform(image), sized.transform(image))
    full = sized.transform(image)
    assert torch.allclose(RadonOp(8).transform_adjoint(full), sized.transform_adjoint(full))
    colour = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(GrayscaleOp().transform_adjoint(colour), GrayscaleOp(4).transform_adjoint(colour))
    assert torch.equal(GrayscaleOp().subsample(colour), GrayscaleOp(4).subsample(colour))


@pytest.mark.parametrize("damping", [1e2, 1e4, 1e6])
def test_damped_cgls_stops_at_the_rounding_floor_instead_of_diverging(damping):
    """Without its stopping rule damped CG ran on past convergence and reached 1e9–1e13 here."""
    from scoreinv.operators import RadonOp

    op = RadonOp(8, image_size=16)
    y = op(torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    converged = least_squares(op, y, iterations=50, damping=damping)
    assert torch.allclose(least_squares(op, y, iterations=300, damping=damping), converged, rtol=1e-4, atol=1e-7)
    assert float(converged.abs().max()) < 1.0
