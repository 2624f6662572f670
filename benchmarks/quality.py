"""Sparse-view CT quality: classical baselines vs scoreinv on held-out phantoms.

    python benchmarks/quality.py --model ct-phantom --n 50            # the documented table
    python benchmarks/quality.py --model runs/ct-phantom.pt --quick   # 4 images, few steps

Rows: data set (random ellipses, chest-like, Shepp–Logan) × noise level (none, 1% of the
largest sinogram value) × method. TV's λ is chosen per row from ``--tv-weights`` by the best
mean PSNR on ``--validation`` phantoms of the same family drawn from other seeds (5·10⁶);
``--methods`` runs a subset of the rows. Held-out phantoms come from seeds ≥ 10⁶ (the training
pool used seed 1000). Columns: PSNR and SSIM (data range 1) as mean ± std over images,
score evaluations per image, seconds per image, device. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from scoreinv.checkpoint import load_model
from scoreinv.classical import sirt, tv_reconstruction
from scoreinv.datasets.phantoms import phantoms
from scoreinv.app.demo import HELD_OUT_SEED
from scoreinv.metrics import psnr, ssim
from scoreinv.operators import RadonOp
from scoreinv.reconstruct import posterior, resolve_settings


def shepp_logan(size: int) -> torch.Tensor:
    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    return torch.from_numpy(np.clip(image, 0, 1)).float()[None, None]


VALIDATION_SEED = 5_000_000


def simulate(truth: torch.Tensor, noise: float, views: int, size: int) -> tuple[RadonOp, torch.Tensor]:
    """The row's operator (noise std = ``noise`` × the clean sinograms' peak) and its sinograms."""
    clean = RadonOp(views, image_size=size)
    operator = RadonOp(views, image_size=size, noise_std=noise * float(clean(truth).abs().max()))
    return operator, operator.simulate(truth, generator=torch.Generator().manual_seed(7))


#: TV λ candidates (sinogram units): wide enough that at 64² no row's choice sits at an end.
TV_WEIGHTS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]


def validated_tv_weight(operator, y: torch.Tensor, truth: torch.Tensor, weights: list[float],
                        iterations: int) -> float:
    """The TV λ of ``weights`` with the highest mean PSNR on validation images ``truth`` measured as ``y``."""
    scores = {weight: float(psnr(tv_reconstruction(operator, y, weight, iterations).clamp(0, 1), truth).mean())
              for weight in weights}
    return max(scores, key=scores.get)


def best_tv_weight(truth: torch.Tensor, noise: float, views: int, size: int, weights: list[float],
                   iterations: int) -> float:
    """The TV λ of ``weights`` with the highest mean PSNR on validation phantoms ``truth``
    (parallel beam, ``views`` views: :func:`simulate`)."""
    operator, y = simulate(truth, noise, views, size)
    return validated_tv_weight(operator, y, truth, weights, iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ct-phantom")
    parser.add_argument("--n", type=int, default=50, help="held-out images per phantom family")
    parser.add_argument("--views", type=int, default=23)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01])
    parser.add_argument("--steps", type=int, default=None,
                        help="steps of the scoreinv row (default: reconstruct's default for the operator)")
    parser.add_argument("--fast-steps", type=int, default=20,
                        help="fast setting: the default method at this many steps, one sample")
    parser.add_argument("--tv-weights", type=float, nargs="+", default=TV_WEIGHTS,
                        help="TV λ candidates; each row uses the best on validation phantoms (sinogram units)")
    parser.add_argument("--validation", type=int, default=8,
                        help="validation phantoms per family for choosing TV λ (seeds apart from the test images)")
    parser.add_argument("--methods", nargs="+", default=["FBP", "SIRT", "TV", "scoreinv", "fast"],
                        help="which rows to run: FBP SIRT TV scoreinv fast")
    parser.add_argument("--tv-iterations", type=int, default=500)
    parser.add_argument("--sirt-iterations", type=int, default=300)
    parser.add_argument("--batch", type=int, default=25, help="images per scoreinv call")
    parser.add_argument("--device", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.steps, args.fast_steps, args.tv_iterations, args.sirt_iterations = 4, 10, 5, 50, 50
        args.validation, args.tv_weights = 2, args.tv_weights[::3]

    prior = load_model(args.model, device=args.device)
    device = next(prior.parameters()).device
    size = prior.image_size
    data = {
        "ellipses": phantoms("ellipses", args.n, size, seed=HELD_OUT_SEED + 1),
        "chest": phantoms("chest", args.n, size, seed=HELD_OUT_SEED + 2),
        "Shepp–Logan": shepp_logan(size),
    }
    # TV's λ is tuned per row on phantoms the table does not use (Shepp–Logan takes the ellipses').
    validation = {
        "ellipses": phantoms("ellipses", args.validation, size, seed=VALIDATION_SEED),
        "chest": phantoms("chest", args.validation, size, seed=VALIDATION_SEED),
    }
    validation["Shepp–Logan"] = validation["ellipses"]
    print(f"# {size}², {args.views} views, model {args.model}, device {device}, "
          f"{platform.machine()} with {torch.get_num_threads()} torch threads\n")
    print("| data | noise | method | PSNR (dB) | SSIM | score evals | s / image |")
    print("|---|---|---|---|---|---|---|")
    for noise in args.noise:
        for name, truth in data.items():
            operator, y = simulate(truth, noise, args.views, size)
            y = y.to(device)
            methods = {}
            if "FBP" in args.methods:
                methods["FBP"] = lambda: (operator.pinv(y), 0)
            if "SIRT" in args.methods:
                methods[f"SIRT-{args.sirt_iterations}"] = lambda: (sirt(operator, y, args.sirt_iterations), 0)
            if "TV" in args.methods:
                tv_weight = best_tv_weight(validation[name], noise, args.views, size, args.tv_weights,
                                           args.tv_iterations)
                methods[f"TV (λ={tv_weight:g}, {args.tv_iterations} it.)"] = \
                    lambda: (tv_reconstruction(operator, y, tv_weight, args.tv_iterations), 0)
            defaults = resolve_settings(operator, steps=args.steps)
            scoreinv_rows = [
                (f"scoreinv ({defaults.method}, {defaults.num_samples} × {defaults.steps} steps)",
                 {"steps": args.steps}, "scoreinv"),
                (f"scoreinv fast ({args.fast_steps} steps, 1 sample)", {"steps": args.fast_steps, "num_samples": 1},
                 "fast")]
            for label, options, key in scoreinv_rows:
                if key not in args.methods:
                    continue
                def run(options=options):
                    outputs, evaluations = [], 0
                    for start in range(0, len(y), args.batch):
                        result = posterior(y[start:start + args.batch], operator, prior, seed=0, progress=False,
                                           **options)
                        outputs.append(torch.as_tensor(result.mean))
                        evaluations = result.evaluations_per_item
                    return torch.cat(outputs), evaluations
                methods[label] = run
            for label, method in methods.items():
                started = time.perf_counter()
                estimate, nfe = method()
                seconds = (time.perf_counter() - started) / len(truth)
                estimate = estimate.detach().cpu().clamp(0, 1)
                quality_psnr, quality_ssim = psnr(estimate, truth), ssim(estimate, truth)
                print(f"| {name} ({len(truth)}) | {noise:.0%} | {label} | {quality_psnr.mean():.2f} ± "
                      f"{quality_psnr.std():.2f} | {quality_ssim.mean():.3f} ± {quality_ssim.std():.3f} | "
                      f"{nfe or '—'} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
