"""Noisy sparse-view CT on the bundled prior: which sampler settings, measured.

    python benchmarks/noisy_ct_settings.py --n 8 --noise 0.01 \\
        '{"steps": 100, "num_samples": 1}' '{"steps": 100, "num_samples": 4}' \\
        '{"steps": 200, "num_samples": 1, "final_iterations": 20, "final_damping": 10.0}'

Each positional argument is a JSON dict of :func:`scoreinv.posterior` options. Held-out
phantoms ``phantoms("mixed", n, size, seed=10**6 + 5)``, 23 views, Gaussian noise with std
``noise`` × the sinograms' peak (seed 3), sampler seed 0: the numbers are reproducible.
Prints PSNR (mean ± std) and SSIM of the posterior mean, data range 1, and the seconds for
all images, with FBP and SIRT-300 first.
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
from scoreinv.app.demo import HELD_OUT_SEED
from scoreinv.metrics import psnr, ssim
from scoreinv.operators import RadonOp
from scoreinv.reconstruct import posterior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", help="JSON dicts of posterior() options")
    parser.add_argument("--model", default="ct-phantom")
    parser.add_argument("--n", type=int, default=8, help="held-out phantoms")
    parser.add_argument("--views", type=int, default=23)
    parser.add_argument("--noise", type=float, default=0.01, help="noise std / the sinograms' peak")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    limit_threads(args.threads)
    settings = [json.loads(text) for text in args.settings]

    prior = load_model(args.model)
    size = prior.image_size
    truth = phantoms("mixed", args.n, size, seed=HELD_OUT_SEED + 5)
    clean = RadonOp(args.views, image_size=size)
    operator = RadonOp(args.views, image_size=size, noise_std=args.noise * float(clean(truth).abs().max()))
    y = operator.simulate(truth, generator=torch.Generator().manual_seed(3))

    print(machine_line())
    print(f"# {args.model}, {args.n} held-out phantoms {size}², {args.views} views, noise {args.noise:.1%}\n")
    print("| setting | PSNR (dB) | SSIM | s |")
    print("|---|---|---|---|")

    def report(name: str, estimate, seconds: float) -> None:
        estimate = torch.as_tensor(estimate).clamp(0, 1)
        quality_psnr, quality_ssim = psnr(estimate, truth), ssim(estimate, truth)
        print(f"| {name} | {quality_psnr.mean():.2f} ± {quality_psnr.std():.2f} | {quality_ssim.mean():.3f} | "
              f"{seconds:.1f} |", flush=True)

    started = time.perf_counter()
    report("FBP", operator.pinv(y), time.perf_counter() - started)
    started = time.perf_counter()
    report("SIRT-300", sirt(operator, y, 300), time.perf_counter() - started)
    for setting in settings:
        started = time.perf_counter()
        result = posterior(y, operator, prior, seed=0, progress=False, **setting)
        report(json.dumps(setting), result.mean, time.perf_counter() - started)


if __name__ == "__main__":
    main()
