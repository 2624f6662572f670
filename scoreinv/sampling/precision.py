"""The number format a score network computes in.

A sampler spends most of its time in the prior network's convolutions. Under
``torch.autocast`` with bfloat16 they run in 16-bit floats (8-bit mantissa, float32's exponent
range), which is faster where the hardware computes in bfloat16 (GPUs; CPUs with AVX-512 BF16 or
AMX; on older CPUs it may be slower than float32), while the elementwise parts (the
preconditioning, the patch tiling, the sampler's own arithmetic) stay float32.
:func:`score_in_precision` wraps a score callable so that it runs that way and returns the score
in the input's dtype; the sampler never sees the difference in type.
"""

from __future__ import annotations

from typing import Any

import torch

from scoreinv.sde import ScoreFn


class Bfloat16Score:
    """``score_fn`` evaluated under bfloat16 autocast, its output cast back to the input's dtype.

    Parameters
    ----------
    score_fn:
        A score callable ``score_fn(x, t, ...)`` -> a tensor shaped like x. Its attributes (``sde``,
        ``channels``, ``image_size``, ...) are reachable through the wrapper, so a wrapped prior is
        still a prior.
    """

    def __init__(self, score_fn: ScoreFn) -> None:
        self.score_fn = score_fn

    def __call__(self, x: torch.Tensor, t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            score = self.score_fn(x, t, *args, **kwargs)
        return score.to(x.dtype)

    def __getattr__(self, name: str) -> Any:
        if name == "score_fn":  # not set yet (copy, unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.score_fn, name)

    def __repr__(self) -> str:
        return f"Bfloat16Score({self.score_fn!r})"


def score_in_precision(score_fn: ScoreFn, precision: str | None) -> ScoreFn:
    """``score_fn`` computing in ``precision``: itself for float32 (or None), else a
    :class:`Bfloat16Score`; any other name is a ValueError."""
    if precision is None or precision == "float32":
        return score_fn
    if precision == "bfloat16":
        return Bfloat16Score(score_fn)
    raise ValueError(f"unknown score precision {precision!r}; choose 'float32' or 'bfloat16'")
