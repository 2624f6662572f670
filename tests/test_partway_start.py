"""Starting the decomposed sampler part-way, from a noised data-consistent estimate."""

import pytest
import torch

from scoreinv.reconstruct import posterior
from scoreinv.sampling import sampling_times
from scoreinv.sde import VESDE
from test_decomposed import analytic, ct_problem, errors


def test_the_time_grid_can_start_part_way():
    sde = VESDE(0.01, 20.0)
    start = float(sde.time_at_noise_level(torch.tensor([1.0], dtype=torch.float64)))
    for kind in ("uniform", "log-sigma", "karras"):
        times = sampling_times(sde, 10, 1e-5, kind, start=start)
        assert times[0] == pytest.approx(start) and times[-1] == pytest.approx(1e-5)
        assert (times[1:] < times[:-1]).all()
    geometric = sde.noise_level(sampling_times(sde, 5, 1e-5, "log-sigma", start=start))
    ratios = geometric[1:] / geometric[:-1]
    torch.testing.assert_close(ratios, ratios[:1].expand(4))  # log σ uniform on [σ(ε), 1]
    with pytest.raises(ValueError, match="first time point"):
        sampling_times(sde, 10, 1e-5, start=2.0)


def test_a_start_level_at_or_above_the_prior_changes_nothing():
    prior, operator, y, _ = ct_problem(0.0)
    common = dict(steps=20, num_samples=2, seed=3, progress=False)
    plain = posterior(y, operator, prior, **common)
    above = posterior(y, operator, prior, start_noise_level=25.0, **common)
    torch.testing.assert_close(torch.as_tensor(above.samples), torch.as_tensor(plain.samples), rtol=0, atol=0)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_a_part_way_start_keeps_the_closed_form_posterior(noise):
    """From σ_s = 1 (of σ_max = 20), 50 steps, the Gaussian posterior is kept as well as from the
    prior: measured mean / std errors 0.018 / 0.20 (noise-free) and 0.029 / 0.26 (1%), against
    0.011 / 0.19 and 0.027 / 0.25 from T."""
    prior, operator, y, noise_std = ct_problem(noise)
    mean, std = analytic(prior, operator, y, noise_std)
    result = posterior(y, operator, prior, steps=50, num_samples=64, seed=0, start_noise_level=1.0, progress=False)
    assert result.nfe == 50
    mean_error, std_error = errors(result, mean, std)
    assert mean_error < 0.05 and std_error < 0.30


def test_start_iterations_are_stored_only_when_a_part_way_start_runs():
    from scoreinv import RadonOp
    from scoreinv.reconstruct import resolve_settings

    assert resolve_settings(RadonOp(23, 64)).start_iterations is None          # the 64² rule starts at T
    assert resolve_settings(RadonOp(23, 256)).start_iterations == 30          # the clinical-size rule starts part-way
    assert resolve_settings(RadonOp(23, 64), start_noise_level=1.0, start_iterations=5).start_iterations == 5
    with pytest.raises(ValueError, match="start_iterations is read only with start_noise_level"):
        resolve_settings(RadonOp(23, 64), start_iterations=5)
