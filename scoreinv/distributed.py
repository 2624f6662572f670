"""Process-group facts under ``torchrun``: who am I, how many of us, wait for the others.

``torchrun --nproc_per_node=K -m scoreinv ...`` starts K processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each. The library
detects that environment and joins the default process group itself, so the same
command runs single-process (no variables: rank 0 of 1) or distributed.

Backend: ``nccl`` when every process has a CUDA device of its own, ``gloo`` otherwise
(the CPU tests use gloo with 2 processes). Set ``SCOREINV_DIST_BACKEND`` to force one.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from scoreinv.devices import check_device


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` cooperating processes (rank 0 of 1 when alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_torchrun() -> bool:
    """True when the process was started by ``torchrun`` (or another launcher with its variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def default_backend() -> str:
    chosen = os.environ.get("SCOREINV_DIST_BACKEND")
    if chosen:
        return chosen
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= local_world else "gloo"


def world(timeout_minutes: float = 30.0) -> World:
    """The current :class:`World`, joining the default process group if torchrun asked for one.

    Safe to call many times: the group is initialised once per process.
    """
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if not launched_by_torchrun():
        return World()
    size = int(os.environ["WORLD_SIZE"])
    if size == 1:
        return World()
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build")
    dist.init_process_group(backend=default_backend(), timeout=timedelta(minutes=timeout_minutes))
    # Leave the group when the process ends, so a torchrun command exits cleanly without
    # every entry point having to call shutdown().
    atexit.register(shutdown)
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def device_for(world_: World, requested: str | torch.device | None) -> torch.device | None:
    """The device a rank should use: ``cuda:LOCAL_RANK`` when CUDA was asked for (or is the default)."""
    device = check_device(requested)
    if device is None:
        return None
    if device.type == "cuda" and device.index is None and world_.distributed:
        return check_device(torch.device("cuda", world_.local_rank))
    return device


def barrier() -> None:
    """Wait for every rank (no-op when alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_ok(ok: bool) -> bool:
    """True on every rank iff ``ok`` is true on every rank: one rank's failure stops them all."""
    if not (dist.is_available() and dist.is_initialized()):
        return ok
    # NCCL reduces only CUDA tensors (the rank's current device); gloo takes CPU ones.
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64, device=on)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def shutdown() -> None:
    """Leave the process group (end of a torchrun command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
