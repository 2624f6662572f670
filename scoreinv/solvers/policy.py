"""Reconstruction policy: which method, and which settings, suit an operator.

Operators name no method; they state what they offer (``operator.capabilities``), their noise
and their image size. The policy reads those as a :class:`Problem` and answers two questions,
each by the first rule that matches (so a more specific rule goes above a general one):

* :data:`METHOD_RULES`: the method to run when the user names none;
* :data:`SETTINGS_RULES`: the settings of a method on a problem (each rule for named methods,
  or for any method; a method takes the fields of the rule that it reads). Fields neither the
  user nor a rule sets take the method's own default (its ``settings_model``).

:func:`scoreinv.reconstruct.resolve_settings` is the one place that applies them. A rule's
settings are checked against :class:`~scoreinv.config.ReconstructionSettings` when it is made (a
misspelt name is a ValueError), and against the typed settings of the methods it names when it is
applied. A new rule is one entry, for instance a default for large CT images::

    SETTINGS_RULES.insert(0, SettingsRule(
        "CT at 256² and above", lambda p: "line-integrals" in p.capabilities and p.size >= 256,
        ("decomposed",), {"steps": 30, "num_samples": 1}))

The numbers were measured on validation images (docs/reconstruct.md gives each run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scoreinv.config import ReconstructionSettings


#: A CT scan is a limited arc when its views leave more than 30° of the ray directions unmeasured
#: (23 parallel views over [0, π) leave 7.8°; 60 views over 0–120° leave 62°; a fan over a full
#: turn or a short scan, none).
LIMITED_ARC = math.pi / 6

#: CT data are dense when a measurement holds at least this many values per image pixel (60
#: parallel views at 256² hold 0.33; 23 views 0.13; 60 views at 512² 0.17).
DENSE_CT = 0.25


@dataclass(frozen=True)
class Problem:
    """What the policy sees of a reconstruction problem.

    Attributes
    ----------
    capabilities:
        The operator's capabilities (``"full-transform"``, ``"exact-inverse"``, ``"line-integrals"``, ...).
    modality:
        The prior domain of its images (``"ct"``, ``"colour"``), or None.
    noise_std:
        σ_y of the measurement noise (0: noise-free).
    image_shape:
        (C, H, W) of one image, or None for an operator without a size.
    unmeasured_arc:
        For CT: the widest range of ray directions (radians, modulo π) that no view measures
        (``operator.unmeasured_arc``: π/n for n parallel views over [0, π), about π − α for a
        limited arc [0, α)); None when the operator does not say.
    measurement_count:
        Values in one measurement (the product of ``operator.out_shape``), or None without a size.
    """

    capabilities: frozenset[str] = frozenset()
    modality: str | None = None
    noise_std: float = 0.0
    image_shape: tuple[int, int, int] | None = None
    unmeasured_arc: float | None = None
    measurement_count: int | None = None

    @classmethod
    def of(cls, operator: Any) -> Problem:
        """The problem posed by ``operator``."""
        try:
            shape = tuple(int(s) for s in operator.in_shape)
            count = math.prod(int(s) for s in operator.out_shape)
        except (ValueError, TypeError, AttributeError):  # an operator without a size yet
            shape, count = None, None
        try:
            arc = getattr(operator, "unmeasured_arc", None)
        except ValueError:  # a fan without a size has no fan angle yet
            arc = None
        return cls(frozenset(getattr(operator, "capabilities", ())), getattr(operator, "modality", None),
                   float(getattr(operator, "noise_std", 0.0)), shape if shape and len(shape) == 3 else None,
                   None if arc is None else float(arc), count)

    @property
    def noisy(self) -> bool:
        return self.noise_std > 0

    @property
    def size(self) -> int:
        """The larger image side in pixels (0 when unknown)."""
        return max(self.image_shape[1:]) if self.image_shape is not None else 0

    @property
    def measurements_per_pixel(self) -> float:
        """Measured values per unknown pixel, m / (C H W) (0 when unknown).

        For parallel-beam CT with n views and ⌈√2 N⌉ detector cells at N², about √2 n / N: 0.13 for
        23 views and 0.33 for 60 views at 256², 0.17 for 60 views at 512².
        """
        if self.image_shape is None or self.measurement_count is None:
            return 0.0
        return self.measurement_count / math.prod(self.image_shape)

    @property
    def limited_arc(self) -> bool:
        """Whether the views leave more than :data:`LIMITED_ARC` of the directions unmeasured."""
        return self.unmeasured_arc is not None and self.unmeasured_arc > LIMITED_ARC

    def has(self, *capabilities: str) -> bool:
        return set(capabilities) <= self.capabilities


Condition = Callable[[Problem], bool]


def _always(problem: Problem) -> bool:
    return True


@dataclass(frozen=True)
class MethodRule:
    """Run ``method`` on the problems where ``when`` holds (and the user named no method)."""

    note: str
    when: Condition
    method: str


@dataclass(frozen=True)
class SettingsRule:
    """Settings for ``methods`` (empty: any method) on the problems where ``when`` holds."""

    note: str
    when: Condition
    methods: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(key for key in self.settings if key not in ReconstructionSettings.model_fields
                         or key == "method")
        if unknown:
            raise ValueError(f"policy rule {self.note!r}: {', '.join(map(repr, unknown))} "
                             "is not a setting (see ReconstructionSettings)")
        ReconstructionSettings(**self.settings)  # the values, checked field by field

    def applies(self, problem: Problem, method: str) -> bool:
        return (not self.methods or method in self.methods) and self.when(problem)


def _ct(problem: Problem) -> bool:
    return problem.has("line-integrals")


def _exact(problem: Problem) -> bool:
    return problem.has("full-transform", "exact-inverse")


#: The method when the user names none: the first rule that holds.
METHOD_RULES: list[MethodRule] = [
    MethodRule("CT: decomposed sampling", _ct, "decomposed"),
    MethodRule("masks and colour, noise-free: decomposed sampling", lambda p: _exact(p) and not p.noisy,
               "decomposed"),
    MethodRule("masks and colour, noisy: hard replacement", _exact, "replacement"),
    MethodRule("any other A = Λ T: consistency steps", lambda p: p.has("full-transform"), "consistency"),
    MethodRule("any other operator: gradient guidance", _always, "guidance"),
]

# Decomposed sampling on masks and colour: on 4 validation crops of the bundled colour prior, 100
# steps with ζ = 0.7 gave 33.9 dB / SSIM 0.906 (30% of the pixels kept) against 33.1 / 0.889 for hard
# replacement at 1000 steps, and 24.0 / 0.912 against 23.2 / 0.914 for colorization; 50 steps fell
# below replacement on the colorization test crops (docs/reconstruct.md).
_EXACT_DECOMPOSED = {"steps": 100, "zeta": 0.7}

_CT_NOISE_FREE = {"steps": 50, "num_samples": 2, "zeta": 0.85, "projection_iterations": 300,
                  "projection_noise_level": 0.1}
_CT_NOISY = {"steps": 50, "num_samples": 2, "zeta": 0.9, "damping_weight": 0.5}
# Above 64² the patch prior's network runs in bfloat16. On 3 validation sets at 256² (step 20,000, the
# defaults below) it gave 50.36 / 45.26 / 42.94 dB against 50.38 / 45.27 / 42.94 in float32 at 60
# views, 39.86 / 36.98 / 34.16 against 39.88 / 36.99 / 34.16 at 23, and with 1% noise 35.20 / 39.17
# against 35.21 / 39.18 (23 / 60 views, phantoms), at 0.56–0.6 of the time (one torch thread, this
# project's CPU with AMX).
_PATCH_PRIOR_PRECISION = {"score_precision": "bfloat16"}
_CT_COARSE_NOISE_FREE = {"steps": 30, "num_samples": 6, "zeta": 0.85, "projection_iterations": 300,
                         "start_noise_level": 0.2, "start_estimate": "coarse", **_PATCH_PRIOR_PRECISION}


def _coarse_ct_noise_free(problem: Problem) -> bool:
    """Noise-free CT above 64² (the patch prior's sizes) with a coarse view."""
    return _ct(problem) and not problem.noisy and problem.size > 64 and problem.has("coarse-view")


#: The settings of a method on a problem: the first rule that holds for both.
SETTINGS_RULES: list[SettingsRule] = [
    # Noise-free limited arcs above 64², on 2 validation anatomy phantoms at 256² (60 views over 0–120°,
    # docs/clinical.md): started at σ_s = 0.3 from the upsampled 64² reconstruction of the whole-image
    # prior (start_estimate = 'coarse') 32.45 dB, against 29.95 from CG on the data and 29.72 for TV;
    # σ_s = 0.1 gave 32.34, 0.6 gave 31.85. A 64² patch cannot see the wedge's image-wide streaks whole.
    SettingsRule("CT over a limited arc above 64², noise-free, coarse start",
                 lambda p: _ct(p) and not p.noisy and p.limited_arc and p.size > 64 and p.has("coarse-view"),
                 ("decomposed",),
                 {"steps": 30, "num_samples": 2, "zeta": 0.85, "projection_iterations": 300,
                  "start_noise_level": 0.3, "start_estimate": "coarse", **_PATCH_PRIOR_PRECISION}),
    # CT above 64² (the patch prior's sizes), on 3 validation anatomy phantoms at 256² (seed 5_000_000,
    # docs/clinical.md), prior at step 4,800, 2 × 30 steps unless said: noise-free, the coarse start at
    # σ_s = 0.3 gave 37.57 / 47.22 dB at 23 / 60 views against 35.74 / 46.66 from CG on the data at
    # σ_s = 1 (σ_s = 0.5: 36.84 / 47.02; 0.2: 37.61 / 47.37); four samples from σ_s = 0.3 / 0.2 / 0.1
    # gave 37.94 / 37.95 / 37.69 at 23 views and 47.83 / 48.02 / 48.36 at 60 views (four samples
    # from the data: 36.42 / 47.24). The denser the data (measurements per pixel: 0.13 at 23 views,
    # 0.33 at 60), the less of the start the sampler needs to redraw. At step 5,600 with those σ_s,
    # 4 / 6 / 8 samples gave 38.19 / 38.37 / – at 23 views and 48.53 / 48.75 / 48.80 at 60 (on
    # validation slices with 10 HU of image grain at 60 views: 44.01 / 44.15 / 44.24); eight would
    # have taken the 60 s a 256² slice may cost on the 2-core CPU in float32, six took about 47 (53
    # with the dense rule's K = 15 below, 31 in bfloat16; step 10,200, six samples: 39.24 / 49.27,
    # and 44.49 with grain). With 1% noise the coarse start
    # at σ_s = 0.5 gave 33.96 / 38.25 against 32.81 / 38.00 from the data at σ_s = 2 (σ_s = 1: 33.35 / 38.14).
    # Dense data, step 10,200, six samples: K = 15 CG iterations per step instead of 7 gave 49.82 dB
    # against 49.27 on the validation phantoms at 60 views, and 42.81 against 42.44 on the real
    # validation slices (benchmarks/real_ct.py's VALIDATION_SLICES; K = 30: 42.87). At step 20,000 in
    # bfloat16, projecting with 300 CG iterations at every step below σ_t = 0.015 (the last 5 of 30)
    # gave 50.59 / 45.49 / 43.14 dB on the three validation sets against 50.36 / 45.26 / 42.94, and
    # ten samples instead of six 50.53 / 45.36 / 43.01; on the idle 2-core CPU the slice takes 49 s
    # (σ_p = 0.02: 59 s).
    SettingsRule("CT above 64², noise-free, coarse start, dense data",
                 lambda p: _coarse_ct_noise_free(p) and p.measurements_per_pixel >= DENSE_CT, ("decomposed",),
                 {**_CT_COARSE_NOISE_FREE, "start_noise_level": 0.1, "cg_iterations": 15,
                  "projection_noise_level": 0.015}),
    SettingsRule("CT above 64², noise-free, coarse start", _coarse_ct_noise_free, ("decomposed",),
                 _CT_COARSE_NOISE_FREE),
    SettingsRule("CT above 64², noisy, coarse start", lambda p: _ct(p) and p.size > 64 and p.has("coarse-view"),
                 ("decomposed",),
                 {"steps": 30, "num_samples": 2, "zeta": 0.9, "damping_weight": 0.5, "start_noise_level": 0.5,
                  "start_estimate": "coarse", **_PATCH_PRIOR_PRECISION}),
    # Above 64² without a coarse view (a CT family that has none), on the same phantoms at step 3,200:
    # two samples of 30 steps from σ_s = 1 gave 35.3 dB at 23 views against 34.6 from σ_s = 2; with 1%
    # noise one sample of 30 steps from σ_s = 2 gave 31.0 dB against 31.5 for the 64² rule's 2 × 50 (at
    # step 1,200). The 64² rule's late projections (300 CG iterations at every step below σ_t = 0.1)
    # cost ≈ 12 s each at 256², so here only the last step projects.
    SettingsRule("CT above 64², noise-free, decomposed", lambda p: _ct(p) and not p.noisy and p.size > 64,
                 ("decomposed",),
                 {"steps": 30, "num_samples": 2, "zeta": 0.85, "projection_iterations": 300,
                  "start_noise_level": 1.0, **_PATCH_PRIOR_PRECISION}),
    SettingsRule("CT above 64², noisy, decomposed", lambda p: _ct(p) and p.size > 64, ("decomposed",),
                 {"steps": 30, "num_samples": 2, "zeta": 0.9, "damping_weight": 0.5, "start_noise_level": 2.0,
                  **_PATCH_PRIOR_PRECISION}),
    # Limited arcs with 1% noise, on 8 validation anatomy phantoms (phantoms("anatomy", 8, 64,
    # seed=5_000_000), 60 views, docs/benchmarks.md): K = 15 CG iterations per step gave 32.17 dB
    # over 0–90° against 31.22 for K = 7, and 35.74 against 35.77 over 0–120°. Fan beams (full turn,
    # short scan) gained nothing from any setting tried.
    SettingsRule("CT over a limited arc, noisy, decomposed", lambda p: _ct(p) and p.noisy and p.limited_arc,
                 ("decomposed",), {**_CT_NOISY, "cg_iterations": 15}),
    # Noise-free limited arcs, same 8 phantoms: K_final = 300 from σ_t < 0.3 (instead of 0.1) gave
    # 50.01 dB over 0–90° against 49.55, and 53.02 against 52.97 over 0–120°, at twice the time.
    SettingsRule("CT over a limited arc, noise-free, decomposed",
                 lambda p: _ct(p) and not p.noisy and p.limited_arc, ("decomposed",),
                 {**_CT_NOISE_FREE, "projection_noise_level": 0.3}),
    # Noise-free CT, on 8 validation phantoms (phantoms("mixed", 8, 64, seed=5_000_000), 23 views):
    # 45.0 dB with ζ = 0.85 against 43.0 with DDIM's η = 1; two samples of 50 steps with the steps
    # below σ_t = 0.1 and the last one projecting onto {A x = y} (300 CG iterations) gave 43.6 dB on
    # 8 validation anatomy phantoms against 40.7 for one sample with K = 7 throughout.
    SettingsRule("CT, noise-free, decomposed", lambda p: _ct(p) and not p.noisy, ("decomposed",), _CT_NOISE_FREE),
    # CT with 1% noise, same phantoms: ζ = 0.9 and damping w = 0.5 gave 32.7 dB / SSIM 0.962 against
    # 31.0 / 0.942 for 4 × 25 steps with η = 1, w = 3; ζ = 1, w = 0.3 reached 33.0 dB but its samples
    # spread 35% off the exact posterior std on the Gaussian check (this rule: 25%).
    SettingsRule("CT, noisy, decomposed", _ct, ("decomposed",), _CT_NOISY),
    SettingsRule("CT, noisy, PC methods", lambda p: _ct(p) and p.noisy, (),
                 {"steps": 200, "snr": 0.246, "weight": 1.0, "final_iterations": 0, "final_damping": 0.0,
                  "step_filter": "shepp-logan", "final_filter": "hann", "noise_weight": 0.25}),
    SettingsRule("CT, noise-free, PC methods", _ct, (),
                 {"steps": 500, "snr": 0.246, "weight": 1.0, "final_iterations": 20, "final_damping": 0.0}),
    SettingsRule("masks and colour, decomposed", _exact, ("decomposed",), _EXACT_DECOMPOSED),
    SettingsRule("masks and colour, PC methods", _exact, (), {"steps": 1000, "snr": 0.16}),
    SettingsRule("A = Λ T, decomposed", lambda p: p.has("full-transform"), ("decomposed",), {"steps": 100}),
    SettingsRule("A = Λ T, PC methods", lambda p: p.has("full-transform"), (),
                 {"steps": 500, "snr": 0.16, "weight": 1.0, "final_iterations": 20, "final_damping": 0.0}),
    SettingsRule("any operator, decomposed", _always, ("decomposed",), {"steps": 100}),
    SettingsRule("any operator, PC methods", _always, (), {"steps": 1000, "snr": 0.16, "guidance_scale": 1.0}),
]


def default_method(problem: Problem) -> str:
    """The method of the first :data:`METHOD_RULES` entry that holds for ``problem``."""
    for rule in METHOD_RULES:
        if rule.when(problem):
            return rule.method
    raise ValueError(f"no method rule holds for {problem}")  # the last rule always holds


def default_settings(problem: Problem, method: str) -> dict[str, Any]:
    """The settings of the first :data:`SETTINGS_RULES` entry for ``method`` on ``problem`` ({} if none)."""
    for rule in SETTINGS_RULES:
        if rule.applies(problem, method):
            return dict(rule.settings)
    return {}
