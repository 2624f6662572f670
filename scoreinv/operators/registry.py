"""Rebuilding operators from their ``config()``: a registry of builders by type name.

::

    from scoreinv.operators import register_operator, operator_from_config

    @register_operator("Blur")
    def _build_blur(config):             # config: the dict Blur.config() wrote
        return Blur(config["taps"])

    op = operator_from_config(blur.config())
"""

from __future__ import annotations

from collections.abc import Callable

from scoreinv.registries import register

from .base import ComposedOperator, LinearOperator
from .grayscale import GrayscaleOp
from .mask import MaskOp
from .radon import RadonOp

Builder = Callable[[dict], LinearOperator]

#: Builders by the ``"type"`` of a configuration: ``OPERATORS[name](config) -> LinearOperator``.
OPERATORS: dict[str, Builder] = {}


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
        :data:`OPERATORS`; built in: RadonOp, GrayscaleOp, MaskOp, ComposedOperator).
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


register_operator("RadonOp", RadonOp.from_config)
register_operator("GrayscaleOp", GrayscaleOp.from_config)
register_operator("MaskOp", MaskOp.from_config)
register_operator("ComposedOperator", _composed_from_config)
