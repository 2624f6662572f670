"""Sparse-view CT at clinical size (128²–512²): FBP, SIRT, TV with a validated λ, and scoreinv.

    python benchmarks/clinical.py --size 256 --views 23 60 --noise 0 0.01
    python benchmarks/clinical.py --size 512 --views 60 --noise 0 --sets real
    python benchmarks/clinical.py --size 256 --sets validation --methods SIRT \
        --options '{"num_samples": 1, "start_noise_level": 1.0}'     # choosing a setting

Images (test sets, never trained or tuned on): the real CT slices shipped with pydicom and
pydicom-data (benchmarks/real_ct.py's list, resized to N² with anti-aliasing) and ``--phantoms``
held-out procedural anatomy slices (seed 10⁶ + 16, a seed no training pool used). TV's λ is
chosen per row on ``--validation`` validation anatomy phantoms (seed 5·10⁶) from the grid
``--tv-weights`` × N/64 (λ is in sinogram units, which grow with the ray length N). Noise:
Gaussian, a fraction of each row's clean sinogram peak. scoreinv runs :func:`scoreinv.posterior`
at its defaults for the operator (the bundled prior for N², ``--model`` to override), plus one
row per ``--options`` JSON. Per row: PSNR / SSIM (data range 1) mean ± std, seconds per slice,
and the peak resident memory of the process after the row.

``--sets validation`` runs the rows on the validation phantoms instead (the same ones TV's λ is
chosen on): that is where scoreinv's settings are chosen, never on the test sets.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from _machine import machine_line
from quality import best_tv_weight, simulate
from real_ct import real_slices

from scoreinv.classical import sirt, tv_reconstruction
from scoreinv.datasets import phantoms
from scoreinv.metrics import psnr, ssim
from scoreinv.reconstruct import posterior

TEST_SEED = 1_000_016
VALIDATION_SEED = 5_000_000


def peak_memory_gb() -> float:
    """Peak resident memory of this process so far, GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, nargs="+", default=[23, 60])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01])
    parser.add_argument("--phantoms", type=int, default=4, help="held-out anatomy phantoms beside the real slices")
    parser.add_argument("--sets", nargs="+", choices=["real", "phantoms", "validation"], default=["real", "phantoms"],
                        help="image sets: the two test sets, or the validation phantoms to choose settings on")
    parser.add_argument("--validation", type=int, default=4, help="validation phantoms for TV's λ")
    parser.add_argument("--tv-weights", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
                        help="λ grid at 64², scaled by N/64")
    parser.add_argument("--tv-iterations", type=int, default=500)
    parser.add_argument("--sirt-iterations", type=int, default=300)
    parser.add_argument("--model", default=None, help="prior name or path (default: the registered one for N²)")
    parser.add_argument("--options", action="append", default=[], help="JSON dict of posterior() options")
    parser.add_argument("--methods", nargs="+", default=["FBP", "SIRT", "TV", "scoreinv"])
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()

    size = args.size
    real, names = real_slices(size)
    validation = phantoms("anatomy", args.validation, size, seed=VALIDATION_SEED)
    sets: dict[str, torch.Tensor] = {}
    if "real" in args.sets:
        sets["real"] = real
    if "phantoms" in args.sets and args.phantoms:
        sets["phantoms"] = phantoms("anatomy", args.phantoms, size, seed=TEST_SEED)
    if "validation" in args.sets:
        sets["validation"] = validation
    grid = [weight * size / 64 for weight in args.tv_weights]
    print(f"# {size}², parallel beam; real slices: {', '.join(names)}; held-out anatomy phantoms: "
          f"{len(sets.get('phantoms', []))}; TV λ from {len(validation)} validation phantoms\n# {machine_line()}\n")
    print("| images | views | noise | method | PSNR (dB) | SSIM | s / slice | peak memory (GB) |")
    print("|---|---|---|---|---|---|---|---|")
    shown: dict[str, torch.Tensor] = {}
    for views in args.views:
        for noise in args.noise:
            tv_weight = best_tv_weight(validation, noise, views, size, grid, args.tv_iterations) \
                if "TV" in args.methods else None
            for label, truth in sets.items():
                operator, y = simulate(truth, noise, views, size)
                methods = {}
                if "FBP" in args.methods:
                    methods["FBP"] = lambda: operator.pinv(y)
                if "SIRT" in args.methods:
                    methods[f"SIRT-{args.sirt_iterations}"] = lambda: sirt(operator, y, args.sirt_iterations)
                if "TV" in args.methods:
                    methods[f"TV (λ = {tv_weight:.3g}, validated)"] = (
                        lambda: tv_reconstruction(operator, y, tv_weight, args.tv_iterations))
                runs: list[tuple[str, dict]] = []
                if "scoreinv" in args.methods:
                    runs.append(("scoreinv (defaults)", {}))
                runs += [(f"scoreinv {text}", json.loads(text)) for text in args.options]
                for name, options in runs:
                    methods[name] = lambda options=options: torch.as_tensor(
                        posterior(y, operator, args.model, progress=False, **options).mean)
                for name, method in methods.items():
                    started = time.perf_counter()
                    estimate = method().detach().cpu().clamp(0, 1)
                    seconds = (time.perf_counter() - started) / len(truth)
                    quality, structure = psnr(estimate, truth), ssim(estimate, truth)
                    print(f"| {label} ({len(truth)}) | {views} | {noise:.0%} | {name} | {quality.mean():.2f} ± "
                          f"{quality.std():.2f} | {structure.mean():.3f} ± {structure.std():.3f} | {seconds:.1f} | "
                          f"{peak_memory_gb():.2f} |", flush=True)
                    if label == "real" and views == args.views[0] and noise == args.noise[-1]:
                        shown[name.split(" (")[0].split(" {")[0]] = estimate
                        shown["truth"] = truth
    if args.figure:
        from real_ct import figure

        figure(args.figure, {"truth": shown.pop("truth"), **shown}, names, args.noise[-1])


if __name__ == "__main__":
    main()
