"""Held-out numbers for a model card: denoising score-matching loss and bits/dim.

    python benchmarks/model_card.py ct-phantom
    python benchmarks/model_card.py ct-phantom --real      # also the real CT slices (out of distribution?)
    python benchmarks/model_card.py color-histology --n 8

Held-out images come from seeds the training pools never saw (training used seed 1000).
Loss: the training objective (λ = std², per-pixel mean) averaged over ``--draws`` seeded
draws of (t, z). Bits/dim: images quantised to 256 levels, uniformly dequantised, the
probability-flow ODE with the Hutchinson divergence (offset 8 included). ``--real`` adds the
bits/dim of the real CT slices shipped with pydicom (benchmarks/real_ct.py) and of held-out
procedural anatomy slices: an out-of-distribution flag for a CT prior.
"""

from __future__ import annotations

import argparse
import json

import torch

import scoreinv
from scoreinv.checkpoint import read_checkpoint, resolve_checkpoint
from scoreinv.datasets import colour_crops, phantoms
from scoreinv.likelihood import dequantize
from scoreinv.losses import dsm_loss

HELD_OUT_SEED = 7_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--n", type=int, default=16, help="held-out images")
    parser.add_argument("--draws", type=int, default=8, help="(t, z) draws for the loss")
    parser.add_argument("--real", action="store_true", help="also the real CT slices and anatomy phantoms")
    args = parser.parse_args()

    prior = scoreinv.load_model(args.model)
    size = prior.image_size
    images = (phantoms("mixed", args.n, size, seed=HELD_OUT_SEED) if prior.channels == 1
              else colour_crops(args.n, size, seed=HELD_OUT_SEED))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        losses = [float(dsm_loss(prior, prior.sde, images, generator)) for _ in range(args.draws)]
    likelihood = bits_per_dim(prior, images, generator)
    content = read_checkpoint(resolve_checkpoint(args.model))
    report = {
        "model": args.model,
        "step": content["step"],
        "held_out_images": args.n,
        "held_out_dsm_loss": round(sum(losses) / len(losses), 5),
        "held_out_bits_per_dim": round(float(likelihood.bpd.mean()), 4),
        "bits_per_dim_std": round(float(likelihood.bpd.std()), 4),
        "likelihood_nfe": likelihood.nfe,
    }
    if args.real:
        from real_ct import real_slices

        real, names = real_slices(size)
        for label, group in (("real_ct_slices", real), ("anatomy_phantoms", phantoms("anatomy", len(real), size,
                                                                                    seed=HELD_OUT_SEED))):
            result = bits_per_dim(prior, group, generator)
            report[f"{label}_bits_per_dim"] = [round(float(value), 3) for value in result.bpd]
        report["real_ct_files"] = names
    print(json.dumps(report, indent=2))


def bits_per_dim(prior, images: torch.Tensor, generator: torch.Generator):
    """Bits/dim of ``images`` quantised to 256 levels and uniformly dequantised."""
    quantised = torch.round(images * 255) / 255
    return scoreinv.log_likelihood(prior, dequantize(quantised, 256, (0.0, 1.0), generator),
                                   generator=generator, progress=False)


if __name__ == "__main__":
    main()
