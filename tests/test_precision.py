"""The prior network in bfloat16: the wrapper computes the network's products in bfloat16, returns the
score in the input's dtype, stays a prior (its sde reachable), and the setting is typed and stored."""

import numpy as np
import pytest
import torch

import scoreinv
from scoreinv.checkpoint import load_model
from scoreinv.operators import RadonOp
from scoreinv.reconstruct import resolve_settings
from scoreinv.sampling.precision import Bfloat16Score, score_in_precision


def test_float32_is_the_score_itself_and_an_unknown_precision_is_an_error():
    model = load_model("ct-patch")
    assert score_in_precision(model, None) is model and score_in_precision(model, "float32") is model
    with pytest.raises(ValueError, match=r"unknown score precision 'float16'.*'float32' or 'bfloat16'"):
        score_in_precision(model, "float16")


def test_bfloat16_runs_the_network_in_bfloat16_and_returns_a_float32_score_close_to_float32s():
    model = load_model("ct-patch")
    x = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.3, 0.6])
    wrapped = score_in_precision(model, "bfloat16")
    assert isinstance(wrapped, Bfloat16Score) and wrapped.sde is model.sde and wrapped.is_patch_prior
    with torch.no_grad():
        exact, reduced = model(x, t), wrapped(x, t)
    assert reduced.dtype == torch.float32 and reduced.shape == exact.shape
    relative = float((reduced - exact).norm() / exact.norm())
    # bfloat16 keeps 8 mantissa bits (relative rounding 2⁻⁹ ≈ 0.002 per value): a wrapper that ran in
    # float32 would give 0 here, one that lost the network's scale would give ≳ 1.
    assert 1e-4 < relative < 0.03, relative


def test_the_setting_is_typed_resolved_by_size_and_stored_in_the_output():
    assert resolve_settings(RadonOp(23, 256)).score_precision == "bfloat16"
    assert resolve_settings(RadonOp(23, 64)).score_precision == "float32"
    assert resolve_settings(RadonOp(23, 256), score_precision="float32").score_precision == "float32"
    with pytest.raises(ValueError, match="score_precision"):
        resolve_settings(RadonOp(23, 64), score_precision="half")
    operator = RadonOp(23, 64)
    truth = torch.zeros(1, 1, 64, 64)
    truth[..., 20:44, 20:44] = 0.5
    y = operator(truth)
    result = scoreinv.posterior(y, operator, "ct-anatomy", steps=5, num_samples=1, score_precision="bfloat16",
                                progress=False)
    assert result.settings["score_precision"] == "bfloat16" and np.isfinite(result.mean.numpy()).all()
