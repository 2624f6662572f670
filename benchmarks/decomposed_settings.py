"""The decomposed sampler on the bundled CT prior: quality against score evaluations, measured.

    OMP_NUM_THREADS=1 python benchmarks/decomposed_settings.py \\
        '{}' '{"eta": 0.5}' '{"cg_iterations": 10}' '{"time_grid": "karras"}' --n 4 --evals 10 20 50 100

Each positional argument is a JSON dict of :func:`scoreinv.posterior` options added to
``method="decomposed"`` (``{}``: its defaults, including the operator's ``num_samples``); each runs at every ``--evals``
count of steps, i.e. ``num_samples`` × steps score evaluations per image, or once when the dict
names its own ``steps``. ``--baseline`` adds JSON dicts run as they are (another method, its own
steps). Held-out phantoms ``phantoms(family, n, size, seed=10**6 + 7)``; ``--geometry parallel``
(default): ``RadonOp`` with ``--views`` views over [0, π); the other geometries are those of
``geometry.py`` (fan beam, full turn or short scan; limited arcs of 60 parallel views), e.g.

    OMP_NUM_THREADS=1 python benchmarks/decomposed_settings.py '{}' '{"num_samples": 1, "steps": 100}' \
        --model ct-anatomy --family anatomy --seed 5000000 --geometry limited-120 --evals 50

Noise-free and with Gaussian noise of std ``--noise`` × the clean sinograms' peak (seed 3),
sampler seed 0: the numbers are reproducible. One table per noise level: PSNR (mean ± std
over the images) and SSIM of the reconstruction (one sample, clamped to [0, 1], data range 1)
and the seconds per image, with FBP and SIRT first.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _machine import limit_threads, machine_line

from scoreinv.checkpoint import load_model
from scoreinv.classical import sirt
from scoreinv.datasets.phantoms import phantoms
from scoreinv.metrics import psnr, ssim
from scoreinv.operators import LinearOperator, RadonOp
from scoreinv.reconstruct import posterior

from geometry import GEOMETRIES, geometry

HELD_OUT = 10**6 + 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="*", default=["{}"], help="JSON dicts of decomposed options")
    parser.add_argument("--evals", type=int, nargs="+", default=[10, 20, 50, 100], help="score evaluations")
    parser.add_argument("--baseline", action="append", default=[], help="JSON dict of posterior() options")
    parser.add_argument("--model", default="ct-phantom")
    parser.add_argument("--family", default="mixed", choices=["ellipses", "chest", "mixed", "anatomy"])
    parser.add_argument("--n", type=int, default=4, help="held-out phantoms")
    parser.add_argument("--seed", type=int, default=HELD_OUT,
                        help="phantom seed: 10**6 + 7 held-out (default), 5000000 the validation set of quality.py")
    parser.add_argument("--views", type=int, default=23, help="views of the parallel geometry")
    parser.add_argument("--geometry", default="parallel", choices=["parallel", *GEOMETRIES],
                        help="parallel: RadonOp(--views); else a geometry of geometry.py")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01],
                        help="noise std / the clean sinograms' peak (0: noise-free)")
    parser.add_argument("--sirt-iterations", type=int, default=300, help="0: no SIRT row")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    limit_threads(args.threads)

    prior = load_model(args.model)
    size = prior.image_size or 64  # a patch prior serves several sizes: these tables are 64²
    truth = phantoms(args.family, args.n, size, seed=args.seed)

    def make(noise_std: float) -> LinearOperator:
        if args.geometry == "parallel":
            return RadonOp(args.views, image_size=size, noise_std=noise_std)
        return geometry(args.geometry, size, noise_std)

    clean = make(0.0)
    peak = float(clean(truth).abs().max())
    described = f"{args.views} views" if args.geometry == "parallel" else f"geometry {args.geometry}"
    print(machine_line())
    for level in args.noise:
        operator = make(level * peak)
        y = operator.simulate(truth, generator=torch.Generator().manual_seed(3)) if level else clean(truth)
        print(f"\n# {args.model}, {args.n} {args.family} phantoms (seed {args.seed}) {size}², {described}, "
              f"noise {level:.1%} of the peak\n")
        print("| method | evaluations | PSNR (dB) | SSIM | s / image |")
        print("|---|---|---|---|---|")

        def report(name: str, evaluations: str, estimate, seconds: float) -> None:
            estimate = torch.as_tensor(estimate).clamp(0, 1)
            quality_psnr, quality_ssim = psnr(estimate, truth), ssim(estimate, truth)
            print(f"| {name} | {evaluations} | {quality_psnr.mean():.2f} ± {quality_psnr.std():.2f} | "
                  f"{quality_ssim.mean():.3f} | {seconds / args.n:.2f} |", flush=True)

        started = time.perf_counter()
        report("FBP", "–", operator.pinv(y), time.perf_counter() - started)
        if args.sirt_iterations:
            started = time.perf_counter()
            report(f"SIRT-{args.sirt_iterations}", "–", sirt(operator, y, args.sirt_iterations),
                   time.perf_counter() - started)
        for text in args.baseline:
            options = json.loads(text)
            started = time.perf_counter()
            result = posterior(y, operator, prior, seed=0, progress=False, **options)
            report(json.dumps(options), str(result.evaluations_per_item), result.mean, time.perf_counter() - started)
        for text in args.settings:
            options = json.loads(text)
            for evaluations in [options["steps"]] if "steps" in options else args.evals:
                started = time.perf_counter()
                result = posterior(y, operator, prior, method="decomposed", seed=0, progress=False,
                                   **{"steps": evaluations, **options})
                report(f"decomposed {json.dumps(options)}", str(result.evaluations_per_item), result.mean,
                       time.perf_counter() - started)


if __name__ == "__main__":
    main()
