"""The method registry: conditional-sampling methods by name, extensible from outside.

A method turns a prior (score + SDE), an operator and measurements into the pieces of the one
PC loop (:func:`scoreinv.sampling.pc_sample`): the score the loop follows and the
:class:`~scoreinv.sampling.Conditioning` hooks it calls. It owns a typed settings model, the
fields it reads (:class:`PCSettings` for a method that runs the PC loop's predictor and
corrector). Register a new one with :func:`register_method`::

    @register_method
    class MyMethod(Method):
        name = "mine"
        settings_model = MySettings          # a PCSettings subclass with its own fields

        def supports(self, operator):
            return True

        def build(self, score_fn, sde, operator, y, settings):
            return score_fn, MyConditioning(...)

A method runs on operators with its ``requires`` capabilities (or as its :meth:`Method.supports`
says); the solvers' policy (:mod:`scoreinv.solvers.policy`) may give it defaults per operator.
``scoreinv.posterior(..., method="mine")`` then runs it, with its settings resolved, checked and
stored like every other method's. A setting it adds must also be a field of
:class:`~scoreinv.config.ReconstructionSettings` (the user-facing list, from which the CLI flags
are generated); :func:`register_method` checks this.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from scoreinv.config import ReconstructionSettings, ScorePrecision
from scoreinv.registries import register
from scoreinv.sampling.pc import Conditioning, SampleResult, pc_sample
from scoreinv.sde import SDE, ScoreFn


class MethodSettings(BaseModel):
    """The settings every method reads; a method's own model adds its fields. Unknown names are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(ge=1, description="sampler steps")
    num_samples: int = Field(1, ge=1, description="posterior samples per item")
    seed: int = Field(0, ge=0, lt=2**63, description="seeds every random draw")
    time_grid: Literal["uniform", "log-sigma", "karras"] = "uniform"
    score_precision: ScorePrecision = Field("float32", description="number format of the prior network")


class PCSettings(MethodSettings):
    """A method that runs the PC loop's predictor and corrector (:func:`scoreinv.sampling.pc_sample`)."""

    predictor: str = "reverse_diffusion"
    corrector: str = "langevin"
    snr: float = Field(0.16, ge=0, description="Langevin corrector signal-to-noise ratio")
    corrector_steps: int = Field(1, ge=0)


class Method(abc.ABC):
    """A conditional-sampling method plugged into the PC loop.

    Attributes
    ----------
    name:
        The registry key (``settings.method``).
    settings_model:
        The typed settings it reads, with its own defaults (used where neither the user nor the
        solvers' policy set them). ``build`` and ``sample`` receive an instance.
    requires:
        Operator capabilities (``operator.capabilities``) the method needs.
    """

    name: ClassVar[str] = ""
    settings_model: ClassVar[type[MethodSettings]] = PCSettings
    requires: ClassVar[frozenset[str]] = frozenset()
    #: Fewer steps than this were measured to collapse on a trained prior: resolving settings
    #: with fewer is a ValueError that names this minimum.
    minimum_steps: ClassVar[int] = 2
    #: Why, in a few words, for the error message.
    minimum_steps_reason: ClassVar[str] = "a step from T to the end needs two time points"
    #: Pairs of settings that choose the same thing two ways: the user may set one of a pair, not
    #: both, and a user-set one keeps the policy's and the method's default for the other from
    #: applying (that one stays None).
    exclusive_settings: ClassVar[tuple[tuple[str, str], ...]] = ()

    def supports(self, operator: Any) -> bool:
        """Whether the method can run with ``operator``: by default, whether the operator has every
        capability in ``requires``."""
        return self.requires <= frozenset(getattr(operator, "capabilities", ()))

    def refusal(self, operator: Any) -> str:
        """Why the method does not suit ``operator`` (for the ValueError)."""
        missing = sorted(self.requires - frozenset(getattr(operator, "capabilities", ())))
        name = getattr(operator, "name", type(operator).__name__)
        if missing:
            return (f"method {self.name!r} does not suit {name}: it needs the operator capabilities "
                    f"{', '.join(missing)} ({getattr(operator, 'capability_note', '') or 'not offered'})")
        return f"method {self.name!r} does not suit {name}"

    def minimum_steps_for(self, operator: Any) -> tuple[int, str]:
        """The fewest steps the method needs on ``operator`` and why (default: ``minimum_steps``)."""
        return self.minimum_steps, self.minimum_steps_reason

    @abc.abstractmethod
    def build(self, score_fn: ScoreFn, sde: SDE, operator: Any, y: torch.Tensor,
              settings: Any) -> tuple[ScoreFn, Conditioning | None]:
        """The score the loop follows and its conditioning hooks (None: unconditioned);
        ``settings`` is an instance of ``settings_model``."""

    def typed(self, settings: ReconstructionSettings | MethodSettings) -> MethodSettings:
        """``settings`` (resolved) as an instance of this method's ``settings_model``."""
        if isinstance(settings, self.settings_model):
            return settings
        values = settings.model_dump()
        paired = {key for pair in self.exclusive_settings for key in pair}  # None there means "the other one"
        return self.settings_model(**{key: values[key] for key in self.settings_model.model_fields
                                      if values.get(key) is not None or key in paired})

    def sample(self, score_fn: ScoreFn, sde: SDE, operator: Any, y: torch.Tensor,
               settings: Any, *, generator: Any = None, eps: float | None = None,
               progress: bool = True) -> SampleResult:
        """One posterior sample per measurement through :func:`scoreinv.sampling.pc_sample`."""
        settings = self.typed(settings)
        sampler_score, conditioning = self.build(score_fn, sde, operator, y, settings)
        return pc_sample(
            sampler_score, sde, (y.shape[0], *operator.in_shape), steps=settings.steps,
            predictor=settings.predictor, corrector=settings.corrector, snr=settings.snr,
            corrector_steps=settings.corrector_steps, eps=eps, generator=generator, device=y.device,
            conditioning=conditioning, dtype=y.dtype, progress=progress,
            time_grid=settings.time_grid,
        )


METHODS: dict[str, Method] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: add a :class:`Method` to :data:`METHODS` under its ``name``; a name already
    registered is a ValueError."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty name to be registered")
    unknown = sorted(set(cls.settings_model.model_fields) - set(ReconstructionSettings.model_fields))
    if unknown:
        raise ValueError(f"method {cls.name!r} reads settings that are not fields of ReconstructionSettings: "
                         f"{', '.join(unknown)} (add them there, where the CLI flags come from)")
    register(METHODS, cls.name, cls(), "method")
    return cls


def get_method(name: str) -> Method:
    """The registered method called ``name``; ValueError listing the registered ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]
