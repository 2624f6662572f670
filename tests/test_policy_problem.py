"""The solvers' policy: what it reads of an operator and how it checks its rules (fast; the policy's
own tables are tested in tests/test_policy.py)."""

import pytest

from scoreinv.operators import MaskOp, RadonOp
from scoreinv.solvers.policy import Problem, SettingsRule, _exact


def test_problem_of_reads_the_operator_and_defaults_for_a_plain_object():
    problem = Problem.of(RadonOp(8, image_size=16, noise_std=0.25))
    assert problem.capabilities == frozenset({"full-transform", "line-integrals", "coarse-view"})
    assert problem.modality == "ct" and problem.noise_std == 0.25 and problem.image_shape == (1, 16, 16)
    plain = Problem.of(object())
    assert plain == Problem(frozenset(), None, 0.0, None) and type(plain.noise_std) is float
    flat = type("Flat", (), {"in_shape": (32,)})()
    assert Problem.of(flat).image_shape is None  # only (C, H, W) images have a size
    assert Problem.of(RadonOp(8)).image_shape is None  # no size yet


def test_exact_needs_both_the_full_transform_and_an_exact_inverse():
    assert _exact(Problem.of(MaskOp(image_size=4, fraction=0.5)))
    assert not _exact(Problem(frozenset({"exact-inverse"})))
    assert not _exact(Problem(frozenset({"full-transform"})))


def test_settings_rule_refuses_unknown_keys_and_the_method():
    with pytest.raises(ValueError, match=r"^policy rule 'r': 'bogus', 'wobble' is not a setting \(see "
                                         r"ReconstructionSettings\)$"):
        SettingsRule("r", lambda p: True, (), {"wobble": 1, "bogus": 2})
    with pytest.raises(ValueError, match=r"^policy rule 'r': 'method' is not a setting"):
        SettingsRule("r", lambda p: True, (), {"method": "decomposed"})
    assert SettingsRule("r", lambda p: True, (), {"steps": 10}).settings == {"steps": 10}
