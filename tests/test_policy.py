"""The solvers' policy: methods and defaults from the operator's capabilities, noise and size; typed
settings that name what ran; the defaults table of scoreinv.reconstruct is the policy's."""

import importlib

import numpy as np
import pytest
import torch

import scoreinv
from scoreinv.operators import GrayscaleOp, LinearOperator, MaskOp, RadonOp
from scoreinv.reconstruct import resolve_settings
from scoreinv.solvers import METHODS, policy
from scoreinv.solvers.policy import Problem, SettingsRule


class Blur(LinearOperator):
    """A plain operator: no capabilities."""

    def __init__(self):
        super().__init__((1, 8, 8), (1, 8, 8))

    def _forward(self, x):
        return x

    _adjoint = _forward


ROWS = [
    ("RadonOp, noise-free", lambda: RadonOp(23, 64)),
    ("RadonOp, noise_std > 0", lambda: RadonOp(23, 64, noise_std=0.01)),
    ("RadonOp over a limited arc (> 30° of directions unmeasured), noise-free",
     lambda: RadonOp(angles=np.linspace(0, np.pi / 2, 60, endpoint=False), image_size=64)),
    ("RadonOp over a limited arc (> 30° of directions unmeasured), noise_std > 0",
     lambda: RadonOp(angles=np.linspace(0, np.pi / 2, 60, endpoint=False), image_size=64, noise_std=0.01)),
    ("RadonOp at 256², noise-free", lambda: RadonOp(23, 256)),
    ("RadonOp at 256², noise-free, ≥ 0.25 measurements per pixel (60 views)", lambda: RadonOp(60, 256)),
    ("RadonOp at 256², noise_std > 0", lambda: RadonOp(23, 256, noise_std=0.01)),
    ("RadonOp over a limited arc at 256², noise-free",
     lambda: RadonOp(angles=np.linspace(0, 2 * np.pi / 3, 60, endpoint=False), image_size=256)),
    ("MaskOp / GrayscaleOp, noise-free", lambda: MaskOp(image_size=8, fraction=0.5)),
    ("MaskOp / GrayscaleOp, noise_std > 0", lambda: GrayscaleOp(8, noise_std=0.01)),
    ("any other operator", Blur),
]


def defaults_table() -> str:
    """The defaults table as resolve_settings fills it (what the policy sets beyond steps and samples)."""
    lines = ["| operator | method | steps × samples | also set by the policy |",
             "|---|---|---|---|"]
    for label, build in ROWS:
        operator = build()
        resolved = resolve_settings(operator)
        reads = METHODS[resolved.method].settings_model.model_fields
        chosen = policy.default_settings(Problem.of(operator), resolved.method)
        extra = ", ".join(f"{key} = {value}" for key, value in chosen.items()
                          if key in reads and key not in ("steps", "num_samples")) or "—"
        lines.append(f"| {label} | {resolved.method} | {resolved.steps} × {resolved.num_samples} | {extra} |")
    return "\n".join(lines)


def test_the_defaults_table_of_reconstruct_is_what_resolve_settings_fills():
    assert defaults_table() in importlib.import_module("scoreinv.reconstruct").__doc__, defaults_table()


def test_a_default_ct_run_stores_the_predictor_that_ran_and_no_corrector():
    for noise in (0.0, 0.01):
        resolved = resolve_settings(RadonOp(23, 64, noise_std=noise))
        assert (resolved.method, resolved.predictor, resolved.corrector) == ("decomposed", "ddim", "none")
        assert resolved.snr is None and resolved.corrector_steps is None and resolved.final_iterations is None
        assert resolve_settings(RadonOp(23, 64, noise_std=noise), resolved) == resolved
    consistency = resolve_settings(RadonOp(23, 64), method="consistency")
    assert (consistency.predictor, consistency.corrector, consistency.snr, consistency.final_iterations) == (
        "reverse_diffusion", "langevin", 0.246, 20)
    assert consistency.projection_iterations is None and consistency.zeta is None


def test_a_misspelt_or_unread_setting_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"unknown setting 'cg_iteratoins' \(did you mean 'cg_iterations'\?\)"):
        scoreinv.reconstruct(torch.zeros(23, 91), operator=RadonOp(23), cg_iteratoins=3)
    with pytest.raises(ValueError, match="method 'decomposed' does not use snr"):
        resolve_settings(RadonOp(23, 64), snr=0.2)
    with pytest.raises(ValueError, match="method 'consistency' does not use projection_iterations"):
        resolve_settings(RadonOp(23, 64), method="consistency", projection_iterations=3)
    with pytest.raises(ValueError, match=r"'decomposed'.*predictor.*'ddim'"):
        resolve_settings(RadonOp(23, 64), predictor="reverse_diffusion")
    with pytest.raises(ValueError, match="'weigth' is not a setting"):
        SettingsRule("misspelt", lambda problem: True, (), {"weigth": 1.0})
    with pytest.raises(ValueError, match="weight"):
        SettingsRule("out of range", lambda problem: True, (), {"weight": 2.0})


def test_every_policy_rule_names_registered_methods_and_settings_they_read():
    for rule in policy.METHOD_RULES:
        assert rule.method in METHODS, rule.note
    for rule in policy.SETTINGS_RULES:
        for name in rule.methods:
            assert set(rule.settings) <= set(METHODS[name].settings_model.model_fields), rule.note
        if not rule.methods:  # a rule for any method: each key is read by some method
            read = set().union(*(method.settings_model.model_fields for method in METHODS.values()))
            assert set(rule.settings) <= read, rule.note


def test_a_rule_can_depend_on_the_image_size(monkeypatch):
    rule = SettingsRule("large CT", lambda p: p.has("line-integrals") and p.size >= 128, ("decomposed",),
                        {"steps": 30, "num_samples": 1})
    monkeypatch.setattr(policy, "SETTINGS_RULES", [rule, *policy.SETTINGS_RULES])
    assert (resolve_settings(RadonOp(23, 128)).steps, resolve_settings(RadonOp(23, 64)).steps) == (30, 50)
    assert Problem.of(RadonOp(23)).image_shape is None  # unsized: the rule sees size 0


def test_a_limited_arc_is_a_geometry_fact_of_the_operator_that_the_policy_reads():
    from scoreinv.operators import FanBeamOp

    arc_120 = RadonOp(angles=np.linspace(0, 2 * np.pi / 3, 60, endpoint=False), image_size=64, noise_std=0.01)
    fan = FanBeamOp(23, 64, source_distance=128, detector_distance=64, noise_std=0.01)
    short = FanBeamOp(angles=FanBeamOp.short_scan(23, fan.fan_angle), image_size=64, source_distance=128,
                      detector_distance=64, noise_std=0.01)
    assert Problem.of(arc_120).unmeasured_arc == pytest.approx(np.pi / 3 + (2 * np.pi / 3) / 60)
    assert [Problem.of(op).limited_arc for op in (arc_120, RadonOp(23, 64), fan, short)] == [True, False, False, False]
    assert [resolve_settings(op).cg_iterations for op in (arc_120, RadonOp(23, 64, noise_std=0.01), fan, short)] \
        == [15, 7, 7, 7]
    noise_free = [op.with_options(noise_std=0.0) for op in (arc_120, fan, short)]
    assert [resolve_settings(op).projection_noise_level for op in noise_free] == [0.3, 0.1, 0.1]
    unsized_fan = FanBeamOp(23, source_distance=128, detector_distance=64)
    assert Problem.of(unsized_fan).unmeasured_arc is None and not Problem.of(unsized_fan).limited_arc


def test_measurements_per_pixel_counts_the_sinogram_against_the_image():
    assert Problem.of(RadonOp(23, 256)).measurements_per_pixel == pytest.approx(23 * 363 / 256 ** 2)
    assert Problem.of(RadonOp(60, 512)).measurements_per_pixel == pytest.approx(60 * 725 / 512 ** 2)
    assert Problem.of(RadonOp(23)).measurements_per_pixel == 0.0  # no size yet
    assert resolve_settings(RadonOp(60, 512)).start_noise_level == 0.2  # 0.17 per pixel: not dense
