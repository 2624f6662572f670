"""What a user runs: batch reconstruction, the command line, file I/O and the demo.

* :mod:`scoreinv.app.batch`: :func:`reconstruct_h5`, an HDF5 data set reconstructed in a
  crash-safe, resumable, deterministic and distributed job;
* :mod:`scoreinv.app.cli`: the ``scoreinv`` command (``main``);
* :mod:`scoreinv.app.files`: the files the command line reads and writes;
* :mod:`scoreinv.app.demo`: ``scoreinv demo``.

This package parses, validates, runs jobs and writes files; the numerics live in the library
(:mod:`scoreinv.reconstruct` and below). Its names load on first use, so the command line
starts without importing the samplers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "reconstruct_h5": "scoreinv.app.batch",
    "BatchSummary": "scoreinv.app.batch",
    "work_folder": "scoreinv.app.batch",
    "main": "scoreinv.app.cli",
}

__all__ = list(_PUBLIC)

if TYPE_CHECKING:
    from scoreinv.app.batch import BatchSummary, reconstruct_h5, work_folder
    from scoreinv.app.cli import main


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first access."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'scoreinv.app' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, "batch", "cli", "demo", "files"})
