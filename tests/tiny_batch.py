"""Shared set-up of the batch-reconstruction tests: a tiny prior checkpoint and data files.

Not a test module (no ``test_`` prefix); the test files import it by name.
"""

from __future__ import annotations

from pathlib import Path

import torch

from conftest import tiny_model as build_tiny_model
from conftest import tiny_model_config
from scoreinv.checkpoint import save_checkpoint
from scoreinv.datasets import simulate_h5, write_images_h5
from scoreinv.models import EMA, ScoreModel
from scoreinv.operators import LinearOperator, RadonOp

SIZE = 16


def tiny_model(channels: int = 1, seed: int = 0) -> ScoreModel:
    """An untrained 16² U-Net whose zero-initialised layers get small random weights.

    (All-zero output layers give a zero score, which makes the Langevin step size infinite.)
    """
    config = tiny_model_config(sigma_max=5.0, image_size=SIZE, channels=channels)
    return build_tiny_model(config, seed=seed, randomise="zeros", scale=0.02).eval()


def tiny_checkpoint(path: Path, channels: int = 1) -> Path:
    model = tiny_model(channels)
    return save_checkpoint(path, model, ema=EMA(model))


def images(n: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (upsampled 4×4 noise)."""
    coarse = torch.rand(n, channels, 4, 4, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def data_file(folder: Path, n: int = 6, operator: LinearOperator | None = None, name: str = "data.h5") -> Path:
    """A simulated data set: ``images`` + ``measurements`` + the operator (RadonOp(4), 1% noise)."""
    operator = operator if operator is not None else RadonOp(4, image_size=SIZE, noise_std=0.01)
    clean = write_images_h5(folder / f"images-{name}", images(n, operator.in_shape[0]), {"kind": "test"},
                            overwrite=True)
    return simulate_h5(clean, folder / name, operator, seed=0, progress=False, overwrite=True)
