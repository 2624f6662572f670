"""Colour crops of the histology and retina photographs: seeded, in range, from both sources,
never mostly the black surround of the fundus, and augmented by the symmetries of the square."""

import numpy as np
import pytest
import torch

from scoreinv.datasets import COLOUR_SOURCES, colour_crops
from scoreinv.datasets.colour import BACKGROUND_LEVEL, source_image


def locate(crop: torch.Tensor, source: torch.Tensor) -> tuple[int, int] | None:
    """Where ``crop`` (3, s, s) lies in ``source`` (3, H, W) as an exact window, or None."""
    size = crop.shape[-1]
    image, corner = source.numpy(), crop[:, 0, 0].numpy()
    rows, columns = np.nonzero((image == corner[:, None, None]).all(axis=0))
    for top, left in zip(rows, columns):
        window = source[:, top:top + size, left:left + size]
        if window.shape == crop.shape and torch.equal(window, crop):
            return int(top), int(left)
    return None


def background_fraction(images: torch.Tensor) -> torch.Tensor:
    return (images.amax(dim=1) < BACKGROUND_LEVEL).float().flatten(1).mean(dim=1)


@pytest.mark.parametrize("size", [16, 48])
def test_seeded_shapes_and_range(size):
    first = colour_crops(6, size, seed=3)
    assert first.shape == (6, 3, size, size) and first.dtype == torch.float32
    assert torch.equal(first, colour_crops(6, size, seed=3))
    assert not torch.equal(first, colour_crops(6, size, seed=4))
    assert first.min() >= 0 and first.max() <= 1
    # no resampling at scale 1: the photographs' 8-bit levels survive
    assert torch.equal(torch.round(first * 255) / 255, first)
    assert colour_crops(0, size).shape == (0, 3, size, size)


def test_items_alternate_between_both_sources_as_exact_windows():
    crops = colour_crops(6, 24, seed=0, augment=False)
    sources = {name: source_image(name) for name in COLOUR_SOURCES}
    for index, crop in enumerate(crops):
        expected = COLOUR_SOURCES[index % 2]
        assert locate(crop, sources[expected]) is not None, f"item {index} is not a {expected} window"
        other = COLOUR_SOURCES[1 - index % 2]
        assert locate(crop, sources[other]) is None
    only_retina = colour_crops(3, 24, seed=0, sources=["retina"], augment=False)
    assert all(locate(crop, sources["retina"]) is not None for crop in only_retina)


def test_no_mostly_black_retina_crops():
    crops = colour_crops(200, 64, seed=1, sources=("retina",), augment=False)
    assert background_fraction(crops).max() <= 0.1
    assert crops.mean(dim=(1, 2, 3)).min() > 0.2
    # the check matters: without rejection some windows are mostly background
    unfiltered = colour_crops(200, 64, seed=1, sources=("retina",), augment=False, max_background=1.0)
    assert background_fraction(unfiltered).max() > 0.5
    strict = colour_crops(50, 64, seed=1, sources=("retina",), max_background=0.0)
    assert background_fraction(strict).max() == 0


def test_augmentation_is_a_symmetry_of_the_plain_crop():
    plain = colour_crops(24, 16, seed=7, augment=False)
    augmented = colour_crops(24, 16, seed=7, augment=True)
    identity = 0
    for before, after in zip(plain, augmented):
        variants = [torch.rot90(image, k, dims=(-2, -1)) for image in (before, before.flip(-1)) for k in range(4)]
        matches = [torch.equal(variant, after) for variant in variants]
        assert any(matches)
        identity += matches[0]
    assert identity < 12  # most crops were flipped or turned


def test_scale_resamples_larger_windows():
    crops = colour_crops(8, 32, seed=2, scale=(1.5, 3.0))
    assert crops.shape == (8, 3, 32, 32) and crops.min() >= 0 and crops.max() <= 1
    assert torch.equal(crops, colour_crops(8, 32, seed=2, scale=(1.5, 3.0)))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(sources=("histology", "brain")), "unknown colour source"),
        (dict(sources=()), "at least one colour source"),
        (dict(size=600), "do not fit"),
        (dict(size=4), "size must be >= 8"),
        (dict(scale=(2.0, 1.0)), "scale must be"),
        (dict(n=-1), "n must be >= 0"),
    ],
)
def test_bad_arguments(arguments, message):
    settings = dict(n=2, size=16) | arguments
    with pytest.raises(ValueError, match=message):
        colour_crops(**settings)
