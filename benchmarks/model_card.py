"""Held-out numbers for a model card: denoising score-matching loss and bits/dim.

    python benchmarks/model_card.py ct-phantom
    python benchmarks/model_card.py color-histology --n 8

Held-out images come from seeds the training pools never saw (training used seed 1000).
Loss: the training objective (λ = std², per-pixel mean) averaged over ``--draws`` seeded
draws of (t, z). Bits/dim: images quantised to 256 levels, uniformly dequantised, the
probability-flow ODE with the Hutchinson divergence (offset 8 included).
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
    args = parser.parse_args()

    prior = scoreinv.load_model(args.model)
    size = prior.image_size
    images = (phantoms("mixed", args.n, size, seed=HELD_OUT_SEED) if prior.channels == 1
              else colour_crops(args.n, size, seed=HELD_OUT_SEED))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        losses = [float(dsm_loss(prior, prior.sde, images, generator)) for _ in range(args.draws)]
    quantised = torch.round(images * 255) / 255
    likelihood = scoreinv.log_likelihood(prior, dequantize(quantised, 256, (0.0, 1.0), generator),
                                         generator=generator, progress=False)
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
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
