"""The method registry: conditional-sampling methods by name, extensible from outside.

A method turns a prior (score + SDE), an operator and measurements into the pieces of the one
PC loop (:func:`scoreinv.sampling.pc_sample`): the score the loop follows and the
:class:`~scoreinv.sampling.Conditioning` hooks it calls. Register a new one with
:func:`register_method`::

    @register_method
    class MyMethod(Method):
        name = "mine"
        defaults = {"guidance_scale": 0.5}

        def supports(self, operator):
            return True

        def build(self, score_fn, sde, operator, y, settings):
            return score_fn, MyConditioning(...)

and add ``"mine"`` to the ``supported_methods`` of the operator families it suits (or override
:meth:`Method.supports`, as above). ``scoreinv.posterior(..., method="mine")`` then runs it,
with its settings resolved and stored like every other method's.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch

from scoreinv.config import ReconstructionSettings
from scoreinv.registries import register
from scoreinv.sampling.pc import Conditioning, SampleResult, pc_sample
from scoreinv.sde import SDE, ScoreFn


class Method(abc.ABC):
    """A conditional-sampling method plugged into the PC loop.

    Attributes
    ----------
    name:
        The registry key (``settings.method``).
    defaults:
        Values for the settings this method reads, used where neither the user nor the
        operator family set them.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    #: Fewer steps than this were measured to collapse on a trained prior: resolving settings
    #: with fewer is a ValueError that names this minimum.
    minimum_steps: ClassVar[int] = 2
    #: Why, in a few words, for the error message.
    minimum_steps_reason: ClassVar[str] = "a step from T to the end needs two time points"
    #: Pairs of settings that choose the same thing two ways: the user may set one of a pair, not
    #: both, and a user-set one keeps the operator family's and the method's default for the
    #: other from applying (that one stays None).
    exclusive_settings: ClassVar[tuple[tuple[str, str], ...]] = ()

    def supports(self, operator: Any) -> bool:
        """Whether the method can run with ``operator``: by default, whether the operator family
        lists it in its ``supported_methods``."""
        return self.name in getattr(operator, "supported_methods", ())

    @abc.abstractmethod
    def build(self, score_fn: ScoreFn, sde: SDE, operator: Any, y: torch.Tensor,
              settings: ReconstructionSettings) -> tuple[ScoreFn, Conditioning | None]:
        """The score the loop follows and its conditioning hooks (None: unconditioned)."""

    def sample(self, score_fn: ScoreFn, sde: SDE, operator: Any, y: torch.Tensor,
               settings: ReconstructionSettings, *, generator: Any = None, eps: float | None = None,
               progress: bool = True) -> SampleResult:
        """One posterior sample per measurement through :func:`scoreinv.sampling.pc_sample`."""
        sampler_score, conditioning = self.build(score_fn, sde, operator, y, settings)
        return pc_sample(
            sampler_score, sde, (y.shape[0], *operator.in_shape), steps=settings.steps,
            predictor=settings.predictor, corrector=settings.corrector, snr=settings.snr,
            corrector_steps=settings.corrector_steps, eps=eps, generator=generator, device=y.device,
            conditioning=conditioning, dtype=y.dtype, progress=progress,
            time_grid=settings.time_grid or "uniform",
        )


METHODS: dict[str, Method] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: add a :class:`Method` to :data:`METHODS` under its ``name``; a name already
    registered is a ValueError."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty name to be registered")
    register(METHODS, cls.name, cls(), "method")
    return cls


def get_method(name: str) -> Method:
    """The registered method called ``name``; ValueError listing the registered ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]
