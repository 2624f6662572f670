"""How fast is RadonOp (forward + adjoint) against the alternatives?

For each image size N ∈ {64, 128, 256}, view count V ∈ {23, 180} and batch B ∈ {1, 8},
the time of one forward projection plus one back-projection (adjoint) of a batch:

* ``ours``: :class:`scoreinv.operators.RadonOp` — ASTRA's ``linear`` system matrix held as a
  torch sparse CSR matrix and its stored CSR transpose (``op(x)``, ``op.adjoint(y)``);
* ``ASTRA loop``: a loop over the items calling ``astra.create_sino`` and
  ``astra.create_backprojection`` with the same CPU ``linear`` projector (data objects
  created and deleted per call, as a straightforward user would);
* ``skimage loop``: a loop over ``skimage.transform.radon(img, theta, circle=False)`` and
  ``iradon(sino, theta, filter_name=None, circle=False)`` (unfiltered back-projection).

plus, once per geometry, the matrix build time (ASTRA export + CSR conversion + transpose,
cold cache) and our batched FBP (``op.pinv``). Each timing is the median of ``--repeats``
runs after one warm-up (skimage: one run at 256², it takes seconds).

Run:  python benchmarks/operators.py [--quick] [--threads 1]
``--quick``: N ∈ {64, 128}, two repeats.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _machine import limit_threads, machine_line
from _scores import median_time

from scoreinv.operators import RadonOp, clear_matrix_cache


def timed(fn, repeats: int) -> float:
    """Median wall time of fn() in ms, after one warm-up call."""
    return 1e3 * median_time(fn, repeats, warmup=1)


def astra_loop(n: int, op: RadonOp):
    import astra

    vol = astra.create_vol_geom(n, n)
    geom = astra.create_proj_geom("parallel", 1.0, op.n_detectors, op.measured_angles.numpy())
    pid = astra.create_projector("linear", geom, vol)

    def run(images: np.ndarray) -> None:
        for img in images:
            sid, sino = astra.create_sino(img, pid)
            astra.data2d.delete(sid)
            bid, _ = astra.create_backprojection(sino, pid)
            astra.data2d.delete(bid)

    return run, lambda: astra.projector.delete(pid)


def skimage_loop(degrees: np.ndarray):
    from skimage.transform import iradon, radon

    def run(images: np.ndarray) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for img in images:
                sino = radon(img, theta=degrees, circle=False)
                iradon(sino, theta=degrees, filter_name=None, circle=False)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N in {64, 128}, two repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per cell (default 5; 2 quick)")
    args = parser.parse_args()
    limit_threads(args.threads)
    sizes = (64, 128) if args.quick else (64, 128, 256)
    repeats = args.repeats or (2 if args.quick else 5)

    print(machine_line())
    print(f"Command: python benchmarks/operators.py{' --quick' if args.quick else ''} "
          f"--threads {args.threads}; median of {repeats} (ms)\n")
    print("| N | views | D | matrix build (s) | nnz (M) | B | ours fwd+adj | ASTRA loop | skimage loop "
          "| ours vs ASTRA | ours vs skimage | ours FBP |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for views in (23, 180):
            clear_matrix_cache()
            start = time.perf_counter()
            op = RadonOp(views, n).build()
            build = time.perf_counter() - start
            nnz = op._matrix("measured").nnz / 1e6
            run_astra, cleanup = astra_loop(n, op)
            run_skimage = skimage_loop(np.degrees(op.measured_angles.numpy()))
            for batch in (1, 8):
                g = torch.Generator().manual_seed(0)
                x = torch.rand(batch, 1, n, n, generator=g)
                images = x[:, 0].double().numpy()
                images32 = images.astype(np.float32)
                y = op(x)
                with torch.no_grad():
                    ours = timed(lambda op=op, x=x: op.adjoint(op(x)), repeats)
                    ours_fbp = timed(lambda op=op, y=y: op.pinv(y), repeats)
                t_astra = timed(lambda f=run_astra, a=images32: f(a), repeats)
                sk_repeats = 1 if n >= 256 else repeats
                t_sk = timed(lambda f=run_skimage, a=images: f(a), sk_repeats)
                print(f"| {n} | {views} | {op.n_detectors} | {build:.2f} | {nnz:.2f} | {batch} "
                      f"| {ours:.2f} | {t_astra:.2f} | {t_sk:.1f} | {t_astra / ours:.1f}× "
                      f"| {t_sk / ours:.0f}× | {ours_fbp:.2f} |", flush=True)
            cleanup()
    print("\nD = ceil(N·√2) detectors. nnz: non-zeros of the measured-view matrix (float32 values and "
          "int32 indices, 8 bytes each; the stored transpose holds as many again). Build: ASTRA "
          "matrix export + CSR conversion + transpose, cold cache. ours FBP: op.pinv(y) (ram-lak).")


if __name__ == "__main__":
    main()
