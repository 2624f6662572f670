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
``--sets clinical-validation`` runs them on validation slices closer to a scanner's: all five
regions at clinical fields of view with the sub-millimetre detail and arms (as the clinical third
of the training pool draws them, but from the validation seed), plus ``--grain`` HU of the image
grain a reconstructed scan carries (white Gaussian noise smoothed over about 1 mm, a texture the
procedural phantoms lack). ``--sets real-validation`` runs them on the real CT slices of pydicom and
pydicom-data that the test set leaves out (other patients; benchmarks/real_ct.py's
``VALIDATION_SLICES``). TV's λ is still chosen on the plain validation phantoms.
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
from real_ct import VALIDATION_SLICES, real_slices

from scoreinv.classical import sirt, tv_reconstruction
from scoreinv.datasets import phantoms
from scoreinv.datasets.anatomy import CLINICAL_FIELDS, REGIONS, anatomy_phantoms
from scoreinv.datasets.hounsfield import HU_WINDOW
from scoreinv.metrics import psnr, ssim
from scoreinv.reconstruct import posterior

TEST_SEED = 1_000_016
VALIDATION_SEED = 5_000_000


def peak_memory_gb() -> float:
    """Peak resident memory of this process so far, GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def clinical_validation(n: int, size: int, grain_hu: float) -> torch.Tensor:
    """Validation slices (n, 1, size, size) closer to a scanner's: detail, arms, clinical fields, grain.

    The grain is white Gaussian noise smoothed by a Gaussian of std size/256 pixels (about 1.5 mm over
    a 400 mm field), scaled to ``grain_hu`` HU std and added in the unit window, then clipped to [0, 1].
    """
    images = anatomy_phantoms(n, size, VALIDATION_SEED, region=REGIONS, field_of_view=CLINICAL_FIELDS,
                              detail=True, arms=0.5)
    if grain_hu <= 0:
        return images
    generator = torch.Generator().manual_seed(VALIDATION_SEED + 1)
    white = torch.randn(images.shape, generator=generator)
    width = size / 256
    offsets = torch.arange(-3 * int(width + 1), 3 * int(width + 1) + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / width) ** 2)
    kernel = kernel / kernel.sum()
    padding = len(offsets) // 2
    smooth = torch.nn.functional.conv2d(white, kernel.view(1, 1, 1, -1), padding=(0, padding))
    smooth = torch.nn.functional.conv2d(smooth, kernel.view(1, 1, -1, 1), padding=(padding, 0))
    grain = smooth / smooth.std() * grain_hu / (HU_WINDOW[1] - HU_WINDOW[0])
    return (images + grain).clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, nargs="+", default=[23, 60])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01])
    parser.add_argument("--phantoms", type=int, default=4, help="held-out anatomy phantoms beside the real slices")
    parser.add_argument("--sets", nargs="+",
                        choices=["real", "phantoms", "validation", "clinical-validation", "real-validation"],
                        default=["real", "phantoms"],
                        help="image sets: the two test sets, or the validation sets to choose settings on")
    parser.add_argument("--validation", type=int, default=4, help="validation phantoms for TV's λ")
    parser.add_argument("--grain", type=float, default=10.0, help="image grain of clinical-validation (HU std)")
    parser.add_argument("--tv-weights", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
                        help="λ grid at 64², scaled by N/64")
    parser.add_argument("--tv-iterations", type=int, default=500)
    parser.add_argument("--sirt-iterations", type=int, default=300)
    parser.add_argument("--model", default=None, help="prior name or path (default: the registered one for N²)")
    parser.add_argument("--options", action="append", default=[], help="JSON dict of posterior() options")
    parser.add_argument("--methods", nargs="+", default=["FBP", "SIRT", "TV", "scoreinv"])
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--per-slice", action="store_true", help="also print each slice's PSNR under its row")
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
    if "clinical-validation" in args.sets:
        sets["clinical-validation"] = clinical_validation(args.validation, size, args.grain)
    if "real-validation" in args.sets:
        sets["real-validation"], validation_names = real_slices(size, VALIDATION_SLICES)
        print(f"# real validation slices: {', '.join(validation_names)}")
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
                    if args.per_slice:
                        print(f"|   per slice | | | | {' / '.join(f'{value:.2f}' for value in quality.tolist())} "
                              "| | | |", flush=True)
                    if label == "real" and views == args.views[0] and noise == args.noise[-1]:
                        shown[name.split(" (")[0].split(" {")[0]] = estimate
                        shown["truth"] = truth
    if args.figure:
        from real_ct import figure

        figure(args.figure, {"truth": shown.pop("truth"), **shown}, names, args.noise[-1])


if __name__ == "__main__":
    main()
