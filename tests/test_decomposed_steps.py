"""The decomposed sampler's parts one by one, against closed forms (fast; the mutation tests' target).

With a mask operator A = diag(m), m ∈ {0, 1}, AᵀA has the eigenvalues 0 and 1 and the right-hand
side Aᵀ(y − A x̂₀) lies in the eigenspace 1, so one CG iteration on (AᵀA + δ I) d = Aᵀ(y − A x̂₀)
is exact: d = m ⊙ (y − x̂₀) / (1 + δ). That makes the consistency step, its damping
δ_t = w σ_y² / σ_t² and the part-way start checkable to rounding.
"""

import math

import pytest
import torch
from pydantic import ValidationError

from scoreinv.gaussian import GaussianPrior
from scoreinv.operators import MaskOp, RadonOp
from scoreinv.reconstruct import resolve_settings
from scoreinv.sampling import pc_sample
from scoreinv.sampling.pc import default_eps
from scoreinv.sde import VESDE, VPSDE
from scoreinv.solvers.decomposed import Decomposed, DecomposedConsistency, DecomposedSettings
from scoreinv.solvers.registry import get_method

MASK = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


def mask_problem(noise_std=0.0):
    operator = MaskOp(MASK, noise_std=noise_std)
    y = MASK * torch.linspace(-1.0, 1.0, 9).reshape(1, 1, 3, 3).repeat(2, 1, 1, 1)
    y[1] *= 2.0
    return operator, y


def closed_form_step(x0, y, delta):
    return x0 + MASK * (y - x0) / (1 + delta)


def test_settings_defaults_are_the_documented_ones():
    settings = DecomposedSettings(steps=10)
    assert settings.predictor == "ddim" and settings.corrector == "none"
    assert settings.eta == 1.0 and settings.zeta is None
    assert settings.cg_iterations == 7 and settings.projection_iterations == 7
    assert settings.projection_noise_level is None and settings.damping_weight == 3.0
    assert settings.start_noise_level is None and settings.start_iterations is None  # no part-way start
    assert DecomposedSettings(steps=10, start_noise_level=1.0).start_iterations == 30
    assert settings.time_grid == "log-sigma"


def test_settings_accept_their_boundaries_and_refuse_beyond():
    for values in ({"eta": 0.0}, {"eta": 1.0}, {"eta": None, "zeta": 0.0}, {"eta": None, "zeta": 1.0},
                   {"cg_iterations": 0}, {"projection_iterations": 0}, {"projection_noise_level": 0.0},
                   {"damping_weight": 0.0}, {"start_noise_level": 0.5},
                   {"start_noise_level": 0.5, "start_iterations": 0}, {"time_grid": "uniform"}, {"time_grid": "karras"}):
        DecomposedSettings(steps=10, **values)
    for values in ({"eta": -0.1}, {"eta": 1.1}, {"eta": None, "zeta": -0.1}, {"eta": None, "zeta": 1.1},
                   {"cg_iterations": -1}, {"projection_iterations": -1}, {"projection_noise_level": -0.1},
                   {"damping_weight": -0.1}, {"start_noise_level": 0.0},
                   {"start_noise_level": 0.5, "start_iterations": -1}, {"start_iterations": 5},
                   {"time_grid": "linear"}, {"predictor": "reverse_diffusion"}, {"corrector": "langevin"}):
        with pytest.raises(ValidationError):
            DecomposedSettings(steps=10, **values)


@pytest.mark.parametrize("values", [{"zeta": 0.5}, {"eta": None}])
def test_settings_take_exactly_one_noise_rule(values):
    with pytest.raises(ValidationError, match="the decomposed sampler takes exactly one of eta and zeta"):
        DecomposedSettings(steps=10, **values)
    assert DecomposedSettings(steps=10, eta=None, zeta=0.5).zeta == 0.5


def test_consistency_refuses_bad_counts_and_weights_with_their_names():
    operator, y = mask_problem()
    sde = VESDE(0.01, 50.0)
    with pytest.raises(ValueError, match=r"^cg_iterations must be >= 0, got -1$"):
        DecomposedConsistency(sde, operator, y, -1, 1.0, 1e-3)
    with pytest.raises(ValueError, match=r"^projection_iterations must be >= 0, got -1$"):
        DecomposedConsistency(sde, operator, y, 1, 1.0, 1e-3, projection_iterations=-1)
    for weight in (-1.0, math.nan):
        with pytest.raises(ValueError, match=rf"^damping_weight must be >= 0, got {weight}$"):
            DecomposedConsistency(sde, operator, y, 1, weight, 1e-3)
    step = DecomposedConsistency(sde, operator, y, 0, 0.0, 1e-3, projection_iterations=0)
    assert step.iterations == 0 and step.projection_iterations == 0 and step.noise_variance == 0.0


def test_consistency_keeps_what_it_was_given():
    operator, y = mask_problem(noise_std=0.2)
    sde = VESDE(0.01, 50.0)
    step = DecomposedConsistency(sde, operator, y, 3.0, 2.5, 0.25)
    assert step.sde is sde and step.operator is operator and step.y is y
    assert step.iterations == 3 and type(step.iterations) is int
    assert step.noise_variance == pytest.approx(2.5 * 0.04, rel=1e-12)
    assert step.final_time == 0.25 and type(step.final_time) is float
    assert step.projection_iterations == 3 and step.projection_noise_level is None
    other = DecomposedConsistency(sde, operator, y, 3, 2.5, 0.25, projection_iterations=40.0,
                                  projection_noise_level=0.3)
    assert other.projection_iterations == 40 and type(other.projection_iterations) is int
    assert other.projection_noise_level == 0.3


@pytest.mark.parametrize("sde", [VESDE(0.01, 50.0), VPSDE()], ids=["ve", "vp"])
def test_noise_level_and_damping_follow_their_closed_forms(sde):
    operator, y = mask_problem(noise_std=0.1)
    step = DecomposedConsistency(sde, operator, y, 1, 3.0, 1e-3)
    for t in (0.05, 0.5, 1.0):
        if isinstance(sde, VESDE):
            sigma = 0.01 * 5000.0**t
        else:
            integral = 0.1 * t + 0.5 * (20.0 - 0.1) * t**2
            sigma = math.sqrt(math.exp(integral) - 1)  # std / mean = sqrt(1 - e^{-I}) / e^{-I/2}
        assert step.noise_level(t) == pytest.approx(sigma, rel=1e-9)
        assert type(step.noise_level(t)) is float
        assert step.damping(t) == pytest.approx(3.0 * 0.1**2 / sigma**2, rel=1e-9)
    noise_free = DecomposedConsistency(sde, mask_problem()[0], y, 1, 3.0, 1e-3)
    assert noise_free.damping(0.5) == 0.0 and type(noise_free.damping(0.5)) is float


def test_consistent_step_is_the_damped_projection_onto_the_mask():
    sde = VESDE(0.01, 50.0)
    operator, y = mask_problem(noise_std=0.1)
    x0 = torch.linspace(0.3, -0.5, 18).reshape(2, 1, 3, 3)
    step = DecomposedConsistency(sde, operator, y, 1, 3.0, 1e-3)
    t = 0.3
    delta = 3.0 * 0.01 / (0.01 * 5000.0**t) ** 2
    assert delta > 0.05  # large enough that a wrong damping shows
    assert torch.allclose(step.consistent(x0, t, 1), closed_form_step(x0, y, delta), atol=1e-6)
    assert torch.allclose(step.consistent(x0, t, 4), closed_form_step(x0, y, delta), atol=1e-6)
    assert step.consistent(x0, t, 0) is x0
    # noise-free: δ = 0, the projection onto the data
    exact = DecomposedConsistency(sde, mask_problem()[0], y, 1, 3.0, 1e-3)
    assert torch.allclose(exact.consistent(x0, t, 1), closed_form_step(x0, y, 0.0), atol=1e-6)


def test_denoised_and_finish_choose_the_iterations_and_the_time():
    sde = VESDE(0.01, 50.0)
    operator, y = mask_problem()
    calls = []

    def recorder(step):
        step.consistent = lambda x0, t, iterations: calls.append((t, iterations)) or x0
        return step

    plain = recorder(DecomposedConsistency(sde, operator, y, 2, 0.0, 0.125, projection_iterations=9))
    x = torch.zeros(2, 1, 3, 3)
    assert plain.denoised(x, torch.tensor([0.002, 0.7]), None) is x
    assert plain.finish(x) is x
    assert calls == [(pytest.approx(0.002), 2), (0.125, 9)]
    assert type(calls[0][0]) is float

    calls.clear()
    level = 1.0
    late = recorder(DecomposedConsistency(sde, operator, y, 2, 0.0, 0.125, projection_iterations=9,
                                          projection_noise_level=level))
    at_level = float(sde.time_at_noise_level(torch.tensor([level], dtype=torch.float64)))
    exactly = late.noise_level(at_level)
    late.projection_noise_level = exactly  # σ_t = σ_p exactly is not below σ_p
    late.denoised(x, torch.tensor([at_level], dtype=torch.float64), None)
    late.denoised(x, torch.tensor([at_level * 0.9], dtype=torch.float64), None)
    late.denoised(x, torch.tensor([at_level * 1.1], dtype=torch.float64), None)
    assert [iterations for _, iterations in calls] == [2, 9, 2]
    default = DecomposedConsistency(sde, operator, y, 4, 0.0, 0.125)
    assert default.projection_iterations == 4


def test_method_registration_and_its_floor():
    method = get_method("decomposed")
    assert isinstance(method, Decomposed) and method.name == "decomposed"
    assert method.settings_model is DecomposedSettings
    assert method.exclusive_settings == (("eta", "zeta"),)
    assert method.minimum_steps_for(RadonOp(8, image_size=16)) == (
        5, "with fewer it fell below FBP on the bundled CT priors")
    with pytest.raises(ValueError, match=r"needs at least 5 steps, got 4 \(with fewer it fell below FBP"):
        resolve_settings(RadonOp(8, image_size=16), method="decomposed", steps=4)
    assert resolve_settings(RadonOp(8, image_size=16), method="decomposed", steps=5).steps == 5


def test_build_wires_the_settings_into_the_consistency_step():
    sde = VPSDE()
    operator, y = mask_problem(noise_std=0.1)

    def score(x, t):
        return -x

    settings = DecomposedSettings(steps=6, cg_iterations=3, projection_iterations=11, damping_weight=0.5,
                                  projection_noise_level=0.2)
    returned, step = Decomposed().build(score, sde, operator, y, settings)
    assert returned is score and isinstance(step, DecomposedConsistency)
    assert step.sde is sde and step.operator is operator and step.y is y
    assert step.iterations == 3 and step.projection_iterations == 11
    assert step.noise_variance == pytest.approx(0.5 * 0.01, rel=1e-12)
    assert step.final_time == default_eps(sde) and step.projection_noise_level == 0.2


def small_prior(sde):
    covariance = 0.2 * torch.eye(9, dtype=torch.float64) + 0.05
    return GaussianPrior(sde, torch.zeros(1, 3, 3, dtype=torch.float64), covariance)


@pytest.mark.parametrize("rule", [{"eta": 0.5}, {"eta": None, "zeta": 0.3}], ids=["eta", "zeta"])
def test_sample_is_the_pc_loop_with_the_ddim_predictor_and_the_consistency_hooks(rule, capsys):
    sde = VESDE(0.01, 20.0)
    prior = small_prior(sde)
    operator, y = mask_problem(noise_std=0.05)
    settings = DecomposedSettings(steps=6, cg_iterations=2, projection_iterations=5, damping_weight=2.0,
                                  time_grid="karras", **rule)
    result = Decomposed().sample(prior, sde, operator, y, settings, generator=torch.Generator().manual_seed(7),
                                 eps=2e-3, progress=False)
    step = DecomposedConsistency(sde, operator, y, 2, 2.0, 2e-3, projection_iterations=5)
    options = {"eta": 0.5} if "zeta" not in rule else {"zeta": 0.3}
    reference = pc_sample(prior, sde, (2, 1, 3, 3), steps=6, predictor="ddim", corrector="none",
                          predictor_options=options, time_grid="karras", eps=2e-3,
                          generator=torch.Generator().manual_seed(7), conditioning=step, progress=False)
    assert result.nfe == 6 and result.samples.dtype == torch.float32
    assert torch.equal(result.samples, reference.samples)
    assert capsys.readouterr().err == ""  # progress=False reaches the loop


def test_sample_ends_at_the_default_eps_and_follows_the_dtype_of_y():
    sde = VPSDE()
    prior = small_prior(sde)
    operator, y = mask_problem()
    y = y.double()
    settings = DecomposedSettings(steps=5, cg_iterations=1, projection_iterations=1)
    result = Decomposed().sample(prior, sde, operator, y, settings, generator=torch.Generator().manual_seed(1),
                                 progress=False)
    reference = pc_sample(prior, sde, (2, 1, 3, 3), steps=5, predictor="ddim", corrector="none",
                          predictor_options={"eta": 1.0}, time_grid="log-sigma", eps=1e-3,
                          generator=torch.Generator().manual_seed(1),
                          conditioning=DecomposedConsistency(sde, operator, y, 1, 3.0, 1e-3), dtype=torch.float64,
                          progress=False)
    assert result.samples.dtype == torch.float64
    assert torch.equal(result.samples, reference.samples)


@pytest.mark.parametrize("sde", [VESDE(0.01, 20.0), VPSDE()], ids=["ve", "vp"])
@pytest.mark.parametrize("iterations", [0, 1])
def test_part_way_start_noises_the_damped_estimate(sde, iterations):
    operator, y = mask_problem(noise_std=0.1)
    sigma = 0.4
    settings = DecomposedSettings(steps=5, start_noise_level=sigma, start_iterations=iterations)
    step = DecomposedConsistency(sde, operator, y, 1, 3.0, 1e-3)
    start_time, x = Decomposed.start(sde, step, (2, 1, 3, 3), settings, torch.Generator().manual_seed(3), y)
    expected_time = float(sde.time_at_noise_level(torch.tensor([sigma], dtype=torch.float64)))
    assert start_time == expected_time and step.noise_level(start_time) == pytest.approx(sigma, rel=1e-9)
    zeros = torch.zeros(2, 1, 3, 3)
    estimate = closed_form_step(zeros, y, 3.0 * 0.01 / sigma**2) if iterations else zeros
    z = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(3))
    mean = float(sde.mean_coefficient(torch.tensor([start_time], dtype=torch.float64)))
    assert isinstance(sde, VESDE) or mean < 0.99  # the VP case checks the factor a_t
    assert x.dtype == y.dtype
    assert torch.allclose(x, mean * (estimate + sigma * z), atol=1e-6)


def test_part_way_start_at_or_above_the_top_starts_at_T():
    sde = VESDE(0.01, 20.0)
    operator, y = mask_problem()
    step = DecomposedConsistency(sde, operator, y, 1, 3.0, 1e-3)
    top = float(sde.noise_level(torch.tensor([sde.T], dtype=torch.float64)))
    for sigma in (None, top, 2 * top):
        settings = DecomposedSettings(steps=5, start_noise_level=sigma)
        assert Decomposed.start(sde, step, (2, 1, 3, 3), settings, None, y) == (None, None)
    settings = DecomposedSettings(steps=5, start_noise_level=0.999 * top)
    start_time, _ = Decomposed.start(sde, step, (2, 1, 3, 3), settings, None, y)
    assert 0.99 < start_time < sde.T


def test_sample_from_a_part_way_start_runs_the_loop_from_there():
    sde = VESDE(0.01, 20.0)
    prior = small_prior(sde)
    operator, y = mask_problem()
    settings = DecomposedSettings(steps=5, start_noise_level=0.5, start_iterations=1, cg_iterations=1,
                                  projection_iterations=1)
    result = Decomposed().sample(prior, sde, operator, y, settings, generator=torch.Generator().manual_seed(2),
                                 eps=1e-3, progress=False)
    step = DecomposedConsistency(sde, operator, y, 1, 3.0, 1e-3)
    generator = torch.Generator().manual_seed(2)
    start_time, x_init = Decomposed.start(sde, step, (2, 1, 3, 3), settings, generator, y)
    reference = pc_sample(prior, sde, (2, 1, 3, 3), steps=5, predictor="ddim", corrector="none",
                          predictor_options={"eta": 1.0}, time_grid="log-sigma", eps=1e-3, generator=generator,
                          conditioning=step, x_init=x_init, start_time=start_time, progress=False)
    assert torch.equal(result.samples, reference.samples)


def test_damping_of_a_unit_noise_variance_is_one_over_sigma_squared():
    sde = VESDE(0.01, 50.0)
    operator, y = mask_problem(noise_std=0.5)
    step = DecomposedConsistency(sde, operator, y, 1, 4.0, 1e-3)
    assert step.noise_variance == 1.0  # w σ_y² = 4 · 0.25 exactly
    assert step.damping(0.5) == pytest.approx(1.0 / (0.01 * 5000.0**0.5) ** 2, rel=1e-9)


def test_build_ends_at_the_sdes_own_eps():
    operator, y = mask_problem()
    for sde, eps in ((VESDE(0.01, 50.0), 1e-5), (VPSDE(), 1e-3)):
        _, step = Decomposed().build(lambda x, t: -x, sde, operator, y, DecomposedSettings(steps=6))
        assert step.final_time == eps


def test_sample_shows_progress_by_default(capsys):
    sde = VESDE(0.01, 20.0)
    operator, y = mask_problem()
    Decomposed().sample(small_prior(sde), sde, operator, y, DecomposedSettings(steps=5, cg_iterations=1,
                                                                               projection_iterations=1),
                        generator=torch.Generator().manual_seed(0))
    assert "PC sampling" in capsys.readouterr().err


def test_part_way_start_in_float64_is_exact():
    """y in float64: z is drawn in float64 and a_t comes from t in float64 (a float32 t moves a_t by ~1e-8)."""
    sde = VPSDE()
    operator, y = mask_problem(noise_std=0.1)
    y = y.double()
    sigma = 0.4
    settings = DecomposedSettings(steps=5, start_noise_level=sigma, start_iterations=0)
    step = DecomposedConsistency(sde, operator, y, 1, 3.0, 1e-3)
    start_time, x = Decomposed.start(sde, step, (2, 1, 3, 3), settings, torch.Generator().manual_seed(3), y)
    z = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mean = float(sde.mean_coefficient(torch.tensor([start_time], dtype=torch.float64)))
    assert x.dtype == torch.float64
    assert torch.allclose(x, mean * sigma * z, rtol=1e-13, atol=0)
