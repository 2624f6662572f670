"""Inpainting and colorization on the bundled colour prior: decomposed sampling against the defaults.

    OMP_NUM_THREADS=1 python benchmarks/decomposed_colour.py --n 4 --evals 20 50 100

Held-out crops ``colour_crops(n, 64, seed=10**6 + 9)`` (histology and retina), noise-free;
``MaskOp`` keeping a random 30% of the pixel positions (mask seed 0) and ``GrayscaleOp``. For
each: the family default (replacement, 1000 steps = 2000 evaluations) and ``method="decomposed"``
at each ``--evals``; one sample, seed 0. Prints PSNR (mean ± std over the crops), SSIM (data
range 1, clamped to [0, 1]) and seconds per image.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _machine import limit_threads, machine_line

from scoreinv.checkpoint import load_model
from scoreinv.datasets import colour_crops
from scoreinv.metrics import psnr, ssim
from scoreinv.operators import GrayscaleOp, MaskOp
from scoreinv.reconstruct import posterior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--evals", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=10**6 + 9,
                        help="crop seed: 10**6 + 9 held-out (default), 5000009 validation")
    parser.add_argument("--skip-default", action="store_true", help="leave out the family default")
    parser.add_argument("--options", action="append", default=[],
                        help='JSON dict of further decomposed settings, e.g. \'{"zeta": 0.85}\' (repeatable)')
    args = parser.parse_args()
    limit_threads(args.threads)
    prior = load_model("color-histology")
    size = prior.image_size
    truth = colour_crops(args.n, size, seed=args.seed)
    operators = {
        "inpainting, 30% kept": MaskOp(image_size=size, channels=3, fraction=0.3,
                                       generator=torch.Generator().manual_seed(0)),
        "colorization": GrayscaleOp(size),
    }
    print(machine_line())
    print(f"\n# color-histology, {args.n} crops {size}² (seed {args.seed}), noise-free\n")
    print("| problem | method | evaluations | PSNR (dB) | SSIM | s / image |")
    print("|---|---|---|---|---|---|")
    for title, operator in operators.items():
        y = operator(truth)
        runs = [] if args.skip_default else [("default", {})]
        for text in args.options or ["{}"]:
            extra = json.loads(text)
            runs += [(f"decomposed {text}" if extra else "decomposed", {"method": "decomposed", "steps": e, **extra})
                     for e in args.evals]
        for name, options in runs:
            started = time.perf_counter()
            result = posterior(y, operator, prior, seed=0, progress=False, **options)
            seconds = time.perf_counter() - started
            estimate = torch.as_tensor(result.mean).clamp(0, 1)
            quality_psnr, quality_ssim = psnr(estimate, truth), ssim(estimate, truth)
            label = f"{name} ({result.settings['method']})"
            print(f"| {title} | {label} | {result.evaluations_per_item} | {quality_psnr.mean():.2f} ± {quality_psnr.std():.2f} | "
                  f"{quality_ssim.mean():.3f} | {seconds / args.n:.2f} |", flush=True)


if __name__ == "__main__":
    main()
