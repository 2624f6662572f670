"""Shared test set-up."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Property-based tests (hypothesis): the default profile runs a few dozen derandomised examples per
# property (seconds, the same examples every run); HYPOTHESIS_PROFILE=ci runs ten times as many,
# HYPOTHESIS_PROFILE=deep 400 (CI runs the DICOM header properties with it), HYPOTHESIS_PROFILE=explore
# new random ones each run. No example database is written.
_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("default", max_examples=25, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_SLOW_DATA)
settings.register_profile("ci", max_examples=250, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_SLOW_DATA)
settings.register_profile("deep", max_examples=400, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_SLOW_DATA)
settings.register_profile("explore", max_examples=1000, deadline=None, database=None,
                          suppress_health_check=_SLOW_DATA)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tests use tiny tensors: one thread avoids oversubscribing a 2-core machine
    (two threads slowed small networks by up to 80× when another process shared the cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --- the one tiny-model builder ----------------------------------------------------------------
# Test modules import these by name (``from conftest import tiny_model``): pytest puts tests/ on
# sys.path.

def tiny_model_config(*, sde: str = "ve", sigma_max: float = 4.0, value_range: tuple[float, float] = (0.0, 1.0),
                      **unet):
    """A ``ModelConfig`` of a tiny U-Net: 8² one-channel images, 8 base channels, two levels of one
    residual block each (``**unet`` overrides any ``UNetConfig`` field); a VE SDE with σ from 0.01
    to ``sigma_max``, or the default VP / sub-VP SDE for ``sde="vp"`` / ``"subvp"``."""
    from scoreinv.config import ModelConfig, SDEConfig, UNetConfig

    settings = dict(image_size=8, channels=1, base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1)
    settings.update(unet)
    sde_config = SDEConfig(kind="ve", sigma_min=0.01, sigma_max=sigma_max) if sde == "ve" else SDEConfig(kind=sde)
    return ModelConfig(sde=sde_config, unet=UNetConfig(**settings), value_range=value_range)


def tiny_model(config=None, *, seed: int | None = 0, randomise: str | None = None, scale: float = 0.02, **options):
    """A tiny ``ScoreModel`` of ``config`` (default ``tiny_model_config(**options)``), built after
    ``torch.manual_seed(seed)`` (None: the global generator as it is).

    ``randomise``: None keeps the initialisation; ``"zeros"`` adds ``scale`` × N(0, 1) to the
    all-zero (zero-initialised) parameters, so that the score is not zero (a zero score makes
    the Langevin step size infinite); ``"all"`` replaces every weight by ``scale`` × N(0, 1)
    (zero-initialised layers would hide bugs). The draws come from a generator seeded with
    ``seed`` (0 when None).
    """
    from scoreinv.models import ScoreModel

    if config is None:
        config = tiny_model_config(**options)
    elif options:
        raise TypeError("pass either a config or tiny_model_config options, not both")
    if seed is not None:
        torch.manual_seed(seed)
    model = ScoreModel(config)
    if randomise is not None:
        if randomise not in ("zeros", "all"):
            raise ValueError(f"randomise must be None, 'zeros' or 'all', got {randomise!r}")
        generator = torch.Generator().manual_seed(seed or 0)
        with torch.no_grad():
            for parameter in model.parameters():
                draw = scale * torch.randn(parameter.shape, generator=generator)
                if randomise == "all":
                    parameter.copy_(draw)
                elif not parameter.abs().max() > 0:
                    parameter.add_(draw)
    return model


# --- the one registry of operators ----------------------------------------------------------------
# Every operator test iterates these (fixture ``operator_case``): small sizes, each family, sized,
# bound from an unsized operator, noisy and composed. Import by name: ``from conftest import
# OPERATOR_CASES``.

class OperatorCase:
    """A named operator of the registry; ``unsized`` is the operator it was bound from (or None)."""

    def __init__(self, name: str, build):
        self.name = name
        self._build = build
        self._built = None

    def _make(self):
        if self._built is None:
            self._built = self._build()
        return self._built

    @property
    def operator(self):
        return self._make()[0]

    @property
    def unsized(self):
        return self._make()[1]

    def __repr__(self) -> str:
        return f"OperatorCase({self.name})"


def _operator_cases():
    from scoreinv.operators import FanBeamOp, GrayscaleOp, MaskOp, RadonOp

    def seeded(seed):
        return torch.Generator().manual_seed(seed)

    def sized(op):
        return op, None

    def bound(unsized, **shapes):
        return unsized.bind(**shapes), unsized

    builders = {
        "radon": lambda: sized(RadonOp(8, 16)),
        "radon-noisy": lambda: sized(RadonOp(8, 16, noise_std=0.05, fbp_filter="hann")),
        "radon-strip": lambda: sized(RadonOp(5, 7, projector="strip", full_views=10)),
        "radon-bound": lambda: bound(RadonOp(4), measurement_shape=(1, 4, 12)),  # ceil(8√2) = 12
        "fanbeam": lambda: sized(FanBeamOp(6, 12, source_distance=24, detector_distance=12, noise_std=0.01)),
        "fanbeam-short-bound": lambda: bound(FanBeamOp(angles=FanBeamOp.short_scan(7, 1.2), source_distance=20,
                                                       detector_distance=10), measurement_shape=(1, 7, 16)),
        "mask-boxes": lambda: sized(MaskOp(image_size=8, channels=3, boxes=[(1, 2, 3, 4), (6, 0, 5, 2)])),
        "mask-explicit": lambda: sized(MaskOp(torch.rand(2, 7, 5, generator=seeded(3)) > 0.4, channels=2)),
        "mask-fraction": lambda: sized(MaskOp(image_size=(6, 9), channels=3, fraction=0.3, generator=seeded(4),
                                              noise_std=0.02)),
        "grayscale": lambda: sized(GrayscaleOp(6, noise_std=0.01)),
        "grayscale-bound": lambda: bound(GrayscaleOp(), image_shape=(3, 5, 7)),
        "composed-radon-mask": lambda: sized(RadonOp(3, 6) @ MaskOp(image_size=6, boxes=[(0, 0, 2, 6)])),
        "composed-mask-gray": lambda: sized(MaskOp(image_size=6, fraction=0.5, generator=seeded(5))
                                            @ GrayscaleOp(6)),
    }
    return [OperatorCase(name, build) for name, build in builders.items()]


OPERATOR_CASES = _operator_cases()


@pytest.fixture(params=OPERATOR_CASES, ids=[case.name for case in OPERATOR_CASES])
def operator_case(request) -> OperatorCase:
    """One operator of the shared registry (``.name``, ``.operator``, ``.unsized``)."""
    return request.param


# --- the one registry of priors ---------------------------------------------------------------------
# Samplers, methods and the likelihood accept any prior (a score callable carrying ``.sde``):
# tests that should hold for every kind iterate these. ``make_prior(kind, item_shape)`` builds one
# for images of ``item_shape`` (C, H, W); the network kind needs square 1- or 3-channel images of
# an even size.

PRIOR_KINDS = ("gaussian-ve", "gaussian-vp", "gaussian-subvp", "tiny-network")


def make_prior(kind: str, item_shape):
    from scoreinv.gaussian import GaussianPrior
    from scoreinv.sde import SubVPSDE, VESDE, VPSDE

    channels, height, width = item_shape
    if kind == "tiny-network":
        if height != width or channels not in (1, 3) or height % 2:
            pytest.skip(f"the tiny network models square 1/3-channel images of even size, not {tuple(item_shape)}")
        return tiny_model(image_size=height, channels=channels, randomise="zeros")
    sde = {"gaussian-ve": VESDE(0.01, 10.0), "gaussian-vp": VPSDE(0.1, 20.0), "gaussian-subvp": SubVPSDE(0.1, 20.0)}[kind]
    mean = torch.full(tuple(item_shape), 0.5)
    variance = torch.linspace(0.02, 0.08, int(torch.tensor(item_shape).prod())).reshape(item_shape)
    return GaussianPrior(sde, mean, variance)


@pytest.fixture(params=[kind if kind == "gaussian-ve" else pytest.param(kind, marks=pytest.mark.slow)
                        for kind in PRIOR_KINDS])
def prior_kind(request) -> str:
    """One kind of the shared prior registry (build it with ``make_prior(kind, item_shape)``); the
    default suite runs the VE Gaussian, the slow suite the others."""
    return request.param
