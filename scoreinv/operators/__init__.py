"""Forward operators of the inverse problems: y = A x + n, batched, on the input's device.

::

    from scoreinv.operators import RadonOp, MaskOp, GrayscaleOp, least_squares, fbp

    op = RadonOp(23, image_size=128)     # 23-view parallel-beam CT
    y = op.simulate(x)                   # (B, 1, 128, 128) -> (B, 1, 23, 182)
    x_fbp = op.pinv(y)                   # filtered back-projection from the 23 views
    x_ls = least_squares(op, y, x0=x_fbp, iterations=20)

See docs/operators.md for the conventions (shapes, units, angles, the A = Λ T family).
This subpackage imports nothing else from scoreinv.
"""

from .base import ComposedOperator, LinearOperator, SubsampledTransformOp, least_squares
from .grayscale import GrayscaleOp
from .mask import MaskOp
from .noise import GaussianNoise, NoiseModel, PoissonNoise, noise_from_config
from .radon import RadonOp, clear_matrix_cache, fbp, ramp_filter


def operator_from_config(config: dict) -> LinearOperator:
    """Rebuild an operator from its ``config()`` (RadonOp, GrayscaleOp, MaskOp built from boxes)."""
    kind = config.get("type")
    noise = noise_from_config(config.get("noise"))
    if kind == "RadonOp":
        return RadonOp(config["n_views"], config["image_size"], n_detectors=config["n_detectors"],
                       full_views=config["full_views"], projector=config["projector"], noise=noise)
    if kind == "GrayscaleOp":
        return GrayscaleOp(tuple(config["image_size"]), noise=noise)
    if kind == "MaskOp" and "boxes" in config:
        c, h, w = config["in_shape"]
        return MaskOp(image_size=(h, w), channels=c, boxes=config["boxes"], noise=noise)
    raise ValueError(f"cannot rebuild an operator of type {kind!r} from its configuration alone "
                     "(supported: RadonOp, GrayscaleOp, MaskOp with boxes)")


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
]
