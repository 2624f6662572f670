"""The guidance cap: the likelihood term never exceeds ρ times the prior score's norm."""

import pytest
import torch

from scoreinv.operators import MaskOp
from scoreinv.sde import VESDE
from scoreinv.solvers import GuidedScore


def small_score(x, t):
    return -0.01 * x  # a weak prior score, so the guidance dominates


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_capped_guidance_is_at_most_ratio_times_the_score(ratio):
    sde = VESDE(0.01, 10.0)
    operator = MaskOp(image_size=8, fraction=0.5, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = operator(torch.rand(3, 1, 8, 8)) + 5.0 * operator.mask  # far from x: a large residual
    t = torch.full((3,), 0.5)
    uncapped = GuidedScore(small_score, sde, operator, y, 0.1)(x, t) - small_score(x, t)
    capped = GuidedScore(small_score, sde, operator, y, 0.1, max_ratio=ratio)(x, t) - small_score(x, t)
    score_norm = small_score(x, t).flatten(1).norm(dim=1)
    assert (uncapped.flatten(1).norm(dim=1) > ratio * score_norm).all()  # the cap is active here
    assert torch.allclose(capped.flatten(1).norm(dim=1), ratio * score_norm, rtol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(capped.flatten(1), uncapped.flatten(1))
    assert torch.allclose(cosine, torch.ones(3), atol=1e-6)  # same direction, shorter step


def test_a_cap_above_the_guidance_changes_nothing_and_bad_caps_are_refused():
    sde = VESDE(0.01, 10.0)
    operator = MaskOp(image_size=8, fraction=0.5, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = operator(x + 0.01)
    t = torch.full((2,), 0.5)
    plain = GuidedScore(small_score, sde, operator, y, 0.1)(x, t)
    assert torch.equal(plain, GuidedScore(small_score, sde, operator, y, 0.1, max_ratio=1e6)(x, t))
    with pytest.raises(ValueError, match="max_ratio"):
        GuidedScore(small_score, sde, operator, y, 0.1, max_ratio=0.0)
