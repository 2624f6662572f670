"""Data sets that work offline: generated CT phantoms and small real images shipped by installed packages."""

from scoreinv.datasets.colour import COLOUR_SOURCES, colour_crops
from scoreinv.datasets.digits import DIGITS_LEVELS, load_digits_split
from scoreinv.datasets.phantoms import chest_phantoms, phantoms, random_ellipses

__all__ = [
    "DIGITS_LEVELS",
    "load_digits_split",
    "phantoms",
    "random_ellipses",
    "chest_phantoms",
    "COLOUR_SOURCES",
    "colour_crops",
]
