"""Colorization: grayscale histology back to colour with the bundled histology prior.

    python examples/colorization.py            # the defaults (100 decomposed steps), 4 posterior samples
    python examples/colorization.py --method replacement --steps 1000   # score_sde's sampler
    python examples/colorization.py --quick    # a smoke run (CI)

The gray image is the first coordinate of an orthonormal colour-decoupling transform,
y = (R + G + B) / √3 (``GrayscaleOp``); the sampler keeps it exactly while the prior
fills in the two chroma coordinates. Writes OUT/colorization.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import scoreinv  # noqa: E402
from scoreinv.datasets import colour_crops  # noqa: E402
from scoreinv.metrics import psnr  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="color-histology")
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the operator's)")
    parser.add_argument("--method", default=None, help="sampling method (default: the operator's)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("outputs/examples"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.steps, args.samples = 1, 10, 2

    prior = scoreinv.load_model(args.model)
    truth = colour_crops(args.n, prior.image_size, seed=5_000_000, sources=("histology",))
    operator = scoreinv.GrayscaleOp(image_size=prior.image_size)
    gray = operator(truth)                                    # (n, 1, H, W) = (R+G+B)/√3
    result = scoreinv.posterior(gray, operator, prior, steps=args.steps, method=args.method,
                                    num_samples=args.samples, seed=0)
    colour = torch.as_tensor(result.mean).clamp(0, 1)
    naive = gray.expand(-1, 3, -1, -1) / 3**0.5                # the gray image as RGB
    print(f"colorization PSNR {psnr(colour, truth).mean():.2f} dB vs gray-as-RGB "
          f"{psnr(naive, truth).mean():.2f} dB ({result.seconds:.1f} s)")

    figure, axes = plt.subplots(args.n, 4, figsize=(10, 2.7 * args.n), squeeze=False)
    for row in range(args.n):
        panels = (truth[row], naive[row], colour[row], torch.as_tensor(result.std)[row].mean(dim=0))
        titles = ("image", "gray input", "colorized (posterior mean)", "posterior std")
        for column, (axis, image, title) in enumerate(zip(axes[row], panels, titles)):
            if column < 3:
                axis.imshow(image.permute(1, 2, 0).clamp(0, 1))
            else:
                figure.colorbar(axis.imshow(image, cmap="magma"), ax=axis, fraction=0.046)
            axis.set_title(title if row == 0 else "", fontsize=9)
            axis.axis("off")
    args.out.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out / "colorization.png", dpi=110, bbox_inches="tight")
    print(f"wrote {args.out / 'colorization.png'}")


if __name__ == "__main__":
    main()
