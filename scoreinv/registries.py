"""Registry insertion, the one rule for every extension point: a name is registered once.

The package's registries (operator families, methods, predictors, correctors, priors) are plain
dicts keyed by name. :func:`register` adds an entry and refuses a name that is already taken, so
a plug-in cannot silently replace a built-in (or another plug-in) by reusing its name. To replace
an entry on purpose, remove the old one first (``REGISTRY.pop(name)``).

This module imports nothing from the package, so every layer (the operators leaf included) may
use it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TypeVar

T = TypeVar("T")


def register(registry: MutableMapping[str, T], name: str, entry: T, kind: str) -> T:
    """Add ``entry`` to ``registry`` under ``name``; returns ``entry``.

    Parameters
    ----------
    registry:
        The registry (a dict by name).
    name:
        A non-empty string not yet in ``registry``.
    entry:
        What to register.
    kind:
        What the registry holds, for the error messages ("operator", "method", ...).

    Raises
    ------
    ValueError
        For an empty name, or one already registered (naming what holds it).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a {kind} needs a non-empty string name to be registered, got {name!r}")
    if name in registry:
        raise ValueError(f"a {kind} named {name!r} is already registered ({registry[name]!r}); pick another "
                         f"name, or remove the registered one first")
    registry[name] = entry
    return entry
