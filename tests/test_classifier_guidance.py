"""Classifier guidance against closed forms: two Gaussian classes N(μ_c, Σ) with a shared Σ.

The exact time-dependent classifier, the exact mixture score and the exact class-conditional
score are known (scoreinv.gaussian.GaussianClasses), so Bayes' rule can be checked pointwise and
the guided sampler's samples against N(μ_c, Σ).
"""

import pytest
import torch

from scoreinv.gaussian import GaussianClasses
from scoreinv.sampling import ClassifierGuidedScore, ode_sample, pc_sample, sample
from scoreinv.sde import VESDE, VPSDE


def two_classes(sde, dtype=torch.float64):
    """μ_0 = −1, μ_1 = +1 per pixel (apart by ~2.6 class stds), a correlated 4×4 Σ on 2×2 images."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    covariance = 0.15 * (a @ a.T) / 4 + 0.1 * torch.eye(4, dtype=torch.float64)
    means = torch.stack([torch.full((1, 2, 2), -1.0), torch.tensor([[[1.0, 0.5], [0.8, 1.2]]])]).double()
    return GaussianClasses(sde, means, covariance)


@pytest.mark.parametrize("sde", [VESDE(0.01, 10.0), VPSDE()], ids=["ve", "vp"])
@pytest.mark.parametrize("label", [0, 1])
def test_guided_score_is_the_class_conditional_score(sde, label):
    classes = two_classes(sde)
    x = 2 * torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.linspace(1e-3, 1.0, 64, dtype=torch.float64)
    guided = ClassifierGuidedScore(classes, classes.logits, label, scale=1.0)(x, t)
    exact = classes.class_prior(label)(x, t)
    assert torch.allclose(guided, exact, rtol=1e-9, atol=1e-9 * exact.abs().max().item())
    # The guidance term alone is the (exact) gradient of log p_t(c | x): not zero, not the score.
    term = guided - classes(x, t)
    assert term.abs().max() > 1e-2


def test_scale_zero_is_the_prior_score_and_scale_two_doubles_the_term():
    classes = two_classes(VPSDE())
    x = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t = torch.full((8,), 0.3, dtype=torch.float64)
    prior = classes(x, t)
    assert torch.equal(ClassifierGuidedScore(classes, classes.logits, 1, 0.0)(x, t), prior)
    one = ClassifierGuidedScore(classes, classes.logits, 1, 1.0)(x, t) - prior
    two = ClassifierGuidedScore(classes, classes.logits, 1, 2.0)(x, t) - prior
    assert torch.allclose(two, 2 * one, rtol=1e-12, atol=1e-12)


def test_per_item_labels():
    classes = two_classes(VPSDE())
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = torch.full((4,), 0.5, dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0])
    guided = ClassifierGuidedScore(classes, classes.logits, labels)(x, t)
    for i, label in enumerate(labels.tolist()):
        assert torch.allclose(guided[i], classes.class_prior(label)(x[i:i + 1], t[i:i + 1])[0], atol=1e-10)


def test_bad_guidance_arguments_are_refused():
    classes = two_classes(VPSDE())
    with pytest.raises(ValueError, match="scale must be >= 0"):
        ClassifierGuidedScore(classes, classes.logits, 0, -1.0)
    with pytest.raises(TypeError, match="callable"):
        ClassifierGuidedScore(classes, "not a classifier", 0)
    x, t = torch.zeros(2, 1, 2, 2, dtype=torch.float64), torch.full((2,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="out of range"):
        ClassifierGuidedScore(classes, classes.logits, 5)(x, t)
    with pytest.raises(ValueError, match="needs the class"):
        sample(classes, (2, 1, 2, 2), classifier=classes.logits, steps=3, progress=False)


# Tolerance of the sampler checks: 2000 samples give a standard error of 2.2% of a std on each
# mean and ~1.6% on each std; the samplers' discretisation adds a few per cent. Means within
# 0.1 std, stds within 10%.
MEAN_TOLERANCE, STD_TOLERANCE = 0.1, 0.10


def check_moments(samples, classes, label):
    prior = classes.class_prior(label)
    std = prior.covariance().diagonal().sqrt().reshape(prior.item_shape)
    mean_error = ((samples.double().mean(0) - prior.mean) / std).abs().max().item()
    std_ratio = (samples.double().std(0) / std - 1).abs().max().item()
    assert mean_error < MEAN_TOLERANCE, mean_error
    assert std_ratio < STD_TOLERANCE, std_ratio


@pytest.mark.parametrize("label", [0, 1])
@pytest.mark.parametrize("predictor,corrector", [
    ("reverse_diffusion", "none"),
    pytest.param("euler_maruyama", "annealed_langevin", marks=pytest.mark.slow),
    pytest.param("ancestral", "none", marks=pytest.mark.slow),
    pytest.param("ddim", "none", marks=pytest.mark.slow),
])
def test_guided_pc_sampler_reproduces_the_class(label, predictor, corrector):
    classes = two_classes(VPSDE())
    guided = ClassifierGuidedScore(classes, classes.logits, label, scale=1.0)
    result = pc_sample(guided, classes.sde, (2000, 1, 2, 2), steps=200, predictor=predictor, corrector=corrector,
                       snr=0.16, generator=torch.Generator().manual_seed(10 + label), progress=False,
                       dtype=torch.float64)
    check_moments(result.samples, classes, label)


@pytest.mark.parametrize("label", [0, 1])
def test_guided_probability_flow_ode_reproduces_the_class(label):
    # VP: its p_T matches N(0, I) closely; the ODE, being deterministic, would carry VE's
    # p_T mismatch (a mean offset μ_c/σ_max at T) through to the samples.
    classes = two_classes(VPSDE())
    guided = ClassifierGuidedScore(classes, classes.logits, label, scale=1.0)
    result = ode_sample(guided, classes.sde, (2000, 1, 2, 2), rtol=1e-4, atol=1e-4,
                        generator=torch.Generator().manual_seed(20 + label), progress=False)
    check_moments(result.samples, classes, label)


def test_unguided_sampler_gives_the_mixture():
    """scale 0 samples both classes: half the samples near each mean (the test would pass for a
    guided sampler only if guidance did nothing)."""
    classes = two_classes(VPSDE())
    samples = sample(classes, (2000, 1, 2, 2), steps=100, corrector="none", classifier=classes.logits, label=0,
                     classifier_scale=0.0, seed=5, progress=False)
    share = torch.softmax(classes.logits(samples.double(), torch.full((2000,), 1e-3, dtype=torch.float64)), 1)[:, 0]
    assert abs(float((share > 0.5).float().mean()) - 0.5) < 0.05


def test_posterior_combines_the_operator_and_the_class():
    """Inpainting under a class: known pixels stay exact; the unknown ones follow the requested class's
    conditional mean (E[x_u | x_k, c] of N(μ_c, Σ)), and the settings record what ran."""
    import scoreinv
    from scoreinv.operators import MaskOp

    classes = two_classes(VPSDE())
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    operator = MaskOp(mask)
    y = torch.zeros(300, 1, 2, 2)  # the known pixel is 0, halfway between the classes' means there
    known, unknown = mask.flatten().bool(), ~mask.flatten().bool()
    covariance = classes.class_prior(0).covariance()
    gain = covariance[unknown][:, known] @ torch.linalg.inv(covariance[known][:, known])
    expected = []
    for label in (0, 1):
        mean = classes.class_prior(label).mean.flatten()
        expected.append(mean[unknown] + (gain @ (torch.zeros(1, dtype=torch.float64) - mean[known])))
    for label in (0, 1):
        result = scoreinv.posterior(y, operator, classes, classifier=classes.logits, label=label, classifier_scale=1.0,
                                    method="replacement", steps=200, seed=label, progress=False)
        samples = result.samples.reshape(300, 4).double()
        assert torch.equal(samples[:, known], torch.zeros(300, 1, dtype=torch.float64))
        # Replacement is not the exact posterior for correlated pixels (about 0.1 of a std off here,
        # as without a class); the classes' conditional means are 1.5 to 2.5 apart.
        found = samples[:, unknown].mean(0)
        assert (found - expected[label]).abs().max() < 0.25
        assert (found - expected[1 - label]).abs().min() > 1.0
        assert result.settings["label"] == label and result.settings["classifier_scale"] == 1.0
