"""Inpainting with score priors: a box and random pixels missing, on CT and on histology.

    python examples/inpainting.py            # the defaults: 100 decomposed steps (ζ = 0.7)
    python examples/inpainting.py --method replacement --steps 1000   # score_sde's sampler
    python examples/inpainting.py --quick    # a smoke run (CI)

Writes OUT/inpainting.png: for each prior, the image, the masked input, the
reconstruction and the per-pixel posterior std.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import scoreinv  # noqa: E402
from scoreinv.datasets import colour_crops, phantoms  # noqa: E402
from scoreinv.metrics import psnr  # noqa: E402


def to_display(image: torch.Tensor):
    image = image.clamp(0, 1)
    return image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct-model", default="ct-phantom")
    parser.add_argument("--colour-model", default="color-histology")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the operator's)")
    parser.add_argument("--method", default=None, help="sampling method (default: the operator's)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("outputs/examples"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.samples = 10, 2

    rows = []
    for name, model in (("CT", args.ct_model), ("histology", args.colour_model)):
        prior = scoreinv.load_model(model)
        size = prior.image_size
        truth = (phantoms("chest", 1, size, seed=4_000_000) if prior.channels == 1
                 else colour_crops(1, size, seed=4_000_000, sources=("histology",)))
        box = (size // 4, size // 3, size // 3, size // 3)  # (top, left, height, width) missing
        operator = scoreinv.MaskOp(image_size=size, channels=prior.channels, boxes=[box])
        y = operator(truth)
        result = scoreinv.posterior(y, operator, prior, steps=args.steps, method=args.method,
                                    num_samples=args.samples, seed=0)
        mean = torch.as_tensor(result.mean)
        print(f"{name}: box inpainting PSNR {psnr(mean.clamp(0, 1), truth)[0]:.2f} dB "
              f"(masked input {psnr(y, truth)[0]:.2f} dB), {result.seconds:.1f} s")
        rows.append((name, truth[0], y[0], mean[0], torch.as_tensor(result.std)[0].mean(dim=0)))

    figure, axes = plt.subplots(len(rows), 4, figsize=(10, 2.7 * len(rows)), squeeze=False)
    for axes_row, (name, truth, masked, mean, std) in zip(axes, rows):
        for axis, image, title in zip(axes_row[:3], (truth, masked, mean),
                                      (f"{name}: image", "masked input", "reconstruction")):
            axis.imshow(to_display(image), cmap="gray", vmin=0, vmax=1)
            axis.set_title(title, fontsize=9)
        shown = axes_row[3].imshow(std, cmap="magma")
        axes_row[3].set_title("posterior std", fontsize=9)
        figure.colorbar(shown, ax=axes_row[3], fraction=0.046)
        for axis in axes_row:
            axis.axis("off")
    args.out.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out / "inpainting.png", dpi=110, bbox_inches="tight")
    print(f"wrote {args.out / 'inpainting.png'}")


if __name__ == "__main__":
    main()
