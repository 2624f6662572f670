"""Forward operators of the inverse problems: y = A x + n, batched, on the input's device.

::

    from scoreinv.operators import RadonOp, MaskOp, GrayscaleOp, least_squares, fbp

    op = RadonOp(23, image_size=128)     # 23-view parallel-beam CT (RadonOp(23): sized by the data)
    y = op.simulate(x)                   # (B, 1, 128, 128) -> (B, 1, 23, 182)
    x_fbp = op.pinv(y)                   # filtered back-projection from the 23 views
    x_ls = least_squares(op, y, x0=x_fbp, iterations=20)

See docs/operators.md for the conventions (shapes, units, angles, the A = Λ T family).
This subpackage imports nothing else from scoreinv.
"""

from .base import ComposedOperator, LinearOperator, SubsampledTransformOp, least_squares
from .fbp import FILTERS, fbp, ramp_filter
from .grayscale import GrayscaleOp
from .mask import MaskOp
from .noise import GaussianNoise, NoiseModel, PoissonNoise, noise_from_config
from .radon import RadonOp
from .registry import OPERATORS, operator_from_config, register_operator
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
    "OPERATORS",
    "FILTERS",
    "PROJECTORS",
]
