"""Fan-beam and limited-angle CT: FBP, SIRT, TV (λ validated) and scoreinv on held-out phantoms and
on pydicom's real CT slices, 64² (or ``--size`` N), noise-free and with 1% noise.

    python benchmarks/geometry.py                      # every geometry, 4 phantoms + the real slices
    python benchmarks/geometry.py --geometries fan-full limited-120 --noise 0 --n 8
    python benchmarks/geometry.py --size 256 --geometries limited-120 --noise 0 --validation 2

Geometries (lengths in pixels of the N² image):

* ``fan-full``: FanBeamOp, 23 views over a full turn, source 2N and detector N from the isocentre;
* ``fan-short``: the same fan, 23 views over a short scan (π + the fan angle, Parker-weighted FBP);
* ``limited-90`` / ``limited-120``: RadonOp, 60 parallel views equally spaced over 0–90° / 0–120°.

Noise: Gaussian, std = the given fraction × each set's clean sinogram peak. TV's λ is chosen per
geometry and noise level from ``quality.py``'s candidates (0.001 … 3) × N/64 on ``--validation``
(8) validation anatomy phantoms (``phantoms("anatomy", 8, N, seed=5_000_000)``,
``quality.validated_tv_weight``); the test images are held-out anatomy phantoms (seed 10**6 + 7) and the real
slices of ``real_ct.py`` (a test set only). scoreinv runs ``posterior`` at its defaults (the
registered CT prior for N², decomposed sampler, the settings of the solvers' policy for the operator), plus one
row per ``--options`` JSON dict. ``--methods`` runs a subset of the rows. ``--sets validation`` runs them on
the validation phantoms, where settings are chosen (never on the test sets):

    python benchmarks/geometry.py --size 256 --geometries limited-120 --noise 0 --sets validation --validation 2 \
        --methods TV scoreinv --options '{"start_noise_level": 0.3, "start_estimate": "coarse"}'
 Prints one markdown table: PSNR / SSIM mean ± std per row, seconds per image.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
import torch

from quality import TV_WEIGHTS, validated_tv_weight
from real_ct import real_slices

from scoreinv.checkpoint import default_prior, load_model
from scoreinv.classical import sirt, tv_reconstruction
from scoreinv.datasets import phantoms
from scoreinv.metrics import psnr, ssim
from scoreinv.operators import FanBeamOp, LinearOperator, RadonOp
from scoreinv.reconstruct import posterior

VALIDATION_SEED = 5_000_000
TEST_SEED = 10**6 + 7
GEOMETRIES = ("fan-full", "fan-short", "limited-90", "limited-120")
METHODS = ("FBP", "SIRT", "TV", "scoreinv")


def geometry(name: str, size: int, noise_std: float = 0.0) -> LinearOperator:
    """The operator of a named geometry for size² images."""
    if name.startswith("fan"):
        fan = dict(source_distance=2.0 * size, detector_distance=1.0 * size, noise_std=noise_std)
        if name == "fan-full":
            return FanBeamOp(23, size, **fan)
        full_turn = FanBeamOp(23, size, **fan)
        return FanBeamOp(angles=FanBeamOp.short_scan(23, full_turn.fan_angle), image_size=size, **fan)
    degrees = {"limited-90": 90, "limited-120": 120}[name]
    angles = np.linspace(0.0, math.radians(degrees), 60, endpoint=False)
    return RadonOp(angles=angles, image_size=size, noise_std=noise_std)


def simulate(name: str, truth: torch.Tensor, noise: float) -> tuple[LinearOperator, torch.Tensor]:
    clean = geometry(name, truth.shape[-1])
    operator = geometry(name, truth.shape[-1], noise * float(clean(truth).abs().max()))
    return operator, operator.simulate(truth, generator=torch.Generator().manual_seed(7))


def tv_weight(name: str, noise: float, size: int, iterations: int, count: int = 8) -> float:
    """TV's λ for a geometry and noise level, chosen on ``count`` validation anatomy phantoms from
    :data:`TV_WEIGHTS` × size / 64 (λ is in sinogram units, which grow with the ray length)."""
    validation = phantoms("anatomy", count, size, seed=VALIDATION_SEED)
    operator, y = simulate(name, validation, noise)
    return validated_tv_weight(operator, y, validation, [weight * size / 64 for weight in TV_WEIGHTS], iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="prior name or path (default: the registered one for the size)")
    parser.add_argument("--size", type=int, default=64, help="image size N (the geometries scale with N)")
    parser.add_argument("--validation", type=int, default=8, help="validation phantoms for TV's λ")
    parser.add_argument("--geometries", nargs="+", default=list(GEOMETRIES), choices=GEOMETRIES)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01])
    parser.add_argument("--n", type=int, default=4, help="held-out anatomy phantoms")
    parser.add_argument("--sets", nargs="+", default=["phantoms", "real"], choices=("phantoms", "real", "validation"),
                        help="the test sets, or the validation phantoms (TV's) to choose settings on")
    parser.add_argument("--options", type=json.loads, nargs="*", default=[],
                        help="JSON dicts of posterior() options, one scoreinv row each beside the defaults")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="which rows to run")
    parser.add_argument("--tv-iterations", type=int, default=300)
    parser.add_argument("--sirt-iterations", type=int, default=300)
    args = parser.parse_args()

    size = args.size
    model_name = args.model or default_prior("ct", 1, size)
    prior = load_model(model_name)
    sets = {}
    if "phantoms" in args.sets:
        sets["phantoms"] = phantoms("anatomy", args.n, size, seed=TEST_SEED)
    if "real" in args.sets:
        sets["real slices"] = real_slices(size)[0]
    if "validation" in args.sets:
        sets["validation"] = phantoms("anatomy", args.validation, size, seed=VALIDATION_SEED)
    print(f"# {size}², model {model_name}; {platform.machine()}, {torch.get_num_threads()} torch threads; "
          f"{', '.join(f'{name}: {len(images)}' for name, images in sets.items())} images\n")
    print("| geometry | noise | images | method | PSNR (dB) | SSIM | s / image |")
    print("|---|---|---|---|---|---|---|")
    for name in args.geometries:
        for noise in args.noise:
            weight = tv_weight(name, noise, size, args.tv_iterations, args.validation) if "TV" in args.methods else None
            for set_name, truth in sets.items():
                operator, y = simulate(name, truth, noise)
                methods = {
                    "FBP": ("FBP", lambda: operator.pinv(y)),
                    "SIRT": (f"SIRT-{args.sirt_iterations}", lambda: sirt(operator, y, args.sirt_iterations)),
                    "TV": (f"TV (λ = {weight:.3g}, validated)" if weight is not None else "TV",
                           lambda: tv_reconstruction(operator, y, weight, args.tv_iterations)),
                }

                def scoreinv(options: dict) -> torch.Tensor:
                    return torch.as_tensor(posterior(y, operator, prior, progress=False, **options).mean)

                methods["scoreinv"] = ("scoreinv (defaults)", lambda: scoreinv({}))
                rows = [methods[key] for key in args.methods]
                rows += [(f"scoreinv {json.dumps(options)}", lambda options=options: scoreinv(options))
                         for options in args.options]
                for label, method in rows:
                    started = time.perf_counter()
                    estimate = method().detach().cpu().float().clamp(0, 1)
                    seconds = (time.perf_counter() - started) / len(truth)
                    quality, structure = psnr(estimate, truth), ssim(estimate, truth)
                    print(f"| {name} | {noise:.0%} | {set_name} | {label} | {quality.mean():.2f} ± {quality.std():.2f} | "
                          f"{structure.mean():.3f} ± {structure.std():.3f} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
