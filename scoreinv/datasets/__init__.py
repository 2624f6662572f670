"""Data sets that work offline: small real images shipped by installed packages."""

from scoreinv.datasets.digits import DIGITS_LEVELS, load_digits_split

__all__ = ["DIGITS_LEVELS", "load_digits_split"]
