"""Atomic file writes: a file appears under its name complete, or not at all.

A file is written under a temporary name in the target's folder, fsynced, given normal
permissions (``tempfile.mkstemp`` makes it 0600), renamed over the target (``os.replace``)
and the folder is fsynced, so the rename survives a crash too. A process killed before the
rename leaves the target as it was. Used for every output the package writes: HDF5 data
sets, batch parts and outputs, the command line's arrays, figures and JSON.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make renames in ``folder`` durable (a no-op where a folder cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish_atomically(temporary: str | os.PathLike, target: str | os.PathLike) -> None:
    """Make a finished temporary file the ``target``: fsync, normal permissions, rename, fsync the folder."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(temporary, 0o666 & ~mask)
    os.replace(temporary, target)
    fsync_folder(Path(target).parent)


def make_temporary(path: str | os.PathLike) -> tuple[int, Path]:
    """An open, empty temporary file next to ``path`` (its folder made if needed): (descriptor, name).

    A folder that cannot be written raises the OSError naming ``path``: the temporary name is
    not one the user ever gave.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        refused = type(error)(f"cannot write {path}: {error.strerror or error}")
        refused.errno = error.errno
        raise refused from None
    return fd, Path(name)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in ``path``'s folder, published as ``path`` when the block succeeds.

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    fd, temporary = make_temporary(path)
    os.close(fd)
    try:
        yield temporary
        publish_atomically(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
