"""Phantom generators: seeded, sized, in range, and with the anatomy they claim."""

import pytest
import torch

from scoreinv.datasets.phantoms import chest_phantoms, phantoms, random_ellipses


@pytest.mark.parametrize("family", ["ellipses", "chest", "mixed"])
@pytest.mark.parametrize("size", [32, 64])
def test_seeded_sized_and_in_range(family, size):
    first = phantoms(family, 6, size, seed=5)
    again = phantoms(family, 6, size, seed=5)
    other = phantoms(family, 6, size, seed=6)
    assert first.shape == (6, 1, size, size) and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1
    assert (first.flatten(1).amax(dim=1) > 0.2).all()  # no empty phantom


def test_the_same_seed_draws_the_same_shapes_at_any_size():
    small = random_ellipses(4, 32, torch.Generator().manual_seed(1))
    large = random_ellipses(4, 128, torch.Generator().manual_seed(1))
    downsampled = torch.nn.functional.avg_pool2d(large, 4)
    assert (downsampled - small).abs().mean() < 0.03


def test_chest_anatomy():
    image = chest_phantoms(4, 128, torch.Generator().manual_seed(2))
    corners = image[:, :, :8, :8]
    assert corners.max() == 0  # air outside the body
    lungs = (image < 0.1) & (image > 0.0)
    assert (lungs.flatten(1).float().mean(dim=1) > 0.05).all()  # two lungs ≈ 10% of the field
    bone = image > 0.8
    assert (bone.flatten(1).sum(dim=1) > 20).all()  # spine and ribs
    tissue = image[(image > 0.3) & (image < 0.4)]
    assert tissue.std() > 0.003  # textured, not flat


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown phantom family"):
        phantoms("brain", 2, 32, seed=0)
    with pytest.raises(ValueError, match="size must be"):
        phantoms("chest", 2, 4, seed=0)
