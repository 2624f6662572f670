"""The consistency, guidance and registry parts of the solvers one by one, against closed forms (fast).

A mask operator A = diag(m) has T = I and an exact T⁻¹, so the λ-step is
x + λ m ⊙ (ŷ_t − m ⊙ x), the final CG projection with damping δ is x + m ⊙ (y − m ⊙ x) / (1 + δ)
(one CG iteration is exact: AᵀA has the eigenvalues 0 and 1), and the DPS term of the score
s(x) = −a x has the closed form used below.
"""

import math

import pytest
import torch
from pydantic import ValidationError

from scoreinv.config import ReconstructionSettings
from scoreinv.operators import GrayscaleOp, MaskOp, RadonOp, least_squares
from scoreinv.sampling import pc_sample
from scoreinv.sde import VESDE, VPSDE
from scoreinv.solvers import METHODS, conditional_sample, get_method, register_method
from scoreinv.solvers.consistency import MeasurementConsistency, _mean_squared_row_norm
from scoreinv.solvers.guidance import GuidedScore
from scoreinv.solvers.methods import (Consistency, ConsistencySettings, Guidance, GuidanceSettings, Replacement,
                                      ReplacementSettings)
from scoreinv.solvers.registry import Method, MethodSettings, PCSettings

from test_decomposed_steps import MASK, mask_problem  # the 3×3 mask problem, on which one CG step is exact

STATE = torch.linspace(0.4, -0.3, 18).reshape(2, 1, 3, 3)


# --- MeasurementConsistency ----------------------------------------------------------------------

def test_consistency_refuses_unsuitable_operators_and_values_with_their_messages():
    sde = VESDE(0.01, 10.0)
    operator, y = mask_problem()
    composed = GrayscaleOp(3) @ MaskOp(torch.ones(3, 3), channels=3)
    with pytest.raises(ValueError, match=r"^measurement consistency needs a subsampled-transform operator \(A = Λ T "
                                         r"with transform / inverse_transform / mask\), got ComposedOperator; "
                                         r"use method='guidance'$"):
        MeasurementConsistency(sde, composed, y)
    arc = RadonOp(angles=torch.linspace(0, 1.0, 5), image_size=8)
    with pytest.raises(ValueError, match=r"^measurement consistency needs the full transform T of A = Λ T, which "
                                         r"this RadonOp lacks: its 5 angles do not fill"):
        MeasurementConsistency(sde, arc, torch.zeros(1, *arc.out_shape))
    for weight in (-0.01, 1.01, math.nan):
        with pytest.raises(ValueError, match=rf"^the consistency weight λ must lie in \[0, 1\], got {weight}$"):
            MeasurementConsistency(sde, operator, y, weight=weight)
    for values in ({"final_iterations": -1}, {"final_damping": -0.1}):
        with pytest.raises(ValueError, match=r"^final_iterations and final_damping must be >= 0$"):
            MeasurementConsistency(sde, operator, y, **values)
    for kappa in (-0.5, math.nan):
        with pytest.raises(ValueError, match=rf"^noise_weight κ must be >= 0, got {kappa}$"):
            MeasurementConsistency(sde, operator, y, noise_weight=kappa)
    with pytest.raises(ValueError, match=r"^step_filter='hann' sets an FBP window, which MaskOp cannot use: "
                                         r"MaskOp has no option 'fbp_filter'"):
        MeasurementConsistency(sde, operator, y, step_filter="hann")
    with pytest.raises(ValueError, match=r"^final_filter='cosine' sets an FBP window"):
        MeasurementConsistency(sde, operator, y, final_filter="cosine")
    for weight in (0.0, 1.0):
        MeasurementConsistency(sde, operator, y, weight=weight, final_iterations=0, final_damping=0.0,
                               noise_weight=0.0)


def test_consistency_defaults_and_stored_values():
    sde = VESDE(0.01, 10.0)
    operator, y = mask_problem(noise_std=0.5)
    step = MeasurementConsistency(sde, operator, y)
    assert step.sde is sde and step.operator is operator and step.y is y
    assert (step.weight, step.final_iterations, step.final_damping) == (1.0, 0, 0.0)
    assert step.step_filter is None and step.final_filter is None
    assert step.noise_variance == 0.0 and step.row_norm == 0.0
    assert step.step_inverse is operator and step.final_inverse is operator
    other = MeasurementConsistency(sde, operator, y, weight=1, final_iterations=3.0, final_damping=2,
                                   noise_weight=3)
    assert type(other.weight) is float and type(other.final_iterations) is int and type(other.final_damping) is float
    assert other.final_iterations == 3 and other.final_damping == 2.0
    assert other.noise_variance == pytest.approx((3 * 0.5) ** 2, rel=1e-12)
    assert other.row_norm == _mean_squared_row_norm(operator, y)


def test_mean_squared_row_norm_is_over_the_live_rows_of_eight_fixed_probes():
    operator, y = mask_problem()
    probes = torch.randn((8, 1, 3, 3), generator=torch.Generator().manual_seed(0))
    expected = float((MASK * probes).pow(2).sum() / (5 * 8))
    assert _mean_squared_row_norm(operator, y) == pytest.approx(expected, rel=1e-6)
    doubles = torch.randn((8, 1, 3, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected_double = float((MASK.double() * doubles).pow(2).sum() / (5 * 8))
    assert expected_double != pytest.approx(expected, rel=1e-3)  # the probes are drawn in y's dtype
    assert _mean_squared_row_norm(operator, y.double()) == pytest.approx(expected_double, rel=1e-12)
    empty = MaskOp(torch.zeros(3, 3))
    assert _mean_squared_row_norm(empty, y) == 0.0  # no live row: 0, not a division by zero


@pytest.mark.parametrize("kappa", [0.0, 1.5])
def test_consistency_step_is_the_weighted_pull_toward_the_noised_measurement(kappa):
    sde = VPSDE()
    operator, y = mask_problem(noise_std=0.3)
    step = MeasurementConsistency(sde, operator, y, weight=0.6, noise_weight=kappa)
    t = torch.tensor([0.2, 0.6])
    moved = step.project(STATE, t, torch.Generator().manual_seed(5))
    z = torch.randn(STATE.shape, generator=torch.Generator().manual_seed(5))
    mean = sde.mean_coefficient(t).view(2, 1, 1, 1)
    std = sde.marginal_std(t).view(2, 1, 1, 1)
    target = mean * y + std * MASK * z
    weight = 0.6 * torch.ones(2, 1, 1, 1)
    if kappa:
        signal = std**2 * step.row_norm
        weight = 0.6 * signal / (signal + mean**2 * (kappa * 0.3) ** 2)
        assert float(weight.min()) < 0.5 < float(weight.max()) < 0.599  # the gain differs per item
    assert torch.allclose(moved, STATE + weight * MASK * (target - MASK * STATE), atol=1e-6)
    silent = MeasurementConsistency(sde, operator, y, weight=0.0)
    assert silent.project(STATE, t, None) is STATE


def test_finish_replaces_or_projects_with_damping():
    sde = VESDE(0.01, 10.0)
    operator, y = mask_problem()
    replace = MeasurementConsistency(sde, operator, y, weight=0.3)
    assert torch.allclose(replace.finish(STATE), STATE + MASK * (y - MASK * STATE), atol=1e-7)
    damped = MeasurementConsistency(sde, operator, y, weight=0.3, final_iterations=2, final_damping=0.5)
    assert torch.allclose(damped.finish(STATE), STATE + MASK * (y - MASK * STATE) / 1.5, atol=1e-6)


def test_fbp_windows_reach_the_steps_and_the_final_replacement():
    sde = VESDE(0.01, 10.0)
    operator = RadonOp(6, image_size=8)
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = operator(torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    hann = operator.with_options(fbp_filter="hann")
    step = MeasurementConsistency(sde, operator, y, weight=0.5, step_filter="hann", final_filter="cosine")
    assert step.step_filter == "hann" and step.final_filter == "cosine"
    t = torch.tensor([0.4])
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    target = y + float(sde.marginal_std(t)) * operator(noise)
    expected = x + hann.inverse_transform_measured(0.5 * (target - operator(x)))
    assert torch.allclose(step.project(x, t, torch.Generator().manual_seed(2)), expected, atol=1e-5)
    cosine = operator.with_options(fbp_filter="cosine")
    assert torch.allclose(step.finish(x), x + cosine.inverse_transform_measured(y - operator(x)), atol=1e-5)
    plain = x + operator.inverse_transform_measured(y - operator(x))
    assert not torch.allclose(step.finish(x), plain, atol=1e-3)
    projected = MeasurementConsistency(sde, operator, y, final_iterations=4, final_damping=0.2).finish(x)
    assert torch.allclose(projected, x + least_squares(operator, y - operator(x), iterations=4, damping=0.2))


# --- GuidedScore ---------------------------------------------------------------------------------

def linear_score(x, t):
    return -2.0 * x


def test_guidance_refuses_bad_values_and_keeps_good_ones():
    sde = VESDE(0.01, 10.0)
    operator, y = mask_problem()
    for std in (-0.1, math.nan):
        with pytest.raises(ValueError, match=rf"^the measurement std σ_y must be >= 0, got {std}$"):
            GuidedScore(linear_score, sde, operator, y, std)
    for scale in (-1.0, math.nan):
        with pytest.raises(ValueError, match=rf"^the guidance scale ζ must be >= 0, got {scale}$"):
            GuidedScore(linear_score, sde, operator, y, 0.1, scale=scale)
    for ratio in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match=rf"^the guidance cap ρ \(max_ratio\) must be > 0 or None, got {ratio}$"):
            GuidedScore(linear_score, sde, operator, y, 0.1, max_ratio=ratio)
    guided = GuidedScore(linear_score, sde, operator, y, 0, scale=0, max_ratio=3)
    assert guided.score_fn is linear_score and guided.sde is sde and guided.operator is operator and guided.y is y
    assert (guided.measurement_std, guided.scale, guided.max_ratio) == (0.0, 0.0, 3.0)
    assert type(guided.measurement_std) is float and type(guided.scale) is float and type(guided.max_ratio) is float
    default = GuidedScore(linear_score, sde, operator, y, 0.1)
    assert default.scale == 1.0 and default.max_ratio is None


def dps_closed_form(sde, y, x, t, sigma_y, scale):
    """s(x) − ζ ∇‖y − m ⊙ x̂₀‖² / (2 s²) for s(x) = −2x, x̂₀ = x (1 − 2 std²) / m(t), s² detached."""
    mean = sde.mean_coefficient(t).view(-1, 1, 1, 1)
    std = sde.marginal_std(t).view(-1, 1, 1, 1)
    factor = (1 - 2 * std**2) / mean
    residual = y - MASK * factor * x
    variance = (residual.flatten(1).pow(2).sum(1) / 9).clamp_min(sigma_y**2).view(-1, 1, 1, 1)
    gradient = -factor * MASK * residual / variance
    return -2.0 * x - scale * gradient


def test_guided_score_is_the_dps_closed_form():
    sde = VPSDE()
    operator, y = mask_problem()
    t = torch.tensor([0.05, 0.1], dtype=torch.float64)
    x = STATE.double()
    y = y.double()
    # item 0: a small residual, so s² = σ_y²; item 1: the mean squared residual is larger
    y[0] = MASK * x[0] * float((1 - 2 * sde.marginal_std(t[:1]) ** 2) / sde.mean_coefficient(t[:1])) + 0.01 * MASK
    guided = GuidedScore(linear_score, sde, operator, y, 0.2, scale=0.7)
    result = guided(x, t)
    assert torch.allclose(result, dps_closed_form(sde, y, x, t, 0.2, 0.7), atol=1e-10)
    residual = y - MASK * x * ((1 - 2 * sde.marginal_std(t) ** 2) / sde.mean_coefficient(t)).view(-1, 1, 1, 1)
    mean_squared = residual.flatten(1).pow(2).sum(1) / 9
    assert mean_squared[0] < 0.2**2 < mean_squared[1]  # both branches of the plug-in variance are checked
    assert not result.requires_grad


def test_guidance_cap_scales_each_item_to_ratio_times_the_score():
    sde = VESDE(0.01, 10.0)
    operator, y = mask_problem()
    x = STATE.double()
    y = 20.0 * y.double()
    t = torch.tensor([0.3, 0.3], dtype=torch.float64)
    free = dps_closed_form(sde, y, x, t, 0.1, 1.0) + 2.0 * x
    capped = GuidedScore(linear_score, sde, operator, y, 0.1, max_ratio=0.05)(x, t) + 2.0 * x
    allowed = 0.05 * (2.0 * x).flatten(1).norm(dim=1)
    factor = (allowed / free.flatten(1).norm(dim=1)).clamp(max=1.0)
    assert float(factor.max()) < 1  # the cap is active on both items
    assert torch.allclose(capped, free * factor.view(-1, 1, 1, 1), atol=1e-10)
    loose = GuidedScore(linear_score, sde, operator, y, 0.1, max_ratio=1e6)(x, t) + 2.0 * x
    assert torch.allclose(loose, free, atol=1e-10)


def test_guidance_without_residual_and_noise_is_the_score():
    """y = A x̂₀ and σ_y = 0: s² = 0 is floored at the smallest positive float, the term is 0 (not NaN),
    and a zero term under a cap stays 0."""
    sde = VESDE(0.01, 10.0)
    operator = MaskOp(MASK)
    t = torch.tensor([0.3, 0.3])
    factor = float(1 - 2 * sde.marginal_std(t[:1]) ** 2)
    y = MASK * factor * STATE
    for ratio in (None, 2.0):
        score = GuidedScore(linear_score, sde, operator, y, 0.0, max_ratio=ratio)(STATE, t)
        assert torch.isfinite(score).all()
        assert torch.allclose(score, -2.0 * STATE, atol=1e-6)
    zero = GuidedScore(linear_score, sde, operator, y, 0.0, scale=0.0, max_ratio=2.0)(STATE, t)
    assert torch.equal(zero, -2.0 * STATE)


# --- the built-in methods and the registry --------------------------------------------------------

def test_method_settings_defaults_and_bounds():
    base = MethodSettings(steps=1)
    assert (base.num_samples, base.seed, base.time_grid) == (1, 0, "uniform")
    pc = PCSettings(steps=3)
    assert (pc.predictor, pc.corrector, pc.snr, pc.corrector_steps) == ("reverse_diffusion", "langevin", 0.16, 1)
    assert ReplacementSettings(steps=3).step_filter is None and ReplacementSettings(steps=3).final_filter is None
    consistency = ConsistencySettings(steps=3)
    assert (consistency.weight, consistency.final_iterations, consistency.final_damping,
            consistency.noise_weight) == (1.0, 20, 0.0, 0.0)
    guidance = GuidanceSettings(steps=3)
    assert (guidance.guidance_scale, guidance.guidance_max_ratio) == (1.0, 10.0)
    for model, values in ((MethodSettings, {"seed": 2**63 - 1}), (PCSettings, {"snr": 0.0, "corrector_steps": 0}),
                          (ConsistencySettings, {"weight": 0.0, "final_iterations": 0, "final_damping": 0.0,
                                                 "noise_weight": 0.0, "step_filter": "hann",
                                                 "final_filter": "shepp-logan"}),
                          (ConsistencySettings, {"weight": 1.0, "step_filter": "ram-lak", "final_filter": "cosine"}),
                          (GuidanceSettings, {"guidance_scale": 0.0, "guidance_max_ratio": 0.01})):
        model(steps=1, **values)
    for model, values in ((MethodSettings, {"steps": 0}), (MethodSettings, {"num_samples": 0}),
                          (MethodSettings, {"seed": -1}), (MethodSettings, {"seed": 2**63}),
                          (MethodSettings, {"time_grid": "linear"}), (MethodSettings, {"bogus": 1}),
                          (PCSettings, {"snr": -0.1}), (PCSettings, {"corrector_steps": -1}),
                          (ConsistencySettings, {"weight": -0.1}), (ConsistencySettings, {"weight": 1.1}),
                          (ConsistencySettings, {"final_iterations": -1}), (ConsistencySettings, {"final_damping": -1}),
                          (ConsistencySettings, {"noise_weight": -1}), (ConsistencySettings, {"step_filter": "box"}),
                          (GuidanceSettings, {"guidance_scale": -1}), (GuidanceSettings, {"guidance_max_ratio": 0})):
        with pytest.raises(ValidationError):
            model(**{"steps": 1, **values})
    with pytest.raises(ValidationError, match="frozen"):
        base.steps = 2


def test_built_in_methods_are_registered_with_their_floors():
    consistency, replacement, guidance = (get_method(name) for name in ("consistency", "replacement", "guidance"))
    assert isinstance(consistency, Consistency) and consistency.settings_model is ConsistencySettings
    assert isinstance(replacement, Replacement) and replacement.settings_model is ReplacementSettings
    assert isinstance(guidance, Guidance) and guidance.settings_model is GuidanceSettings
    assert consistency.requires == frozenset({"full-transform"}) == replacement.requires
    assert guidance.requires == frozenset()
    radon = RadonOp(8, image_size=16)
    assert consistency.minimum_steps_for(radon) == (
        50, "with fewer it fell below FBP on the bundled CT prior; method='decomposed' works from a few steps")
    assert guidance.minimum_steps_for(radon) == (
        100, "with fewer it diverged on the bundled CT prior; method='decomposed' works from a few steps")
    assert replacement.minimum_steps_for(radon) == (
        100, "on RadonOp, its replacement step is inexact where T⁻¹ is approximate (an FBP): fewer fell below "
             "SIRT on the bundled CT prior; method='decomposed' works from a few steps")
    assert replacement.minimum_steps_for(MaskOp(MASK)) == (2, "a step from T to the end needs two time points")


def test_methods_build_their_steps_from_the_settings():
    sde = VESDE(0.01, 10.0)
    operator = RadonOp(6, image_size=8, noise_std=0.25)
    y = torch.zeros(1, *operator.out_shape)
    settings = ConsistencySettings(steps=60, weight=0.4, final_iterations=6, final_damping=0.3,
                                   step_filter="hann", final_filter="cosine", noise_weight=0.5)
    score, step = Consistency().build(linear_score, sde, operator, y, settings)
    assert score is linear_score and isinstance(step, MeasurementConsistency)
    assert (step.sde, step.operator, step.y) == (sde, operator, y)
    assert (step.weight, step.final_iterations, step.final_damping) == (0.4, 6, 0.3)
    assert (step.step_filter, step.final_filter) == ("hann", "cosine")
    assert step.noise_variance == pytest.approx((0.5 * 0.25) ** 2)
    score, step = Replacement().build(linear_score, sde, operator, y,
                                      ReplacementSettings(steps=100, step_filter="hann", final_filter="cosine"))
    assert score is linear_score and (step.sde, step.operator, step.y) == (sde, operator, y)
    assert (step.weight, step.final_iterations, step.final_damping, step.noise_variance) == (1.0, 0, 0.0, 0.0)
    assert (step.step_filter, step.final_filter) == ("hann", "cosine")
    guided, nothing = Guidance().build(linear_score, sde, operator, y,
                                       GuidanceSettings(steps=100, guidance_scale=0.3, guidance_max_ratio=4.0))
    assert nothing is None and isinstance(guided, GuidedScore)
    assert (guided.score_fn, guided.sde, guided.operator, guided.y) == (linear_score, sde, operator, y)
    assert (guided.measurement_std, guided.scale, guided.max_ratio) == (0.25, 0.3, 4.0)


def test_method_sample_is_the_pc_loop_with_the_settings():
    sde = VESDE(0.01, 10.0)
    operator, y = mask_problem()
    settings = ReconstructionSettings(method="consistency", steps=4, snr=0.2, weight=0.5, final_iterations=0,
                                      final_damping=0.0, noise_weight=0.0, predictor="euler_maruyama",
                                      corrector="langevin", corrector_steps=2, time_grid="karras", num_samples=1,
                                      seed=0)
    method = get_method("consistency")
    result = conditional_sample(linear_score, sde, operator, y, settings, generator=torch.Generator().manual_seed(1),
                                eps=2e-3, progress=False)
    step = MeasurementConsistency(sde, operator, y, weight=0.5)
    reference = pc_sample(linear_score, sde, (2, 1, 3, 3), steps=4, predictor="euler_maruyama", corrector="langevin",
                          snr=0.2, corrector_steps=2, eps=2e-3, generator=torch.Generator().manual_seed(1),
                          conditioning=step, time_grid="karras", progress=False)
    assert result.nfe == 4 + 4 * 2 and torch.equal(result.samples, reference.samples)
    direct = method.sample(linear_score, sde, operator, y.double(), settings,
                           generator=torch.Generator().manual_seed(1), progress=False)
    assert direct.samples.dtype == torch.float64  # the prior draw follows y's dtype


def test_typed_settings_keep_an_exclusive_pair_and_drop_unset_fields():
    method = get_method("decomposed")
    settings = ReconstructionSettings(method="decomposed", steps=8, eta=None, zeta=0.5, cg_iterations=3)
    typed = method.typed(settings)
    assert typed.zeta == 0.5 and typed.eta is None and typed.cg_iterations == 3
    assert typed.projection_noise_level is None and typed.damping_weight == 3.0  # None means the default
    assert method.typed(typed) is typed
    pc = get_method("consistency").typed(ReconstructionSettings(method="consistency", steps=60, weight=0.2))
    assert type(pc) is ConsistencySettings and pc.weight == 0.2 and pc.final_iterations == 20


def test_supports_refusal_and_registration_messages():
    consistency = get_method("consistency")
    arc = RadonOp(angles=torch.linspace(0, 1.0, 5), image_size=8)
    assert consistency.supports(MaskOp(MASK)) and not consistency.supports(arc)
    assert consistency.refusal(arc).startswith(
        "method 'consistency' does not suit RadonOp: it needs the operator capabilities full-transform (its 5 angles")
    assert get_method("guidance").refusal(arc) == "method 'guidance' does not suit RadonOp"

    class Bare:
        capabilities = frozenset()

    assert consistency.refusal(Bare()) == ("method 'consistency' does not suit Bare: it needs the operator "
                                           "capabilities full-transform (not offered)")
    assert get_method("guidance").supports(object())
    with pytest.raises(ValueError, match=r"^unknown method 'bogus'; choose one of \['consistency', 'decomposed', "):
        get_method("bogus")

    class Nameless(Method):
        def build(self, score_fn, sde, operator, y, settings):
            return score_fn, None

    with pytest.raises(ValueError, match=r"^Nameless needs a non-empty name to be registered$"):
        register_method(Nameless)

    class Extra(PCSettings):
        wobble: float = 0.0
        jiggle: float = 0.0

    class Odd(Nameless):
        name = "odd"
        settings_model = Extra

    with pytest.raises(ValueError, match=r"^method 'odd' reads settings that are not fields of ReconstructionSettings: "
                                         r"jiggle, wobble \(add them there, where the CLI flags come from\)$"):
        register_method(Odd)
    assert "odd" not in METHODS

    class Plain(Nameless):
        name = "plain-test-method"

    try:
        assert register_method(Plain) is Plain and isinstance(METHODS["plain-test-method"], Plain)
        assert Plain().minimum_steps_for(arc) == (2, "a step from T to the end needs two time points")
        with pytest.raises(ValueError, match="plain-test-method"):
            register_method(Plain)
    finally:
        METHODS.pop("plain-test-method", None)


# --- what the mutation run of the solvers asked for ----------------------------------------------

def test_guidance_evaluates_the_score_at_t():
    seen = []

    def recording(x, t):
        seen.append(t)
        return -2.0 * x

    sde = VESDE(0.01, 10.0)
    operator, y = mask_problem()
    t = torch.full((2,), 0.3)
    GuidedScore(recording, sde, operator, y, 0.1)(STATE, t)
    assert len(seen) == 1 and seen[0] is t


def test_consistency_names_a_missing_full_transform_without_a_note():
    class NoTransform(MaskOp):
        capabilities = frozenset()

    class EmptyNote(NoTransform):
        capability_note = ""

    operator, y = mask_problem()
    for kind in (NoTransform, EmptyNote):
        with pytest.raises(ValueError, match=rf"^measurement consistency needs the full transform T of A = Λ T, which "
                                             rf"this {kind.__name__} lacks: no full transform$"):
            MeasurementConsistency(VESDE(), kind(MASK), y)


def test_conditional_sample_and_method_sample_show_progress_only_when_asked(capsys):
    sde = VESDE(0.01, 10.0)
    operator, y = mask_problem()
    settings = ReconstructionSettings(method="consistency", steps=3, snr=0.2, weight=0.5, final_iterations=0,
                                      final_damping=0.0, noise_weight=0.0, predictor="euler_maruyama",
                                      corrector="none", corrector_steps=1, time_grid="uniform", num_samples=1, seed=0)
    conditional_sample(linear_score, sde, operator, y, settings)
    assert "PC sampling" in capsys.readouterr().err
    get_method("consistency").sample(linear_score, sde, operator, y, settings)
    assert "PC sampling" in capsys.readouterr().err
    conditional_sample(linear_score, sde, operator, y, settings, progress=False)
    get_method("consistency").sample(linear_score, sde, operator, y, settings, progress=False)
    assert capsys.readouterr().err == ""


def test_method_sample_draws_in_the_dtype_of_y_and_reads_the_corrector():
    sde = VESDE(0.01, 10.0)
    operator, y = mask_problem()
    y = y.double()
    settings = ReconstructionSettings(method="consistency", steps=3, snr=0.2, weight=0.5, final_iterations=0,
                                      final_damping=0.0, noise_weight=0.0, predictor="reverse_diffusion",
                                      corrector="annealed_langevin", corrector_steps=1, time_grid="uniform",
                                      num_samples=1, seed=0)
    result = get_method("consistency").sample(linear_score, sde, operator, y, settings,
                                              generator=torch.Generator().manual_seed(2), progress=False)
    reference = pc_sample(linear_score, sde, (2, 1, 3, 3), steps=3, predictor="reverse_diffusion",
                          corrector="annealed_langevin", snr=0.2, corrector_steps=1,
                          generator=torch.Generator().manual_seed(2), conditioning=MeasurementConsistency(
                              sde, operator, y, weight=0.5), dtype=torch.float64, progress=False)
    assert torch.equal(result.samples, reference.samples)


def test_refusal_lists_only_the_missing_capabilities_and_takes_any_object():
    class Needy(Method):
        name = "needy"
        requires = frozenset({"a", "b", "c"})

        def build(self, score_fn, sde, operator, y, settings):
            return score_fn, None

    class Partial:
        name = "the partial operator"
        capabilities = frozenset({"b"})

    assert Needy().refusal(Partial()) == ("method 'needy' does not suit the partial operator: it needs the operator "
                                          "capabilities a, c (not offered)")
    assert Needy().refusal(object()) == ("method 'needy' does not suit object: it needs the operator capabilities "
                                         "a, b, c (not offered)")
    assert not Needy().supports(object())
    named = type("Named", (), {"name": "plain", "capabilities": frozenset()})()
    assert get_method("replacement").minimum_steps_for(named)[0] == 100
    assert get_method("replacement").minimum_steps_for(type("Plain", (), {"name": "plain"})())[0] == 100


def test_a_duplicate_method_name_is_refused_as_a_method():
    with pytest.raises(ValueError, match=r"^a method named 'consistency' is already registered \("):
        register_method(Consistency)
