"""The samplers' parts one by one: each predictor and corrector step, the PC loop's order of calls,
the time grids, the probability-flow ODE and classifier guidance, against their formulas (fast).

The steps are checked with a linear score s(x) = −c x and the SDE's own coefficients (f, g, the
discretisation, σ(t), β_i), so each test pins how a step combines them; the ODE against the exact
flow of a Gaussian prior.
"""

import math
import time

import pytest
import torch

from scoreinv.gaussian import GaussianPrior
from scoreinv.sampling import (CORRECTORS, PREDICTORS, TIME_GRIDS, AncestralSamplingPredictor,
                               AnnealedLangevinCorrector, ClassifierGuidedScore, Conditioning, Corrector,
                               DDIMPredictor, EulerMaruyamaPredictor, LangevinCorrector, NoneCorrector,
                               NonePredictor, Predictor, ReverseDiffusionPredictor, default_eps, make_corrector,
                               make_predictor, ode_sample, pc_sample, prior_device, prior_item_shape,
                               register_corrector, register_predictor, sample, sampling_times)
from scoreinv.sampling.pc import resolve_device
from scoreinv.sde import SDE, SubVPSDE, VESDE, VPSDE

X = torch.linspace(-1.0, 1.5, 18, dtype=torch.float64).reshape(2, 1, 3, 3)
T = torch.tensor([0.6, 0.3], dtype=torch.float64)


def score(x, t):
    return -0.8 * x


def noise(seed, like=X):
    return torch.randn(like.shape, generator=torch.Generator().manual_seed(seed), dtype=like.dtype)


def column(values):
    return values.view(-1, 1, 1, 1)


# --- predictors -------------------------------------------------------------------------------------

def test_none_predictor_leaves_x():
    x, mean = NonePredictor(VESDE(), score).update(X, T, 0.1)
    assert x is X and mean is X


@pytest.mark.parametrize("sde", [VESDE(0.01, 10.0), VPSDE()], ids=["ve", "vp"])
def test_euler_maruyama_step(sde):
    x, mean = EulerMaruyamaPredictor(sde, score).update(X, T, 0.05, torch.Generator().manual_seed(1))
    drift, diffusion = sde.sde(X, T)
    expected = X - (drift - column(diffusion) ** 2 * score(X, T)) * 0.05
    assert torch.allclose(mean, expected, atol=1e-12)
    assert torch.allclose(x, expected + column(diffusion) * math.sqrt(0.05) * noise(1), atol=1e-12)


@pytest.mark.parametrize("sde", [VESDE(0.01, 10.0), VPSDE()], ids=["ve", "vp"])
def test_reverse_diffusion_step(sde):
    x, mean = ReverseDiffusionPredictor(sde, score).update(X, T, 0.05, torch.Generator().manual_seed(2))
    f, G = sde.discretize(X, T, 0.05)
    expected = X - (f - column(G) ** 2 * score(X, T))
    assert torch.allclose(mean, expected, atol=1e-12)
    assert torch.allclose(x, expected + column(G) * noise(2), atol=1e-12)


def test_ancestral_step_ve_and_its_last_step_to_zero_noise():
    sde = VESDE(0.01, 10.0)
    step = AncestralSamplingPredictor(sde, score)
    x, mean = step.update(X, T, 0.1, torch.Generator().manual_seed(3))
    sigma, prev = sde.sigma(T), sde.sigma(T - 0.1)
    gap = sigma**2 - prev**2
    assert torch.allclose(mean, X + column(gap) * score(X, T), atol=1e-12)
    std = torch.sqrt(prev**2 * gap / sigma**2)
    assert torch.allclose(x, mean + column(std) * noise(3), atol=1e-12)
    # from t = dt the step lands at t = 0, where σ' = 0 (not σ_min): the Tweedie mean, no noise
    last = torch.full((2,), 0.1, dtype=torch.float64)
    x, mean = step.update(X, last, 0.1, torch.Generator().manual_seed(3))
    assert torch.allclose(mean, X + column(sde.sigma(last)) ** 2 * score(X, last), atol=1e-12)
    assert torch.equal(x, mean)


def test_ancestral_step_vp_and_the_refused_sdes():
    sde = VPSDE()
    x, mean = AncestralSamplingPredictor(sde, score).update(X, T, 0.1, torch.Generator().manual_seed(4))
    beta = column(sde.step_beta(T, 0.1))
    assert torch.allclose(mean, (X + beta * score(X, T)) / torch.sqrt(1 - beta), atol=1e-12)
    assert torch.allclose(x, mean + torch.sqrt(beta) * noise(4), atol=1e-12)

    class Other(VESDE):
        pass

    AncestralSamplingPredictor(Other(), score)  # a VE subclass is VE
    with pytest.raises(ValueError, match=r"^the ancestral predictor supports VESDE and VPSDE only, not SubVPSDE; "
                                         r"use 'reverse_diffusion' or 'euler_maruyama'$"):
        AncestralSamplingPredictor(SubVPSDE(), score)

    class Custom(SDE):
        T = 1.0

        def sde(self, x, t):
            return torch.zeros_like(x), torch.ones_like(t)

        def mean_coefficient(self, t):
            return torch.ones_like(t)

        def marginal_std(self, t):
            return torch.sqrt(t)

        @property
        def prior_std(self):
            return 1.0

    with pytest.raises(ValueError, match=r"not Custom; use"):
        AncestralSamplingPredictor(Custom(), score)


def ddim_expected(sde, x, t, dt, spread_rule, z=None, denoise=lambda x0: x0):
    mean, std = column(sde.mean_coefficient(t)), column(sde.marginal_std(t))
    x0 = (x + std**2 * score(x, t)) / mean
    eps_hat = (x - mean * x0) / std
    x0 = denoise(x0)
    mean_next, std_next = column(sde.mean_coefficient(t - dt)), column(sde.marginal_std(t - dt))
    sigma, sigma_next = std / mean, std_next / mean_next
    spread = spread_rule(sigma, sigma_next)
    x_mean = mean_next * (x0 + torch.sqrt(sigma_next**2 - spread**2) * eps_hat)
    return x_mean if z is None else x_mean + mean_next * spread * z, x_mean


@pytest.mark.parametrize("sde", [VESDE(0.01, 10.0), VPSDE()], ids=["ve", "vp"])
def test_ddim_step_with_eta_and_with_zeta(sde):
    for eta in (1.0, 0.4):
        x, mean = DDIMPredictor(sde, score, eta=eta).update(X, T, 0.1, torch.Generator().manual_seed(5))
        expected = ddim_expected(sde, X, T, 0.1, lambda s, s2: eta * s2 * torch.sqrt(1 - (s2 / s) ** 2), noise(5))
        assert torch.allclose(x, expected[0], atol=1e-10) and torch.allclose(mean, expected[1], atol=1e-10)
    for zeta in (1.0, 0.3):
        x, mean = DDIMPredictor(sde, score, eta=0.7, zeta=zeta).update(X, T, 0.1, torch.Generator().manual_seed(5))
        expected = ddim_expected(sde, X, T, 0.1, lambda s, s2: s2 * math.sqrt(zeta), noise(5))
        assert torch.allclose(x, expected[0], atol=1e-10) and torch.allclose(mean, expected[1], atol=1e-10)


def test_ddim_without_noise_draws_nothing_and_hooks_the_estimate():
    sde = VPSDE()
    for options in ({"eta": 0.0}, {"eta": 1.0, "zeta": 0.0}):
        generator = torch.Generator().manual_seed(6)
        state = generator.get_state()
        x, mean = DDIMPredictor(sde, score, **options).update(X, T, 0.1, generator)
        assert x is mean and torch.equal(generator.get_state(), state)
        expected, _ = ddim_expected(sde, X, T, 0.1, lambda s, s2: torch.zeros_like(s))
        assert torch.allclose(x, expected, atol=1e-10)

    seen = []

    class Shift(Conditioning):
        def denoised(self, x0, t, generator):
            seen.append((t, generator))
            return x0 + 1.0

    step = DDIMPredictor(sde, score, eta=0.0)
    step.conditioning = Shift()
    x, _ = step.update(X, T, 0.1, "the generator")
    assert seen[0][0] is T and seen[0][1] == "the generator"
    # ε̂ is taken before the hook moves x̂₀: only the clean part moves
    expected, _ = ddim_expected(sde, X, T, 0.1, lambda s, s2: torch.zeros_like(s), denoise=lambda x0: x0 + 1.0)
    assert torch.allclose(x, expected, atol=1e-10)


def test_ddim_refuses_eta_and_zeta_outside_zero_one():
    for eta in (-0.1, 1.1, math.nan):
        with pytest.raises(ValueError, match=rf"^the ddim predictor's eta must lie in \[0, 1\], got {eta}$"):
            DDIMPredictor(VESDE(), score, eta=eta)
    for zeta in (-0.1, 1.1, math.nan):
        with pytest.raises(ValueError, match=rf"^the ddim predictor's zeta must lie in \[0, 1\], got {zeta}$"):
            DDIMPredictor(VESDE(), score, zeta=zeta)
    step = DDIMPredictor(VESDE(), score, eta=1, zeta=1)
    assert (step.eta, step.zeta) == (1.0, 1.0) and type(step.eta) is float and type(step.zeta) is float
    assert DDIMPredictor(VESDE(), score, eta=0).eta == 0.0 and DDIMPredictor(VESDE(), score).eta == 1.0
    assert DDIMPredictor(VESDE(), score).zeta is None and DDIMPredictor(VESDE(), score, zeta=0).zeta == 0.0


def test_predictor_registry_and_factory():
    assert sorted(PREDICTORS) == ["ancestral", "ddim", "euler_maruyama", "none", "reverse_diffusion"]
    assert PREDICTORS["ddim"] is DDIMPredictor and PREDICTORS["none"] is NonePredictor
    sde = VESDE()
    made = make_predictor("ddim", sde, score, eta=0.25)
    assert isinstance(made, DDIMPredictor) and made.eta == 0.25 and made.sde is sde and made.score_fn is score
    assert made.conditioning is None and made.reverse_sde.probability_flow is False
    with pytest.raises(ValueError, match=r"^unknown predictor 'bogus'; choose one of \['ancestral', 'ddim', "
                                         r"'euler_maruyama', 'none', 'reverse_diffusion'\]$"):
        make_predictor("bogus", sde, score)

    class Nameless(Predictor):
        def update(self, x, t, dt, generator=None):
            return x, x

    assert_registers_only_named_classes(register_predictor, PREDICTORS, Nameless)


def assert_registers_only_named_classes(register, registry, nameless):
    """``register`` refuses ``nameless`` (a subclass without ``name``) and enters a named subclass of it."""
    with pytest.raises(ValueError, match=r"^Nameless needs a non-empty name to be registered$"):
        register(nameless)
    named = type("Named", (nameless,), {"name": "named-test-entry"})
    try:
        assert register(named) is named and registry["named-test-entry"] is named
    finally:
        registry.pop("named-test-entry", None)


# --- correctors -------------------------------------------------------------------------------------

def test_corrector_refusals_and_values():
    sde = VESDE()
    for snr in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match=rf"^snr must be > 0, got {snr}$"):
            LangevinCorrector(sde, score, snr)
    with pytest.raises(ValueError, match=r"^corrector steps must be >= 0, got -1$"):
        LangevinCorrector(sde, score, 0.1, -1)
    corrector = LangevinCorrector(sde, score, 1, 3.0)
    assert (corrector.snr, corrector.n_steps) == (1.0, 3) and type(corrector.snr) is float
    assert type(corrector.n_steps) is int and LangevinCorrector(sde, score, 0.1).n_steps == 1
    assert corrector.sde is sde and corrector.score_fn is score
    assert LangevinCorrector(sde, score, 0.1, 0).n_steps == 0
    none = NoneCorrector(sde, score, snr=5.0, n_steps=4)
    assert (none.snr, none.n_steps) == (1.0, 0)
    assert torch.equal(none.step_size(X, X, T, 0.1), torch.zeros(2, dtype=torch.float64))
    x, mean = none.update(X, T, 0.1)
    assert x is X and mean is X


def test_alpha_is_one_minus_beta_for_vp_only():
    assert torch.equal(LangevinCorrector(VESDE(), score, 0.1).alpha(T, 0.1), torch.ones_like(T))
    vp = VPSDE()
    assert torch.allclose(LangevinCorrector(vp, score, 0.1).alpha(T, 0.1), 1 - vp.step_beta(T, 0.1))
    sub = SubVPSDE()
    assert torch.allclose(LangevinCorrector(sub, score, 0.1).alpha(T, 0.1), 1 - sub.step_beta(T, 0.1))


@pytest.mark.parametrize("sde", [VESDE(0.01, 10.0), VPSDE()], ids=["ve", "vp"])
def test_langevin_and_annealed_steps(sde):
    alpha = column(1 - sde.step_beta(T, 0.1)) if isinstance(sde, VPSDE) else 1.0
    generator = torch.Generator().manual_seed(7)
    x, mean = LangevinCorrector(sde, score, 0.3, 2).update(X, T, 0.1, generator)
    draws = torch.Generator().manual_seed(7)
    state = X
    for _ in range(2):
        z = torch.randn(X.shape, generator=draws, dtype=X.dtype)
        s = score(state, T)
        step = 2 * alpha * (0.3 * column(z.flatten(1).norm(dim=1)) / column(s.flatten(1).norm(dim=1))) ** 2
        expected_mean = state + step * s
        state = expected_mean + torch.sqrt(2 * step) * z
    assert torch.allclose(mean, expected_mean, atol=1e-12) and torch.allclose(x, state, atol=1e-12)

    x, mean = AnnealedLangevinCorrector(sde, score, 0.3, 1).update(X, T, 0.1, torch.Generator().manual_seed(8))
    step = 2 * alpha * (0.3 * column(sde.marginal_std(T))) ** 2
    assert torch.allclose(mean, X + step * score(X, T), atol=1e-12)
    assert torch.allclose(x, mean + torch.sqrt(2 * step) * noise(8), atol=1e-12)


def test_corrector_registry_and_factory():
    assert sorted(CORRECTORS) == ["annealed_langevin", "langevin", "none"]
    made = make_corrector("annealed_langevin", VESDE(), score, 0.2, 3)
    assert isinstance(made, AnnealedLangevinCorrector) and (made.snr, made.n_steps) == (0.2, 3)
    with pytest.raises(ValueError, match=r"^unknown corrector 'bogus'; choose one of \['annealed_langevin', "
                                         r"'langevin', 'none'\]$"):
        make_corrector("bogus", VESDE(), score, 0.2, 1)

    class Nameless(Corrector):
        def step_size(self, score, noise, t, dt):
            return torch.zeros_like(t)

    assert_registers_only_named_classes(register_corrector, CORRECTORS, Nameless)


# --- the PC loop and its time grid ----------------------------------------------------------------

def test_conditioning_is_the_identity_and_default_eps_by_family():
    hooks = Conditioning()
    assert hooks.project(X, T, None) is X and hooks.denoised(X, T, None) is X and hooks.finish(X) is X
    assert default_eps(VESDE()) == 1e-5 and default_eps(VPSDE()) == 1e-3 and default_eps(SubVPSDE()) == 1e-3
    assert TIME_GRIDS == ("uniform", "log-sigma", "karras")


@pytest.mark.parametrize("sde", [VESDE(0.01, 10.0), VPSDE()], ids=["ve", "vp"])
def test_time_grids_by_their_rules(sde):
    uniform = sampling_times(sde, 5, 0.01)
    assert uniform.dtype == torch.float64
    assert torch.allclose(uniform, torch.linspace(1.0, 0.01, 5, dtype=torch.float64), atol=0)
    ends = sde.noise_level(torch.tensor([0.5, 0.01], dtype=torch.float64))
    for kind, rule in (("log-sigma", lambda u: ends[0] * (ends[1] / ends[0]) ** u),
                       ("karras", lambda u: (ends[0] ** (1 / 7) + u * (ends[1] ** (1 / 7) - ends[0] ** (1 / 7))) ** 7)):
        times = sampling_times(sde, 6, 0.01, kind, start=0.5)
        assert times.dtype == torch.float64 and times[0] == 0.5 and times[-1] == 0.01
        sigmas = rule(torch.linspace(0, 1, 6, dtype=torch.float64))
        assert torch.allclose(sde.noise_level(times), sigmas, rtol=1e-9)
    assert sampling_times(sde, 4, 0.01, "uniform", start=1.0)[0] == 1.0
    assert torch.allclose(sampling_times(sde, 3, 0.1, start=0.5), torch.tensor([0.5, 0.3, 0.1], dtype=torch.float64))


def test_time_grid_refusals():
    sde = VESDE()
    with pytest.raises(ValueError, match=r"^unknown time grid 'linear'; choose one of \['uniform', 'log-sigma', "
                                         r"'karras'\]$"):
        sampling_times(sde, 5, 0.01, "linear")
    for start in (0.01, 0.005, 1.5):
        with pytest.raises(ValueError, match=rf"^the first time point must lie in \(eps=0.01, T=1.0\], got {start}$"):
            sampling_times(sde, 5, 0.01, start=start)


def test_resolve_device_order():
    meta = torch.empty(1, device="meta")
    assert resolve_device("meta", None, None) == torch.device("meta")
    assert resolve_device(torch.device("cpu"), None, meta) == torch.device("cpu")
    assert resolve_device(None, torch.Generator(), meta) == torch.device("meta")
    assert resolve_device(None, torch.Generator(), None) == torch.device("cpu")
    assert resolve_device(None, None, None) == torch.device("cpu")


class Recorder(Conditioning):
    def __init__(self):
        self.calls = []

    def project(self, x, t, generator):
        self.calls.append(("project", float(t[0]), t.shape, t.dtype))
        return x + 1.0

    def finish(self, x):
        self.calls.append(("finish",))
        return 2.0 * x


class StepPredictor(Predictor):
    name = "test-step-predictor"
    log: list = []

    def update(self, x, t, dt, generator=None):
        self.log.append(("predictor", float(t[0]), dt))
        return x * 0.5, x


class StepCorrector(Corrector):
    name = "test-step-corrector"
    log = StepPredictor.log

    def step_size(self, score, noise, t, dt):
        return torch.zeros_like(t)

    def update(self, x, t, dt, generator=None):
        self.log.append(("corrector", float(t[0]), dt))
        return x - 3.0, x


@pytest.fixture
def stepping():
    PREDICTORS[StepPredictor.name] = StepPredictor
    CORRECTORS[StepCorrector.name] = StepCorrector
    StepPredictor.log.clear()
    yield StepPredictor.log
    PREDICTORS.pop(StepPredictor.name)
    CORRECTORS.pop(StepCorrector.name)


@pytest.mark.parametrize("denoise", [True, False])
def test_pc_loop_order_of_calls_and_result(stepping, denoise):
    sde = VESDE(0.01, 10.0)
    hooks = Recorder()
    start = torch.linspace(-1, 1, 18).reshape(2, 1, 3, 3)
    result = pc_sample(score, sde, (2, 1, 3, 3), steps=3, predictor=StepPredictor.name, corrector=StepCorrector.name,
                       eps=0.1, x_init=start, conditioning=hooks, denoise=denoise, progress=False, time_grid="karras")
    times = [float(v) for v in sampling_times(sde, 3, 0.1, "karras")]
    first, second = times[0] - times[1], times[1] - times[2]
    assert abs(first - second) > 0.1  # unequal steps: the last time point reuses the step that led to it

    def near(value):
        return pytest.approx(value, rel=1e-6)

    assert stepping == [("corrector", near(times[0]), near(first)), ("predictor", near(times[0]), near(first)),
                        ("corrector", near(times[1]), near(second)), ("predictor", near(times[1]), near(second)),
                        ("corrector", near(times[2]), near(second))]
    assert [call[:2] for call in hooks.calls] == [
        ("project", near(times[0])), ("project", near(times[1])), ("project", near(times[1])),
        ("project", near(times[2])), ("project", near(times[2])), ("finish",)]
    assert all(call[2] == (2,) and call[3] == torch.float32 for call in hooks.calls[:-1])
    x = start
    for _ in range(2):
        x = ((x - 3.0) + 1.0) * 0.5 + 1.0
    x = (x - 3.0) + 1.0
    t = torch.full((2,), 0.1)
    if denoise:  # the last time point ends with the Tweedie mean, and no predictor step
        x = sde.tweedie(x, t, score(x, t))
    assert torch.allclose(result.samples, 2.0 * x, atol=1e-6)
    assert result.nfe == (1 if denoise else 0) and result.seconds > 0


def test_pc_loop_counts_evaluations_and_draws_its_start():
    sde = VESDE(0.01, 10.0)
    result = pc_sample(score, sde, (2, 1, 3, 3), steps=4, corrector_steps=2, eps=0.01,
                       generator=torch.Generator().manual_seed(9), dtype=torch.float64, progress=False)
    assert result.nfe == 4 + 4 * 2 and result.samples.dtype == torch.float64
    again = pc_sample(score, sde, (2, 1, 3, 3), steps=4, corrector_steps=2, eps=0.01,
                      generator=torch.Generator().manual_seed(9), dtype=torch.float64, progress=False)
    assert torch.equal(result.samples, again.samples) and not result.samples.requires_grad
    plain = pc_sample(score, sde, [2, 1, 3, 3], steps=4, predictor="none", corrector="none", eps=0.01, denoise=False,
                      generator=torch.Generator().manual_seed(9), progress=False)
    assert plain.nfe == 0 and plain.samples.dtype == torch.float32
    assert torch.equal(plain.samples, sde.prior_sampling((2, 1, 3, 3), generator=torch.Generator().manual_seed(9)))


def test_pc_loop_refusals(capsys):
    sde = VESDE(0.01, 10.0)
    with pytest.raises(ValueError, match=r"^steps must be >= 2, got 1$"):
        pc_sample(score, sde, (1, 1, 2, 2), steps=1, progress=False)
    for eps in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match=rf"^eps must lie in \(0, T=1.0\), got {eps}$"):
            pc_sample(score, sde, (1, 1, 2, 2), steps=2, eps=eps, progress=False)
    with pytest.raises(ValueError, match=r"^x_init has shape \(1, 1, 2, 3\), expected \(1, 1, 2, 2\)$"):
        pc_sample(score, sde, (1, 1, 2, 2), steps=2, x_init=torch.zeros(1, 1, 2, 3), progress=False)
    pc_sample(score, sde, (1, 1, 2, 2), steps=2, progress=False)
    assert capsys.readouterr().err == ""


# --- the probability-flow ODE ---------------------------------------------------------------------

def gaussian_prior(sde, variance=0.3):
    return GaussianPrior(sde, torch.zeros(1, 2, 2, dtype=torch.float64), variance * torch.eye(4, dtype=torch.float64))


@pytest.mark.parametrize("denoise", [True, False])
def test_ode_follows_the_exact_gaussian_flow(denoise):
    """VE, data N(0, v I): the flow keeps x_t / √(v + σ(t)²) constant; the Tweedie mean is x v / (v + σ²)."""
    sde = VESDE(0.01, 10.0)
    prior = gaussian_prior(sde)
    start = torch.linspace(-8, 8, 8, dtype=torch.float64).reshape(2, 1, 2, 2)
    result = ode_sample(prior, sde, (2, 1, 2, 2), rtol=1e-9, atol=1e-9, eps=0.05, denoise=denoise, x_init=start,
                        progress=False)
    sigma_end, sigma_top = float(sde.sigma(torch.tensor(0.05))), 10.0
    end = start * math.sqrt((0.3 + sigma_end**2) / (0.3 + sigma_top**2))
    if denoise:
        end = end * 0.3 / (0.3 + sigma_end**2)
    assert result.samples.dtype == torch.float64
    assert torch.allclose(result.samples, end, rtol=1e-6, atol=1e-9)
    rough = ode_sample(prior, sde, (2, 1, 2, 2), eps=0.05, denoise=denoise, x_init=start, progress=False,
                       method="RK23", rtol=1e-3, atol=1e-3)
    assert result.nfe > rough.nfe > 3  # the tolerances and the method reach the solver


def test_ode_counts_and_seeds_and_refuses():
    sde = VPSDE()
    prior = gaussian_prior(sde)
    calls = []

    def counted(x, t):
        calls.append(float(t[0]))
        return prior(x, t)

    result = ode_sample(counted, sde, (2, 1, 2, 2), generator=torch.Generator().manual_seed(3), progress=False)
    assert result.nfe == len(calls) and calls[-1] == pytest.approx(1e-3) and calls[0] == 1.0
    assert result.samples.dtype == torch.float32
    again = ode_sample(prior, sde, (2, 1, 2, 2), generator=torch.Generator().manual_seed(3), progress=False)
    assert torch.equal(result.samples, again.samples)
    start = torch.ones(2, 1, 2, 2)
    with_denoising = ode_sample(prior, sde, (2, 1, 2, 2), eps=0.2, x_init=start, progress=False)
    calls.clear()
    without = ode_sample(counted, sde, (2, 1, 2, 2), eps=0.2, denoise=False, x_init=start, progress=False)
    assert without.nfe == len(calls) == with_denoising.nfe - 1 and min(calls) == pytest.approx(0.2)
    for rtol, atol in ((0.0, 1e-5), (1e-5, 0.0), (-1.0, 1e-5)):
        with pytest.raises(ValueError, match=rf"^rtol and atol must be > 0, got {rtol}, {atol}$"):
            ode_sample(prior, sde, (1, 1, 2, 2), rtol=rtol, atol=atol, progress=False)
    for eps in (0.0, 1.0):
        with pytest.raises(ValueError, match=rf"^eps must lie in \(0, T=1.0\), got {eps}$"):
            ode_sample(prior, sde, (1, 1, 2, 2), eps=eps, progress=False)
    with pytest.raises(ValueError, match=r"^x_init has shape \(1, 1, 2, 3\), expected \(1, 1, 2, 2\)$"):
        ode_sample(prior, sde, (1, 1, 2, 2), x_init=torch.zeros(1, 1, 2, 3), progress=False)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's, on the overflowing drift
def test_ode_failure_is_a_runtime_error(capsys):
    sde = VESDE(0.01, 10.0)

    def exploding(x, t):
        return torch.exp(1e3 * x.abs()) * 1e300

    with pytest.raises(RuntimeError, match=r"^probability-flow ODE integration failed: "):
        ode_sample(exploding, sde, (1, 1, 1, 1), x_init=torch.ones(1, 1, 1, 1, dtype=torch.float64),
                   progress=False)
    assert capsys.readouterr().err == ""


# --- classifier guidance --------------------------------------------------------------------------

WEIGHTS = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, -1.0, 2.0], [-1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)


def linear_classifier(x, t):
    return x.flatten(1) @ WEIGHTS.T.to(x.dtype) * t.to(x.dtype)[:, None]


def test_classifier_guidance_is_the_log_softmax_gradient():
    x = torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(2, 1, 2, 2)
    t = torch.tensor([0.5, 2.0], dtype=torch.float64)
    guided = ClassifierGuidedScore(score, linear_classifier, torch.tensor([2, 0]), scale=1.5)
    logits = linear_classifier(x, t)
    probabilities = torch.softmax(logits, dim=1)
    labels = torch.tensor([2, 0])
    assert torch.allclose(guided.log_prob(x, t), torch.log(probabilities[torch.arange(2), labels]), atol=1e-12)
    gradient = column(t) * (WEIGHTS[labels] - probabilities @ WEIGHTS).reshape(2, 1, 2, 2)
    assert torch.allclose(guided.guidance(x, t), gradient, atol=1e-12)
    assert torch.allclose(guided(x, t), score(x, t) + 1.5 * gradient, atol=1e-12)
    one = ClassifierGuidedScore(score, linear_classifier, 1)
    assert one.scale == 1.0 and one.label.dtype == torch.int64
    expected = score(x, t) + column(t) * (WEIGHTS[[1, 1]] - probabilities @ WEIGHTS).reshape(2, 1, 2, 2)
    assert torch.allclose(one(x, t), expected, atol=1e-12)
    assert torch.equal(ClassifierGuidedScore(score, linear_classifier, 1, scale=0)(x, t), score(x, t))
    assert guided(x.float(), t.float()).dtype == torch.float32


def test_classifier_guidance_refusals_and_carried_attributes():
    with pytest.raises(TypeError, match=r"^classifier must be callable as classifier\(x, t\) -> logits, got int$"):
        ClassifierGuidedScore(score, 3, 0)
    for scale in (-0.5, math.nan):
        with pytest.raises(ValueError, match=rf"^the classifier guidance scale must be >= 0, got {scale}$"):
            ClassifierGuidedScore(score, linear_classifier, 0, scale=scale)
    for label in (1.0, True, torch.tensor([0.5]), torch.zeros(2, 2, dtype=torch.long), torch.tensor(1, dtype=torch.float16)):
        with pytest.raises(TypeError, match=r"^label must be an integer class index or a \(B,\) tensor of them, got "):
            ClassifierGuidedScore(score, linear_classifier, label)
    x = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    t = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^3 labels for a batch of 2 items$"):
        ClassifierGuidedScore(score, linear_classifier, torch.tensor([0, 1, 2]))(x, t)
    for label in (3, -1):
        with pytest.raises(ValueError, match=r"^label out of range for a classifier of 3 classes$"):
            ClassifierGuidedScore(score, linear_classifier, label)(x, t)
    with pytest.raises(ValueError, match=r"^the classifier must return logits of shape \(B, K\), got \(2, 3, 1\)$"):
        ClassifierGuidedScore(score, lambda x, t: linear_classifier(x, t)[..., None], 0)(x, t)
    with pytest.raises(ValueError, match=r"^the classifier must return logits of shape \(B, K\), got \(1, 3\)$"):
        ClassifierGuidedScore(score, lambda x, t: linear_classifier(x, t)[:1], 0)(x, t)
    ClassifierGuidedScore(score, linear_classifier, 2)(x, t)  # the last class is in range
    ClassifierGuidedScore(score, linear_classifier, torch.tensor(0, dtype=torch.int32), scale=0.0)

    prior = gaussian_prior(VESDE())
    prior.channels, prior.image_size, prior.value_range = 1, 2, (0.0, 1.0)
    guided = ClassifierGuidedScore(prior, linear_classifier, 0)
    assert guided.sde is prior.sde and (guided.channels, guided.image_size, guided.value_range) == (1, 2, (0.0, 1.0))
    assert not hasattr(ClassifierGuidedScore(score, linear_classifier, 0), "sde")
    assert guided.score_fn is prior and guided.classifier is linear_classifier


# --- sample(): the entry point for a prior --------------------------------------------------------

def test_prior_device_and_item_shape():
    module = torch.nn.Linear(2, 2, device="meta")
    assert prior_device(module) == torch.device("meta")
    assert prior_device(torch.nn.Identity()) == torch.device("cpu")
    holder = type("Holder", (), {"device": "meta"})()
    assert prior_device(holder) == torch.device("meta") and prior_device(score) == torch.device("cpu")
    sized = type("Sized", (), {"channels": 3.0, "image_size": 4.0})()
    assert prior_item_shape(sized) == (3, 4, 4) and all(type(v) is int for v in prior_item_shape(sized))
    for partial in ({"channels": 3}, {"image_size": 4}, {}):
        with pytest.raises(ValueError, match=r"^this prior does not state channels and image_size: pass a full shape "
                                             r"\(B, C, H, W\)$"):
            prior_item_shape(type("Partial", (), partial)())


def test_sample_passes_its_settings_to_the_samplers():
    sde = VPSDE()
    prior = gaussian_prior(sde)
    prior.channels, prior.image_size = 1, 2
    drawn = sample(prior, 2, steps=3, predictor="ddim", corrector="annealed_langevin", snr=0.3, corrector_steps=2,
                   eps=0.01, denoise=False, seed=4, progress=False)
    reference = pc_sample(prior, sde, (2, 1, 2, 2), steps=3, predictor="ddim", corrector="annealed_langevin",
                          snr=0.3, corrector_steps=2, eps=0.01, denoise=False,
                          generator=torch.Generator().manual_seed(4), progress=False)
    assert torch.equal(drawn, reference.samples)
    assert torch.equal(sample(prior, (2, 1, 2, 2), steps=3, generator=torch.Generator().manual_seed(4), seed=99,
                              progress=False),
                       pc_sample(prior, sde, (2, 1, 2, 2), steps=3, generator=torch.Generator().manual_seed(4),
                                 progress=False).samples)
    ode = sample(score, (2, 1, 2, 2), "ode", sde=VESDE(0.01, 10.0), rtol=1e-3, atol=1e-4, eps=0.05, denoise=False,
                 seed=1, progress=False)
    assert torch.equal(ode, ode_sample(score, VESDE(0.01, 10.0), (2, 1, 2, 2), rtol=1e-3, atol=1e-4, eps=0.05,
                                       denoise=False, generator=torch.Generator().manual_seed(1),
                                       progress=False).samples)
    assert sample(score, (1, 1, 2, 2), sde=sde, steps=2, progress=False).device == torch.device("cpu")


def test_sample_with_a_classifier_and_its_refusals():
    sde = VESDE(0.01, 10.0)
    prior = gaussian_prior(sde)
    guided = sample(prior, (2, 1, 2, 2), steps=3, classifier=linear_classifier, label=1, classifier_scale=2.0,
                    seed=0, progress=False)
    reference = pc_sample(ClassifierGuidedScore(prior, linear_classifier, 1, 2.0), sde, (2, 1, 2, 2), steps=3,
                          generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(guided, reference.samples)
    with pytest.raises(ValueError, match=r"^pass sde=\.\.\. for a score function that does not carry its SDE$"):
        sample(score, (1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"^classifier guidance needs the class: pass label=\.\.\.$"):
        sample(prior, (1, 1, 2, 2), classifier=linear_classifier)
    with pytest.raises(ValueError, match=r"^label=\.\.\. needs a classifier=\.\.\. to guide the sampler$"):
        sample(prior, (1, 1, 2, 2), label=0)
    with pytest.raises(ValueError, match=r"^unknown sampling method 'sde'; choose 'pc' or 'ode'$"):
        sample(prior, (1, 1, 2, 2), "sde")


# --- what the mutation run of sampling/ asked for -------------------------------------------------

def recording_score(seen):
    def score_at(x, t):
        seen.append(t)
        return score(x, t)

    return score_at


@pytest.mark.parametrize("sde", [VESDE(0.01, 10.0), VPSDE()], ids=["ve", "vp"])
def test_predictors_evaluate_the_score_at_t(sde):
    for kind in (EulerMaruyamaPredictor, ReverseDiffusionPredictor, AncestralSamplingPredictor, DDIMPredictor):
        seen = []
        kind(sde, recording_score(seen)).update(X, T, 0.1, torch.Generator().manual_seed(0))
        assert len(seen) == 1 and seen[0] is T


def test_duplicate_predictor_and_corrector_names_are_refused_by_kind():
    with pytest.raises(ValueError, match=r"^a predictor named 'ddim' is already registered \("):
        register_predictor(DDIMPredictor)
    with pytest.raises(ValueError, match=r"^a corrector named 'langevin' is already registered \("):
        register_corrector(LangevinCorrector)


def test_none_corrector_keeps_its_sde_and_score():
    sde = VESDE()
    none = NoneCorrector(sde, score)
    assert none.sde is sde and none.score_fn is score and (none.snr, none.n_steps) == (1.0, 0)


def test_classifier_guidance_keeps_the_dtype_of_the_score():
    def float32_score(x, t):
        return score(x, t).float()

    x = torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(2, 1, 2, 2)
    t = torch.tensor([0.5, 2.0], dtype=torch.float64)
    guided = ClassifierGuidedScore(float32_score, linear_classifier, 1, scale=1.0)(x, t)
    assert guided.dtype == torch.float32


class FakeBar:
    """Stands in for tqdm: records how the samplers label, fill and clear their progress bars."""

    made: list = []

    def __init__(self, iterable=None, **options):
        self.iterable, self.options, self.postfixes, self.updates, self.closed = iterable, options, [], [], False
        FakeBar.made.append(self)

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **values):
        self.postfixes.append(values)

    def set_postfix_str(self, text, refresh=True):
        self.postfixes.append((text, refresh))

    def update(self, amount):
        self.updates.append(amount)

    def close(self):
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    import scoreinv.sampling.ode as ode_module
    import scoreinv.sampling.pc as pc_module

    FakeBar.made.clear()
    monkeypatch.setattr(pc_module, "tqdm", FakeBar)
    monkeypatch.setattr(ode_module, "tqdm", FakeBar)
    return FakeBar.made


def test_pc_progress_bar(bars):
    sde = VESDE(0.01, 10.0)
    pc_sample(score, sde, (1, 1, 2, 2), steps=3, corrector_steps=2, eps=0.01)
    pc_sample(score, sde, (1, 1, 2, 2), steps=3, eps=0.01, progress=False)
    shown, hidden = bars
    assert list(shown.iterable) == [0, 1, 2]
    assert shown.options == {"desc": "PC sampling", "disable": False, "leave": False}
    assert hidden.options["disable"] is True
    assert shown.postfixes == [{"nfe": 3, "refresh": False}, {"nfe": 6, "refresh": False},
                               {"nfe": 9, "refresh": False}]


def test_ode_progress_bar(bars):
    sde = VESDE(0.01, 10.0)
    calls = []

    def counted(x, t):
        calls.append(float(t[0]))
        return score(x, t)

    result = ode_sample(counted, sde, (1, 1, 2, 2), eps=0.05, x_init=torch.ones(1, 1, 2, 2, dtype=torch.float64),
                        rtol=1e-3, atol=1e-3)
    ode_sample(score, sde, (1, 1, 2, 2), eps=0.05, progress=False)
    shown, hidden = bars
    assert shown.options == {"total": pytest.approx(0.95), "desc": "ODE sampling", "disable": False, "leave": False,
                             "unit": "t", "bar_format": "{l_bar}{bar}{postfix}"}
    assert hidden.options["disable"] is True and shown.closed
    solver_calls = calls[:-1]  # the last is the denoising evaluation
    assert sum(shown.updates) == pytest.approx(1.0 - min(solver_calls))
    assert all(step > 0 for step in shown.updates)
    assert shown.postfixes[-1] == (f"t={solver_calls[-1]:.4f} nfe={len(solver_calls)}", False)
    assert result.nfe == len(calls)


def test_documented_defaults_of_the_samplers():
    import inspect

    def defaults(function):
        return {name: p.default for name, p in inspect.signature(function).parameters.items()
                if p.default is not inspect.Parameter.empty}

    assert defaults(pc_sample) == {"steps": 1000, "predictor": "reverse_diffusion", "corrector": "langevin",
                                   "snr": 0.16, "corrector_steps": 1, "eps": None, "denoise": True,
                                   "generator": None, "device": None, "x_init": None, "conditioning": None,
                                   "dtype": torch.float32, "progress": True, "time_grid": "uniform",
                                   "predictor_options": None, "start_time": None}
    assert defaults(ode_sample) == {"rtol": 1e-5, "atol": 1e-5, "method": "RK45", "eps": None, "denoise": True,
                                    "generator": None, "device": None, "x_init": None, "progress": True}
    assert defaults(sample) == {"method": "pc", "sde": None, "steps": 1000, "predictor": "reverse_diffusion",
                                "corrector": "langevin", "snr": 0.16, "corrector_steps": 1, "rtol": 1e-5,
                                "atol": 1e-5, "eps": None, "denoise": True, "generator": None, "seed": None,
                                "device": None, "progress": True, "classifier": None, "label": None,
                                "classifier_scale": 1.0}


def test_pc_loop_defaults_and_pass_through(stepping):
    sde = VESDE(0.01, 10.0)
    hooks = Recorder()
    generator = torch.Generator().manual_seed(0)
    seen = []
    hooks.project = lambda x, t, g: seen.append((t.dtype, g)) or x
    pc_sample(score, sde, (1, 1, 2, 2), steps=3, predictor=StepPredictor.name, corrector=StepCorrector.name,
              x_init=torch.zeros(1, 1, 2, 2, dtype=torch.float64), conditioning=hooks, generator=generator,
              progress=False, start_time=0.5)
    assert [entry[1] for entry in stepping[::2]] == [0.5, pytest.approx(0.5 * (0.5 + 1e-5)), 1e-5]  # VE's eps
    assert all(dtype == torch.float64 and g is generator for dtype, g in seen) and len(seen) == 5


def test_pc_loop_gives_the_predictor_its_options_and_the_conditioning():
    sde = VPSDE()
    prior = gaussian_prior(sde)
    hooks = []

    class Hook(Conditioning):
        def denoised(self, x0, t, generator):
            hooks.append(float(t[0]))
            return x0

    start = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    deterministic = pc_sample(prior, sde, (1, 1, 2, 2), steps=4, predictor="ddim", corrector="none",
                              predictor_options={"eta": 0.0}, x_init=start, conditioning=Hook(), progress=False,
                              generator=torch.Generator().manual_seed(1))
    again = pc_sample(prior, sde, (1, 1, 2, 2), steps=4, predictor="ddim", corrector="none",
                      predictor_options={"eta": 0.0}, x_init=start, progress=False,
                      generator=torch.Generator().manual_seed(2))
    assert len(hooks) == 3 and torch.equal(deterministic.samples, again.samples)  # η = 0: no draw


def test_sampler_timing_and_ode_default_eps():
    import time

    sde = VESDE(0.01, 10.0)
    before = time.perf_counter()
    result = pc_sample(score, sde, (1, 1, 2, 2), steps=2, progress=False)
    assert 0 < result.seconds <= time.perf_counter() - before
    calls = []

    def counted(x, t):
        calls.append(float(t[0]))
        return score(x, t)

    ode_sample(counted, sde, (1, 1, 2, 2), x_init=torch.ones(1, 1, 2, 2), progress=False, rtol=1e-3, atol=1e-3)
    assert calls[-1] == pytest.approx(1e-5)


def test_sample_defaults_reach_the_samplers(capsys):
    sde = VESDE(0.01, 10.0)
    prior = gaussian_prior(sde)
    sample(prior, (1, 1, 2, 2), steps=2)
    assert "PC sampling" in capsys.readouterr().err
    sample(prior, (1, 1, 2, 2), "ode", rtol=1e-2, atol=1e-2)
    assert "ODE sampling" in capsys.readouterr().err
    sample(prior, (1, 1, 2, 2), steps=2, progress=False)
    sample(prior, (1, 1, 2, 2), "ode", rtol=1e-2, atol=1e-2, progress=False)
    assert capsys.readouterr().err == ""
    denoised = sample(prior, (1, 1, 2, 2), "ode", rtol=1e-3, atol=1e-3, seed=3, progress=False)
    reference = ode_sample(prior, sde, (1, 1, 2, 2), rtol=1e-3, atol=1e-3, generator=torch.Generator().manual_seed(3),
                           progress=False)
    assert torch.equal(denoised, reference.samples)
    guided = sample(prior, (1, 1, 2, 2), steps=2, classifier=linear_classifier, label=0, seed=0, progress=False)
    expected = pc_sample(ClassifierGuidedScore(prior, linear_classifier, 0, 1.0), sde, (1, 1, 2, 2), steps=2,
                         generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(guided, expected.samples)


def test_default_step_counts_and_tolerances_are_used():
    sde = VESDE(0.01, 10.0)
    counter = Recorder()
    pc_sample(score, sde, (1, 1, 1, 1), predictor="none", corrector="none", conditioning=counter, progress=False)
    assert len(counter.calls) == 1000 - 1 + 1  # a projection after each of the 999 predictor steps, and finish
    prior = gaussian_prior(sde)
    assert sample(score, (1, 1, 1, 1), sde=sde, predictor="euler_maruyama", corrector="none", progress=False,
                  seed=0).shape == (1, 1, 1, 1)
    counted = []
    sample(lambda x, t: counted.append(1) or score(x, t), (1, 1, 1, 1), sde=sde, predictor="euler_maruyama",
           corrector="none", progress=False)
    assert len(counted) == 1000
    default = ode_sample(prior, sde, (1, 1, 2, 2), generator=torch.Generator().manual_seed(0), progress=False)
    explicit = ode_sample(prior, sde, (1, 1, 2, 2), rtol=1e-5, atol=1e-5, method="RK45",
                          generator=torch.Generator().manual_seed(0), progress=False)
    assert default.nfe == explicit.nfe and torch.equal(default.samples, explicit.samples)
    assert torch.equal(sample(prior, (1, 1, 2, 2), "ode", seed=0, progress=False), default.samples)


def test_ode_tolerances_and_method_each_reach_the_solver():
    sde = VESDE(0.01, 10.0)
    start = torch.full((1, 1, 2, 2), 1e-3, dtype=torch.float64)

    def nfe(**options):
        return ode_sample(score, sde, (1, 1, 2, 2), x_init=start, eps=0.05, progress=False, **options).nfe

    assert nfe(rtol=1e-2, atol=1e-2) < nfe(rtol=1e-2, atol=1e-9)
    assert nfe(rtol=1e-4, atol=1e-4, method="RK23") != nfe(rtol=1e-4, atol=1e-4, method="RK45")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ode_evaluates_the_score_in_the_dtype_and_batch_of_x(dtype):
    sde = VESDE(0.01, 10.0)
    seen = []

    def recording(x, t):
        seen.append((x.dtype, t.dtype, tuple(t.shape)))
        return score(x, t)

    before = time.perf_counter()
    result = ode_sample(recording, sde, (3, 1, 2, 2), x_init=torch.ones(3, 1, 2, 2, dtype=dtype), eps=0.05,
                        rtol=1e-3, atol=1e-3, progress=False)
    assert 0 < result.seconds <= time.perf_counter() - before
    assert set(seen) == {(dtype, dtype, (3,))} and result.samples.dtype == dtype
