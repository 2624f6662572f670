"""Sparse-view CT quality: classical baselines vs scoreinv on held-out phantoms.

    python benchmarks/quality.py --model ct-phantom --n 50            # the documented table
    python benchmarks/quality.py --model runs/ct-phantom.pt --quick   # 4 images, few steps

Rows: data set (random ellipses, chest-like, Shepp–Logan) × noise level (none, 1% of the
largest sinogram value) × method. Held-out phantoms come from seeds ≥ 10⁶ (the training
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
from scoreinv.demo import HELD_OUT_SEED
from scoreinv.metrics import psnr, ssim
from scoreinv.operators import RadonOp
from scoreinv.reconstruct import default_settings, posterior


def shepp_logan(size: int) -> torch.Tensor:
    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    return torch.from_numpy(np.clip(image, 0, 1)).float()[None, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ct-phantom")
    parser.add_argument("--n", type=int, default=50, help="held-out images per phantom family")
    parser.add_argument("--views", type=int, default=23)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01])
    parser.add_argument("--steps", type=int, default=None,
                        help="scoreinv default setting (default: reconstruct's default for the operator)")
    parser.add_argument("--fast-steps", type=int, default=100, help="fast setting: steps × 2 evaluations")
    parser.add_argument("--tv-weight", type=float, nargs="+", default=[0.003, 0.03],
                        help="TV λ for noise-free and noisy data (sinogram units)")
    parser.add_argument("--tv-iterations", type=int, default=500)
    parser.add_argument("--sirt-iterations", type=int, default=300)
    parser.add_argument("--batch", type=int, default=25, help="images per scoreinv call")
    parser.add_argument("--device", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.steps, args.fast_steps, args.tv_iterations, args.sirt_iterations = 4, 20, 10, 50, 50

    prior = load_model(args.model, device=args.device)
    device = next(prior.parameters()).device
    size = prior.image_size
    data = {
        "ellipses": phantoms("ellipses", args.n, size, seed=HELD_OUT_SEED + 1),
        "chest": phantoms("chest", args.n, size, seed=HELD_OUT_SEED + 2),
        "Shepp–Logan": shepp_logan(size),
    }
    print(f"# {size}², {args.views} views, model {args.model}, device {device}, "
          f"{platform.machine()} with {torch.get_num_threads()} torch threads\n")
    print("| data | noise | method | PSNR (dB) | SSIM | score evals | s / image |")
    print("|---|---|---|---|---|---|---|")
    for noise_index, noise in enumerate(args.noise):
        for name, truth in data.items():
            clean = RadonOp(args.views, image_size=size)
            noise_std = noise * float(clean(truth).abs().max())
            operator = RadonOp(args.views, image_size=size, noise_std=noise_std)
            y = operator.simulate(truth, generator=torch.Generator().manual_seed(7)).to(device)
            tv_weight = args.tv_weight[min(noise_index, len(args.tv_weight) - 1)]
            methods = {
                "FBP": lambda: (operator.pinv(y), 0),
                f"SIRT-{args.sirt_iterations}": lambda: (sirt(operator, y, args.sirt_iterations), 0),
                f"TV (λ={tv_weight}, {args.tv_iterations} it.)":
                    lambda: (tv_reconstruction(operator, y, tv_weight, args.tv_iterations), 0),
            }
            default_steps = args.steps or default_settings(operator)["steps"]
            for label, steps in ((f"scoreinv, {default_steps} steps", default_steps),
                                 (f"scoreinv fast, {args.fast_steps} steps", args.fast_steps)):
                def run(steps=steps):
                    outputs, nfe = [], 0
                    for start in range(0, len(y), args.batch):
                        result = posterior(y[start:start + args.batch], operator, prior, steps=steps,
                                           seed=0, progress=False)
                        outputs.append(torch.as_tensor(result.mean))
                        nfe = result.nfe
                    return torch.cat(outputs), nfe
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
