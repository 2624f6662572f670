"""Forward operators of the inverse problems: y = A x + n, batched, on the input's device.

::

    from scoreinv.operators import RadonOp, MaskOp, GrayscaleOp, least_squares, fbp

    op = RadonOp(23, image_size=128)     # 23-view parallel-beam CT (RadonOp(23): sized by the data)
    y = op.simulate(x)                   # (B, 1, 128, 128) -> (B, 1, 23, 182)
    x_fbp = op.pinv(y)                   # filtered back-projection from the 23 views
    x_ls = least_squares(op, y, x0=x_fbp, iterations=20)

See docs/operators.md for the conventions (shapes, units, angles, the A = Λ T family).
This subpackage imports nothing from scoreinv but ``atomic`` and ``registries``.

Every module of this package is imported here, so an operator family is one module that
registers itself (:func:`register_family`, docs/architecture.md): its class is then exported
from here (and from ``scoreinv``) with the built-in ones.
"""

import importlib
import pkgutil

from .base import ComposedOperator, LinearOperator, SubsampledTransformOp, least_squares
from .fbp import FILTERS, fbp, ramp_filter
from .grayscale import GrayscaleOp
from .mask import MaskOp
from .noise import GaussianNoise, NoiseModel, PoissonNoise, noise_from_config
from .radon import RadonOp
from .registry import (FAMILIES, OPERATORS, OperatorSpec, operator_config_model, operator_from_config,
                       register_family, register_operator)
from .system_matrix import PROJECTORS, clear_matrix_cache

__all__ = [
    "LinearOperator",
    "ComposedOperator",
    "SubsampledTransformOp",
    "MaskOp",
    "GrayscaleOp",
    "RadonOp",
    "NoiseModel",
    "GaussianNoise",
    "PoissonNoise",
    "fbp",
    "ramp_filter",
    "least_squares",
    "clear_matrix_cache",
    "noise_from_config",
    "operator_from_config",
    "register_operator",
    "register_family",
    "operator_config_model",
    "OperatorSpec",
    "OPERATORS",
    "FAMILIES",
    "FILTERS",
    "PROJECTORS",
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # the families register themselves on import
for _family in FAMILIES.values():
    globals().setdefault(_family.operator.__name__, _family.operator)
    if _family.operator.__name__ not in __all__:
        __all__.append(_family.operator.__name__)
del _module, _family
