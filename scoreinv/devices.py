"""The one check of a requested compute device, made before any work starts.

``torch.device("bogus")`` raises a RuntimeError listing every backend torch knows, and
``torch.device("cuda")`` is accepted on a machine without CUDA, failing later inside the
first kernel (an AssertionError on a CPU-only build). :func:`check_device` turns both, and
a device that holds no data (``meta``), into a ValueError that says what is available, so
the command line, :func:`scoreinv.load_model`, :func:`scoreinv.posterior` and batch
reconstruction refuse a bad device in the same words before loading or computing anything.
"""

from __future__ import annotations

import torch

#: Device types scoreinv computes on.
DEVICE_TYPES = ("cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """The devices this machine offers: ``cpu``, ``cuda:0`` … ``cuda:K−1``, ``mps``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def check_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a :class:`torch.device`, or a ValueError if this machine cannot compute on it.

    Parameters
    ----------
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a :class:`torch.device`, or None
        (returned as None: the caller's default).

    Raises
    ------
    ValueError
        An unknown device name, a device type scoreinv does not compute on (``meta`` holds no
        data), CUDA or MPS where this machine has none, a CUDA index beyond its GPUs. The
        message lists the available devices.
    TypeError
        ``device`` is neither a string, a torch.device nor None.
    """
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', or a torch.device; "
                        f"got {type(device).__name__}")
    available = ", ".join(available_devices())
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {str(device)!r}; this machine offers {available}") from None
    if parsed.type not in DEVICE_TYPES:
        raise ValueError(f"scoreinv does not compute on the {parsed.type!r} device; this machine offers {available}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here "
                             f"(torch {torch.__version__}); this machine offers {available}")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} asked for, but this machine has "
                             f"{torch.cuda.device_count()} GPU(s): {available}")
    if parsed.type == "mps" and "mps" not in available_devices():
        raise ValueError(f"device {str(device)!r} asked for, but MPS is not available here; "
                         f"this machine offers {available}")
    return parsed
