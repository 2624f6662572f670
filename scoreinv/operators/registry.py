"""Operator families and rebuilding operators from their ``config()``.

A **family** is one module of this package that defines an operator class and registers itself
with :func:`register_family`: its CLI name (``kind``), the class (whose ``modality`` and
``capabilities`` the reconstruction reads), and its :class:`OperatorSpec`, the pydantic model of
the options a user gives by name. The command line's operator flags and the configuration
model ``scoreinv.config.OperatorConfig`` are generated from the registered specs
(:func:`operator_config_model`), and the class's ``from_config`` is registered to rebuild the
operators that files store. The package imports every module of ``scoreinv/operators`` on first
import, so a new family is one new module::

    class BlurSpec(OperatorSpec):
        width: float = Field(1.5, gt=0, description="blur: Gaussian width (pixels)")

        def build(self, image_size, channels):
            return Blur(self.width, image_size, noise_std=self.noise_std)

    register_family("blur", Blur, BlurSpec)      # CLI: --operator blur --width 2

Operators that are not a family (a :class:`ComposedOperator`, a test's operator) can still
register a rebuild by type name::

    @register_operator("Blur")
    def _build_blur(config):             # config: the dict Blur.config() wrote
        return Blur(config["taps"])

    op = operator_from_config(blur.config())
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from scoreinv.registries import register

from .base import ComposedOperator, LinearOperator

Builder = Callable[[dict], LinearOperator]

#: Builders by the ``"type"`` of a configuration: ``OPERATORS[name](config) -> LinearOperator``.
OPERATORS: dict[str, Builder] = {}


class OperatorSpec(BaseModel):
    """The options of one operator family that a user gives by name (flags, configuration files).

    A family subclasses it with its own fields (each with a default and a ``description``, which
    become the flag's default and help) and implements :meth:`build`. Field names are shared
    across families where they mean the same thing (``views``, ``detectors``): a shared name must
    have the same type in every family that uses it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise_std: float = Field(0.0, ge=0, description="standard deviation of the Gaussian measurement noise")

    def build(self, image_size: int, channels: int) -> LinearOperator:
        """The operator for (channels, image_size, image_size) images; ValueError if they do not fit it."""
        raise NotImplementedError


class SinogramSpec(OperatorSpec):
    """The options every CT family shares (one definition, so the flags they generate agree):
    the views, an arc they span, and the detector row."""

    views: int = Field(23, ge=1, description="measured views")
    arc: float | None = Field(None, gt=0, description="angular range of the views in radians, equally spaced "
                              "from 0 (unset: the family's full scan; radon: [0, π))")
    detectors: int | None = Field(None, ge=1, description="detector cells (unset: enough to see the whole image)")
    detector_spacing: float | None = Field(None, gt=0, description="detector cell width, pixel units "
                                           "(unset: the family's; radon: 1)")

    def arc_angles(self) -> np.ndarray | None:
        """The ``views`` angles equally spaced over [0, arc) in radians; None without an arc."""
        return None if self.arc is None else np.linspace(0.0, self.arc, self.views, endpoint=False)


@dataclass(frozen=True)
class Family:
    """A registered operator family: its CLI name, its operator class and its spec."""

    kind: str
    operator: type[LinearOperator]
    spec: type[OperatorSpec]

    @property
    def modality(self) -> str | None:
        return self.operator.modality

    @property
    def own_fields(self) -> tuple[str, ...]:
        """The spec's fields other than the common ``noise_std``."""
        return tuple(name for name in self.spec.model_fields if name not in OperatorSpec.model_fields)


#: The operator families by CLI name (``kind``), in registration order (the first is the default).
FAMILIES: dict[str, Family] = {}


def register_family(kind: str, operator: type[LinearOperator], spec: type[OperatorSpec],
                    from_config: Builder | None = None) -> Family:
    """Register an operator family: its CLI name, class and spec, and the rebuild of its configurations.

    Parameters
    ----------
    kind:
        The name users give (``--operator KIND``, ``kind = "..."`` in a configuration file).
    operator:
        The operator class; ``operator.__name__`` is the ``"type"`` its ``config()`` writes.
    spec:
        Its :class:`OperatorSpec` subclass.
    from_config:
        Rebuilds an operator from its ``config()``; default ``operator.from_config``.

    Raises
    ------
    ValueError
        For a kind or type name already registered, a spec that is not an :class:`OperatorSpec`,
        or a spec field that another family declares with another type.
    """
    if not (isinstance(spec, type) and issubclass(spec, OperatorSpec)):
        raise ValueError(f"register_family({kind!r}): the spec must subclass OperatorSpec, got {spec!r}")
    for other in FAMILIES.values():
        for name in set(spec.model_fields) & set(other.spec.model_fields):
            if spec.model_fields[name].annotation != other.spec.model_fields[name].annotation:
                raise ValueError(f"register_family({kind!r}): field {name!r} has another type in family "
                                 f"{other.kind!r}; give it another name")
    family = Family(kind, operator, spec)
    register(FAMILIES, kind, family, "operator family")
    register_operator(operator.__name__, from_config or operator.from_config)
    return family


def register_operator(type_name: str, builder: Builder | None = None):
    """Register ``builder`` for configurations of type ``type_name``; usable as a decorator.

    Parameters
    ----------
    type_name:
        The ``"type"`` entry of the configurations it rebuilds (an operator's ``config()``
        writes its class name there by default).
    builder:
        ``builder(config) -> LinearOperator``. Omitted: returns a decorator that registers
        the function it decorates (and returns it unchanged).

    Returns
    -------
    The builder (or the decorator).

    Raises
    ------
    ValueError
        For a type name already registered (remove it from :data:`OPERATORS` first to replace it).
    """
    if not isinstance(type_name, str) or not type_name:
        raise ValueError(f"register_operator: the type name must be a non-empty string, got {type_name!r}")
    if builder is None:
        def decorate(function: Builder) -> Builder:
            return register_operator(type_name, function)
        return decorate
    if not callable(builder):
        raise ValueError(f"register_operator({type_name!r}): the builder must be callable, got {builder!r}")
    return register(OPERATORS, type_name, builder, "operator type")


def operator_from_config(config: dict, mask=None) -> LinearOperator:
    """Rebuild an operator from its ``config()`` by the builder registered for its type.

    Parameters
    ----------
    config:
        The dictionary ``op.config()`` wrote (``"type"`` names the builder, see
        :data:`OPERATORS`: every registered family's class, and ComposedOperator).
    mask:
        For MaskOp configurations written without their packed mask (older files store it
        beside the configuration, as ``operator_mask``): the mask, (C, H, W) or (H, W), 0/1;
        it must match the configuration's ``mask_sha256``. Handed to the builder as
        ``config["mask"]``.

    Returns
    -------
    LinearOperator
        An operator whose ``config()`` equals ``config`` (for the built-in types).

    Raises
    ------
    ValueError
        For an unregistered type, or a configuration its builder refuses.
    """
    if not isinstance(config, dict):
        raise ValueError(f"an operator configuration is a dict, got {type(config).__name__}")
    kind = config.get("type")
    builder = OPERATORS.get(kind)
    if builder is None:
        raise ValueError(f"cannot rebuild an operator of type {kind!r} from its configuration "
                         f"(registered: {', '.join(sorted(OPERATORS))}; see register_operator)")
    return builder(config if mask is None else {**config, "mask": mask})


def _composed_from_config(config: dict) -> ComposedOperator:
    return ComposedOperator(operator_from_config(config["outer"]), operator_from_config(config["inner"]))


register_operator("ComposedOperator", _composed_from_config)


def _optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation):
        return annotation
    return annotation | None


class OperatorConfigBase(BaseModel):
    """The behaviour of the generated ``OperatorConfig`` (:func:`operator_config_model`)."""

    model_config = ConfigDict(extra="forbid")

    #: Field name -> the families whose spec has it.
    field_owners: ClassVar[dict[str, tuple[str, ...]]] = {}

    @model_validator(mode="after")
    def _belongs_to_kind(self):
        wrong = [name for name, kinds in self.field_owners.items()
                 if getattr(self, name) is not None and self.kind not in kinds]
        if wrong:
            belongs = "; ".join(f"{name} belongs to operator kind {' / '.join(map(repr, self.field_owners[name]))}"
                                for name in wrong)
            raise ValueError(f"{belongs}, not {self.kind!r}")
        self.spec()  # the family's own validation
        return self

    def spec(self) -> OperatorSpec:
        """The family's spec with the fields set here (the unset ones take the family's defaults)."""
        family = FAMILIES[self.kind]
        return family.spec(**{name: getattr(self, name) for name in family.spec.model_fields
                              if getattr(self, name) is not None})

    def build(self, image_size: int, channels: int) -> LinearOperator:
        """The operator for (channels, image_size, image_size) images; ValueError if they do not fit it."""
        return self.spec().build(image_size, channels)

    @classmethod
    def family_defaults(cls, name: str) -> str:
        """The default of field ``name`` in each family that has it, for help texts."""
        def shown(info: Any) -> str:
            if info.is_required():
                return "required"
            return "unset" if info.default is None else str(info.default)

        return "; ".join(f"{kind} {shown(FAMILIES[kind].spec.model_fields[name])}" for kind in cls.field_owners[name])


def operator_config_model(default: str | None = None) -> type[OperatorConfigBase]:
    """The configuration model of an operator named by the user, generated from :data:`FAMILIES`.

    Fields: ``kind`` (a registered family; ``default``, else the first registered), ``noise_std``, and every field of
    every family's spec, unset (None) by default: a field left unset takes its family's default,
    a field that belongs to another family than ``kind`` is a ValueError naming both, and the
    family's spec validates the rest. ``build(image_size, channels)`` builds the operator.
    """
    kinds = tuple(FAMILIES)
    if not kinds:
        raise RuntimeError("no operator family is registered")
    if default is not None:
        if default not in FAMILIES:
            raise ValueError(f"no operator family {default!r} is registered (registered: {', '.join(kinds)})")
        kinds = (default, *(kind for kind in kinds if kind != default))
    fields: dict[str, Any] = {
        "kind": (Literal[kinds], Field(kinds[0], description="forward operator family: " + ", ".join(kinds))),
        "noise_std": (float, OperatorSpec.model_fields["noise_std"]),
    }
    owners: dict[str, list[str]] = {}
    first: dict[str, Any] = {}
    for kind in kinds:
        for name in FAMILIES[kind].own_fields:
            owners.setdefault(name, []).append(kind)
            first.setdefault(name, FAMILIES[kind].spec.model_fields[name])
    for name, info in first.items():
        fields[name] = (_optional(info.annotation),
                        Field(None, description=f"{', '.join(owners[name])}: {info.description or name}"))
    model = create_model("OperatorConfig", __base__=OperatorConfigBase, __module__="scoreinv.config", **fields)
    model.field_owners = {name: tuple(kinds_of) for name, kinds_of in owners.items()}
    model.__doc__ = ("A forward operator named by the user, generated from the registered operator families "
                     f"({', '.join(kinds)}); its image size comes from the model or the images.")
    return model
