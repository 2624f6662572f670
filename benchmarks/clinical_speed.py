"""Seconds per slice and peak memory at clinical size: the card's call beside SIRT and TV, same run.

    python benchmarks/clinical_speed.py                       # 256² (23, 60 views), 512² (23, 60)
    python benchmarks/clinical_speed.py --rows 256:60 --threads 1

Run it on an idle machine: the speed targets (≤ 60 s per 256² slice, ≤ 5 min and ≤ 4 GB per
512² slice) name one. Each row runs in a fresh process, so its peak resident memory is its own:
the system matrix's build (or its load from the cache), the card's call
``scoreinv.reconstruct(sinogram, operator=RadonOp(views))`` on the numpy sinogram of one
held-out anatomy slice (seed 10⁶, noise-free), SIRT-300, and TV (300 iterations) with its λ
chosen first on one validation anatomy phantom (seed 5·10⁶) from ``--tv-weights`` × N/64 (the
choice is not timed). Prints a Markdown table: seconds of each method, PSNR against the truth
(data range 1), and the row's peak memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from _machine import limit_threads, machine_line


def run_row(size: int, views: int, threads: int, tv_weights: list[float]) -> dict[str, float]:
    """One row, in this process: build, the card's call, SIRT, TV; seconds and PSNR of each."""
    limit_threads(threads)
    import torch

    from clinical import peak_memory_gb
    from quality import best_tv_weight

    import scoreinv
    from scoreinv import RadonOp
    from scoreinv.classical import sirt, tv_reconstruction
    from scoreinv.datasets import phantoms
    from scoreinv.metrics import psnr

    truth = phantoms("anatomy", 1, size, seed=10**6)
    validation = phantoms("anatomy", 1, size, seed=5_000_000)
    operator = RadonOp(views, image_size=size)
    started = time.perf_counter()
    operator.build()
    row = {"build": time.perf_counter() - started}
    sinogram = operator(truth)
    weight = best_tv_weight(validation, 0.0, views, size, [w * size / 64 for w in tv_weights], 300)

    def timed(name: str, method) -> None:
        started = time.perf_counter()
        estimate = torch.as_tensor(method()).reshape(truth.shape).clamp(0, 1)
        row[name] = time.perf_counter() - started
        row[f"{name} dB"] = float(psnr(estimate, truth).mean())

    timed("scoreinv", lambda: scoreinv.reconstruct(sinogram[0, 0].numpy(), operator=RadonOp(views), progress=False))
    timed("SIRT", lambda: sirt(operator, sinogram, 300))
    timed("TV", lambda: tv_reconstruction(operator, sinogram, weight, 300))
    row["tv_weight"] = weight
    row["memory"] = peak_memory_gb()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["256:23", "256:60", "512:23", "512:60"],
                        help="SIZE:VIEWS per row")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2: the whole idle machine)")
    parser.add_argument("--tv-weights", type=float, nargs="+", default=[0.001, 0.003, 0.01, 0.03], help="λ grid at 64²")
    args = parser.parse_args()
    limit_threads(args.threads)
    print(f"# noise-free, parallel beam, one held-out anatomy slice per row, each row in a fresh process\n"
          f"# {machine_line()}\n")
    print("| size | views | system matrix (s) | scoreinv (s) | SIRT-300 (s) | TV-300 (s) | PSNR scoreinv / SIRT / TV "
          "(dB) | TV λ | peak memory (GB) |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    context = multiprocessing.get_context("spawn")
    for text in args.rows:
        size, views = (int(part) for part in text.split(":"))
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            row = pool.submit(run_row, size, views, args.threads, args.tv_weights).result()
        print(f"| {size}² | {views} | {row['build']:.1f} | **{row['scoreinv']:.1f}** | {row['SIRT']:.1f} | "
              f"{row['TV']:.1f} | {row['scoreinv dB']:.2f} / {row['SIRT dB']:.2f} / {row['TV dB']:.2f} | "
              f"{row['tv_weight']:.3g} | {row['memory']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
