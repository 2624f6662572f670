"""scoreinv.reconstruct / scoreinv.posterior: kinds in = kinds out, seeds, defaults, clear errors."""

import numpy as np
import pytest
import torch

import scoreinv
from scoreinv.gaussian import GaussianPrior
from scoreinv.operators import GrayscaleOp, LinearOperator, MaskOp, RadonOp
from scoreinv.reconstruct import posterior, reconstruct, resolve_settings
from scoreinv.sde import VESDE


def smooth_prior(side=16, channels=1):
    mean = torch.full((channels, side, side), 0.5)
    variance = torch.full((channels, side, side), 0.05)
    return GaussianPrior(VESDE(0.01, 10.0), mean, variance)


@pytest.fixture()
def ct():
    prior = smooth_prior(16)
    operator = RadonOp(4, image_size=16)
    x = prior.sample(2, torch.Generator().manual_seed(0))
    return prior, operator, operator(x)


def test_numpy_in_numpy_out_and_torch_in_torch_out(ct):
    prior, operator, y = ct
    single = reconstruct(y[0].numpy(), operator, prior, steps=20, seed=0, progress=False)
    assert isinstance(single, np.ndarray) and single.shape == (1, 16, 16)
    batch = reconstruct(y, operator, prior, steps=20, seed=0, progress=False)
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 1, 16, 16)


def test_same_seed_same_result_and_batch_items_are_seeded_together(ct):
    prior, operator, y = ct
    first = reconstruct(y, operator, prior, steps=20, seed=3, progress=False)
    again = reconstruct(y, operator, prior, steps=20, seed=3, progress=False)
    other = reconstruct(y, operator, prior, steps=20, seed=4, progress=False)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_posterior_returns_mean_std_and_samples(ct):
    prior, operator, y = ct
    result = posterior(y.numpy(), operator, prior, steps=20, num_samples=5, seed=0, progress=False)
    assert result.samples.shape == (2, 5, 1, 16, 16)
    np.testing.assert_allclose(result.mean, result.samples.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.std, result.samples.std(axis=1, ddof=1), rtol=1e-4, atol=1e-6)
    # the noise-free final projection pins the few pixels the data determine alone (std 0 there)
    assert (result.std > 0).mean() > 0.9
    assert result.settings["method"] == "decomposed" and result.settings["num_samples"] == 5
    assert result.nfe == 20  # noise-free CT defaults to the decomposed sampler: one evaluation per step
    assert result.evaluations_per_item == 100  # 5 trajectories of 20 evaluations per measurement
    # reconstruct with num_samples > 1 is the posterior mean
    mean = reconstruct(y.numpy(), operator, prior, steps=20, num_samples=5, seed=0, progress=False)
    np.testing.assert_array_equal(mean, result.mean)


def test_inpainting_keeps_the_measured_pixels():
    prior = smooth_prior(8)
    operator = MaskOp(image_size=8, boxes=[(2, 2, 4, 4)])
    x = prior.sample(1, torch.Generator().manual_seed(1))
    y = operator(x)
    x_hat = reconstruct(y, operator, prior, steps=50, seed=0, progress=False)
    known = operator.mask.bool().expand_as(x_hat)
    assert torch.allclose(x_hat[known], x[known], atol=1e-5)
    assert (resolve_settings(operator).method, resolve_settings(operator).zeta) == ("decomposed", 0.7)


def test_colorization_keeps_the_gray_image():
    prior = smooth_prior(8, channels=3)
    operator = GrayscaleOp(image_size=8)
    x = prior.sample(2, torch.Generator().manual_seed(2))
    y = operator(x)
    x_hat = reconstruct(y, operator, prior, steps=50, seed=0, progress=False)
    assert torch.allclose(operator(x_hat), y, atol=1e-5)


def test_defaults_per_operator_family_then_method_then_user():
    noisy = resolve_settings(RadonOp(23, image_size=32, noise_std=0.1))
    assert (noisy.method, noisy.steps, noisy.num_samples, noisy.zeta, noisy.damping_weight) == (
        "decomposed", 50, 2, 0.9, 0.5)
    clean = resolve_settings(RadonOp(23, image_size=32))
    assert (clean.num_samples, clean.zeta, clean.eta) == (2, 0.85, None)  # ζ, not η
    assert (clean.cg_iterations, clean.projection_iterations, clean.projection_noise_level) == (7, 300, 0.1)
    assert (noisy.projection_iterations, noisy.projection_noise_level) == (7, None)
    assert resolve_settings(RadonOp(23, image_size=32), settings=clean) == clean  # resolves to itself
    masked = resolve_settings(MaskOp(image_size=8, fraction=0.5), method="decomposed")
    assert (masked.zeta, masked.eta) == (0.7, None)
    # setting η brings back DDIM's rule: the family's ζ does not apply; setting both is an error
    assert resolve_settings(RadonOp(23, image_size=32), eta=0.5).zeta is None
    with pytest.raises(ValueError, match="set eta or zeta, not both"):
        resolve_settings(RadonOp(23, image_size=32), eta=0.5, zeta=1.0)
    # choosing a method takes the family's settings for that method
    noisy = resolve_settings(RadonOp(23, image_size=32, noise_std=0.1), method="consistency")
    assert (noisy.final_iterations, noisy.step_filter, noisy.final_filter, noisy.num_samples) == (
        0, "shepp-logan", "hann", 1)
    assert resolve_settings(MaskOp(image_size=8, fraction=0.5)).method == "decomposed"
    assert resolve_settings(MaskOp(image_size=8, fraction=0.5, noise_std=0.1)).method == "replacement"
    assert resolve_settings(GrayscaleOp(8)).steps == 100
    # a method the family does not default to takes the method's own defaults for what it reads
    guided = resolve_settings(RadonOp(23, image_size=32), method="guidance")
    assert guided.guidance_scale == 1.0 and guided.guidance_max_ratio == 10.0
    # the user's choice wins, from a settings object or a keyword; None leaves a field unset
    chosen = resolve_settings(RadonOp(23, image_size=32), {"steps": 70}, method="consistency", weight=0.5, snr=None)
    assert (chosen.steps, chosen.weight, chosen.snr) == (70, 0.5, 0.246)
    with pytest.raises(ValueError, match="'consistency' needs at least 50 steps, got 7"):
        resolve_settings(RadonOp(23, image_size=32), {"steps": 7}, method="consistency")
    with pytest.raises(ValueError, match="stepz"):
        resolve_settings(RadonOp(23, image_size=32), stepz=3)
    with pytest.raises(ValueError, match="unknown predictor"):
        resolve_settings(RadonOp(23, image_size=32), predictor="leapfrog")


def test_a_method_registered_from_outside_runs_through_posterior(ct):
    from scoreinv.solvers import METHODS, Method, register_method

    prior, operator, y = ct

    @register_method
    class PriorOnly(Method):
        """Ignores the data: unconditional samples (checks the registry path, not quality)."""

        name = "prior-only-test"

        def supports(self, operator):
            return True

        def build(self, score_fn, sde, operator, y, settings):
            return score_fn, None

    try:
        result = posterior(y, operator, prior, method="prior-only-test", steps=5, progress=False)
        assert result.settings["method"] == "prior-only-test" and result.nfe == 10
        unconditional = scoreinv.sample(prior, (2, 1, 16, 16), steps=5, snr=0.246, progress=False,
                                        generator=torch.Generator().manual_seed(0))
        assert torch.allclose(result.mean, unconditional, atol=1e-5)
    finally:
        METHODS.pop("prior-only-test")


def test_fbp_windows_reach_the_consistency_steps_and_other_operators_refuse_them(ct):
    prior, operator, y = ct
    options = dict(method="consistency", steps=50, seed=0, progress=False, final_iterations=0)
    ramp = posterior(y, operator, prior, **options).mean
    assert torch.equal(ramp, posterior(y, operator, prior, step_filter="ram-lak", final_filter="ram-lak",
                                       **options).mean)
    smooth = posterior(y, operator, prior, step_filter="hann", final_filter="hann", **options)
    assert not torch.allclose(ramp, smooth.mean)
    assert smooth.settings["step_filter"] == "hann"
    mask = MaskOp(image_size=16, fraction=0.5, generator=torch.Generator().manual_seed(0))
    x = prior.sample(1, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="which MaskOp cannot use: MaskOp has no option 'fbp_filter'"):
        posterior(mask(x), mask, prior, method="replacement", steps=2, step_filter="hann", progress=False)
    with pytest.raises(ValueError, match="final_filter"):
        posterior(y, operator, prior, steps=2, final_filter="gauss", progress=False)


class Blur(LinearOperator):
    """A differentiable operator outside the subsampled-transform family (3-tap horizontal blur)."""

    def __init__(self, side):
        super().__init__((1, side, side), (1, side, side))

    def _forward(self, x):
        return (x + x.roll(1, -1) + x.roll(-1, -1)) / 3

    def _adjoint(self, y):
        return (y + y.roll(-1, -1) + y.roll(1, -1)) / 3


def test_guidance_works_for_any_differentiable_operator_and_is_the_default():
    prior = smooth_prior(8)
    operator = Blur(8)
    assert resolve_settings(operator).method == "guidance"
    x = prior.sample(1, torch.Generator().manual_seed(3))
    y = operator(x)
    x_hat = reconstruct(y, operator, prior, steps=100, seed=0, progress=False)
    # the reconstruction explains the data far better than the prior mean does
    assert (operator(x_hat) - y).norm() < 0.5 * (operator(torch.full_like(x, 0.5)) - y).norm()
    with pytest.raises(ValueError, match="'consistency' does not suit Blur"):
        reconstruct(y, operator, prior, method="consistency", progress=False)


@pytest.mark.parametrize("make_input, message", [
    (lambda y: y[..., :-1], "measurements of shape"),
    (lambda y: y.unsqueeze(0), "has 5 dimensions"),
    (lambda y: torch.full_like(y, float("nan")), "NaN or inf"),
    (lambda y: y.numpy().astype(complex), "real numbers"),
    (lambda y: y.tolist(), "numpy array or a torch tensor"),
])
def test_bad_measurements_are_refused(ct, make_input, message):
    prior, operator, y = ct
    with pytest.raises(ValueError, match=message):
        reconstruct(make_input(y), operator, prior, steps=5, progress=False)


def test_operator_and_model_sizes_must_agree(ct):
    prior, _, _ = ct
    operator = RadonOp(4, image_size=32)
    y = torch.zeros(1, *operator.out_shape)
    with pytest.raises(ValueError, match=r"32.*16|16.*32"):
        reconstruct(y, operator, prior, progress=False)
    with pytest.raises(ValueError, match=r"no registered prior fits a sinogram of 46 detectors .* 1-channel 32×32 "
                       r"images; the registered priors take measurements of shape \(1, 4, 91\) \(91 detectors, "
                       r"64×64 images: ct-anatomy, ct-phantom, ct-patch\).*scoreinv train"):
        reconstruct(y, operator, None, progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        reconstruct(torch.zeros(1, *RadonOp(4, image_size=16).out_shape), RadonOp(4, image_size=16),
                    prior, method="magic", progress=False)
    assert scoreinv.reconstruct is reconstruct
