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


def operator_from_config(config: dict, mask=None) -> LinearOperator:
    """Rebuild an operator from its ``config()``: RadonOp, GrayscaleOp, MaskOp.

    A MaskOp built from ``boxes`` is rebuilt from its configuration alone. One built from an
    explicit ``mask`` or a random ``fraction`` needs that mask back: pass it as ``mask``
    ((C, H, W) or (H, W), 0/1); it must match the configuration's ``mask_sha256``.
    (:func:`scoreinv.datasets.simulate_h5` stores it in the file, see
    :func:`scoreinv.datasets.operator_from_h5`.)
    """
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
    if kind == "MaskOp":
        if mask is None:
            raise ValueError("a MaskOp with an explicit or random mask cannot be rebuilt from its "
                             "configuration alone: pass its mask (mask=...)")
        c, h, w = config["in_shape"]
        op = MaskOp(mask, image_size=(h, w), channels=c, noise=noise)
        if "mask_sha256" in config and op.config()["mask_sha256"] != config["mask_sha256"]:
            raise ValueError("the mask given does not match the MaskOp configuration (mask_sha256 differs)")
        return op
    raise ValueError(f"cannot rebuild an operator of type {kind!r} from its configuration "
                     "(supported: RadonOp, GrayscaleOp, MaskOp)")


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
