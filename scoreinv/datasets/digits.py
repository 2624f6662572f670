"""The 8×8 handwritten digits that scikit-learn ships (offline, 1,797 images).

Pixels are integers 0…16, so the images are quantised to 17 levels; we scale
them to [0, 1] as k / 16. Bits/dim for these data therefore uses the offset
log₂ 17 ≈ 4.09 (see :func:`scoreinv.likelihood.bpd_offset`), and a uniform
density on [0, 1]⁶⁴ scores exactly that.
"""

from __future__ import annotations

import torch

DIGITS_LEVELS = 17


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and held-out test images, each ``(N, 1, 8, 8)`` float32 in [0, 1].

    The split is a seeded random permutation (``seed``), so the held-out set is
    the same on every machine. Needs scikit-learn (the ``examples`` extra).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # optional dependency
        raise ImportError(
            "the digits data set needs scikit-learn: pip install 'scoreinv[examples]'"
        ) from error
    images = torch.from_numpy(load_digits().images).float().div(DIGITS_LEVELS - 1).unsqueeze(1)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(images))
    return images[order[n_test:]].contiguous(), images[order[:n_test]].contiguous()
