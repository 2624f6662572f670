"""Shared by the benchmark scripts: thread limits and a one-line description of the machine.

scipy's ODE solvers combine their stages with BLAS products over the whole state
(numpy's OpenBLAS pool, separate from torch's). On a shared CPU a multi-threaded
OpenBLAS made ``ode_sample`` several times slower, so the scripts limit that pool
too (through threadpoolctl, when installed).
"""

from __future__ import annotations

import os
import platform

import torch

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # optional: without it the BLAS pool keeps numpy's default
    threadpool_info = threadpool_limits = None


def limit_threads(torch_threads: int, blas_threads: int | None = None) -> None:
    """torch intra-op threads, and numpy/scipy BLAS threads (None: same; 0: leave the default)."""
    torch.set_num_threads(torch_threads)
    blas_threads = torch_threads if blas_threads is None else blas_threads
    if blas_threads and threadpool_limits is not None:
        threadpool_limits(limits=blas_threads, user_api="blas")


def blas_threads() -> str:
    if threadpool_info is None:
        return "default (threadpoolctl not installed)"
    counts = sorted({str(p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"})
    return "/".join(counts) or "none found"


def machine_line() -> str:
    return (f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
            f"torch threads {torch.get_num_threads()}, BLAS threads {blas_threads()}, "
            f"python {platform.python_version()}")
