"""Train a small score model on 8×8 handwritten digits and report held-out bits/dim.

The digits ship with scikit-learn (offline). Pixels take 17 levels (0…16), scaled to
[0, 1]; held-out images are uniformly dequantised and their log-likelihood computed
through the probability-flow ODE, so bits/dim carries the offset log₂ 17 ≈ 4.09
(a uniform density on [0, 1]⁶⁴ scores exactly that). A full-covariance Gaussian fitted
to the training set is the reference a score model must beat.

    python examples/digits_likelihood.py            # ~5 min on 2 CPU cores
    python examples/digits_likelihood.py --quick    # seconds: a smoke run (CI)

Writes OUT/digits.pt (checkpoint), OUT/samples.png, OUT/report.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import scoreinv  # noqa: E402
from scoreinv.config import ModelConfig, SDEConfig, TrainingConfig, UNetConfig  # noqa: E402
from scoreinv.datasets import DIGITS_LEVELS, load_digits_split  # noqa: E402
from scoreinv.likelihood import bpd_offset, dequantize  # noqa: E402
from scoreinv.models import ScoreModel  # noqa: E402
from scoreinv.training import train  # noqa: E402


def gaussian_baseline_bpd(train_images: torch.Tensor, test_images: torch.Tensor, seed: int) -> float:
    """Held-out bits/dim of a full-covariance Gaussian fitted to dequantised training data."""
    generator = torch.Generator().manual_seed(seed)
    train_u = dequantize(train_images.double(), DIGITS_LEVELS, (0.0, 1.0), generator).flatten(1)
    test_u = dequantize(test_images.double(), DIGITS_LEVELS, (0.0, 1.0), generator).flatten(1)
    mean = train_u.mean(0)
    covariance = torch.cov(train_u.T) + 1e-6 * torch.eye(train_u.shape[1], dtype=torch.float64)
    logp = torch.distributions.MultivariateNormal(mean, covariance).log_prob(test_u)
    dims = train_u.shape[1]
    return float((-logp / (dims * math.log(2))).mean() + bpd_offset(DIGITS_LEVELS, (0.0, 1.0)))


def save_samples(samples: torch.Tensor, path: Path, title: str) -> None:
    count = samples.shape[0]
    columns = 8
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 0.9 + 0.4))
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < count:
            axis.imshow(samples[index, 0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/digits"), help="output folder")
    parser.add_argument("--steps", type=int, default=4000, help="training steps")
    parser.add_argument("--test-images", type=int, default=0, help="held-out images to score (0 = all 359)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny run for CI: 30 steps, 16 test images")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.test_images = 30, 16

    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train_images, test_images = load_digits_split(test_fraction=0.2, seed=args.seed)
    if args.test_images:
        test_images = test_images[: args.test_images]

    model_config = ModelConfig(
        sde=SDEConfig(kind="vp", beta_min=0.1, beta_max=20.0),
        unet=UNetConfig(image_size=8, channels=1, base_channels=32, channel_multipliers=(1, 2),
                        num_res_blocks=2, attention_resolutions=(4,)),
        value_range=(0.0, 1.0),
    )
    training_config = TrainingConfig(
        steps=args.steps, batch_size=128, learning_rate=1e-3, warmup_steps=min(200, args.steps // 10),
        ema_decay=0.999 if args.steps >= 1000 else 0.9, checkpoint_every=1000, seed=args.seed,
    )
    checkpoint = args.out / "digits.pt"
    model = ScoreModel(model_config)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"training a {parameters / 1e6:.2f}M-parameter U-Net for {args.steps} steps on "
          f"{len(train_images)} digits (checkpoint: {checkpoint})")
    # Dequantise each batch afresh: the model learns a density on [0, 1]^64.
    batches = DequantisedBatches(train_images, training_config.batch_size, seed=args.seed)
    result = train(model, batches, training_config, checkpoint_path=checkpoint, resume=True)
    print(f"trained to step {result.step} in {result.seconds:.0f} s")

    prior = scoreinv.load_model(checkpoint)
    held_out = dequantize(test_images, DIGITS_LEVELS, (0.0, 1.0), torch.Generator().manual_seed(args.seed + 1))
    started = time.perf_counter()
    likelihood = scoreinv.log_likelihood(prior, held_out, levels=DIGITS_LEVELS,
                                         generator=torch.Generator().manual_seed(args.seed + 2))
    likelihood_seconds = time.perf_counter() - started
    model_bpd = float(likelihood.bpd.mean())
    baseline_bpd = gaussian_baseline_bpd(train_images, test_images, args.seed)
    uniform_bpd = bpd_offset(DIGITS_LEVELS, (0.0, 1.0))

    samples = scoreinv.sample(prior, 32, method="ode", seed=args.seed)
    save_samples(samples, args.out / "samples.png",
                 f"probability-flow ODE samples, {args.steps} training steps, {model_bpd:.3f} bits/dim held out")

    report = {
        "training_steps": result.step,
        "training_seconds": round(result.seconds, 1),
        "parameters": parameters,
        "held_out_images": len(test_images),
        "bits_per_dim": {
            "score_model": round(model_bpd, 4),
            "score_model_std": round(float(likelihood.bpd.std()), 4),
            "gaussian_full_covariance": round(baseline_bpd, 4),
            "uniform": round(uniform_bpd, 4),
        },
        "bpd_offset": likelihood.offset,
        "divergence": likelihood.divergence,
        "likelihood_nfe": likelihood.nfe,
        "likelihood_seconds": round(likelihood_seconds, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "model_config": json.loads(model_config.model_dump_json()),
        "training_config": json.loads(training_config.model_dump_json()),
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\n| model | held-out bits/dim |\n|---|---|\n"
          f"| score model (VP, probability-flow ODE, {likelihood.divergence}) | {model_bpd:.3f} ± "
          f"{float(likelihood.bpd.std()):.3f} |\n| full-covariance Gaussian | {baseline_bpd:.3f} |\n"
          f"| uniform on [0, 1] | {uniform_bpd:.3f} |")
    print(f"\nlikelihood: {len(test_images)} images, {likelihood.nfe} ODE evaluations, {likelihood_seconds:.1f} s; "
          f"offset log2({DIGITS_LEVELS}) = {likelihood.offset:.3f} included. Wrote {args.out}/")


class DequantisedBatches:
    """Endless batches of training digits, each with fresh uniform dequantisation noise.

    Batch k is a function of (seed, k) alone, so iterating again gives the same batches
    and a resumed training run is exact.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int) -> None:
        self.images = images
        self.batch_size = batch_size
        self.seed = seed

    def __iter__(self):
        for k in itertools.count():
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
            index = torch.randint(len(self.images), (self.batch_size,), generator=generator)
            yield dequantize(self.images[index], DIGITS_LEVELS, (0.0, 1.0), generator)


if __name__ == "__main__":
    main()
