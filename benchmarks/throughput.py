"""Throughput: training steps/s and reconstruction images/s at 64², 128², 256².

    python benchmarks/throughput.py                          # CPU, sizes 64 128
    python benchmarks/throughput.py --device cuda --sizes 64 128 256

The network is the bundled ``ct-phantom`` architecture (its stored configuration) at each
image size, with the attention level kept at the lowest resolution, randomly initialised
(seed 0): the cost of a training step or a sampler step does not depend on the weights, so
sizes without a trained prior can be timed. Reconstruction: ``scoreinv.posterior`` at
``reconstruct``'s defaults on a batch of 23-view sinograms, noise-free and with 1% noise (the
decomposed sampler: the mean of 2 samples of 50 steps each), timed over ``--timing-steps``
sampler steps after a warm-up; images/s follow from the time per step. The loop does the same
work at every step, except that noise-free the steps below σ_t = 0.1 run 300 CG iterations
instead of 7; on the log-σ grid their share is about the same at any step count (3 of 10, 13
of 50). Training: :func:`scoreinv.training.train` with ``--train-batch``,
bf16 autocast on CUDA (``TrainingConfig.amp``), timed over ``--train-steps`` steps after a
warm-up call. Prints a Markdown table with the device named.
"""

from __future__ import annotations

import argparse
import time

import torch

from _machine import limit_threads, machine_line
from scoreinv.checkpoint import load_model
from scoreinv.config import ModelConfig, TrainingConfig
from scoreinv.datasets.phantoms import phantoms
from scoreinv.models import ScoreModel
from scoreinv.operators import RadonOp
from scoreinv.reconstruct import posterior, resolve_settings
from scoreinv.training import train


def config_at(size: int) -> ModelConfig:
    bundled = load_model("ct-phantom").config
    levels = len(bundled.unet.channel_multipliers)
    unet = bundled.unet.model_copy(update={"image_size": size, "attention_resolutions": (size // 2 ** (levels - 1),)})
    return bundled.model_copy(update={"unet": unet})


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reconstruction_images_per_second(model: ScoreModel, size: int, batch: int, steps: int, noise: float,
                                     device: torch.device) -> tuple[float, str]:
    """Images/s of ``reconstruct``'s defaults for 23-view CT with ``noise`` × the sinogram peak, from
    ``steps`` timed sampler steps (every default draw, all its samples, per step)."""
    truth = phantoms("mixed", batch, size, seed=10**6)
    clean = RadonOp(23, image_size=size)
    operator = RadonOp(23, image_size=size, noise_std=noise * float(clean(truth).abs().max()))
    y = (operator.simulate(truth, generator=torch.Generator().manual_seed(0)) if noise else clean(truth)).to(device)
    posterior(y, operator, model, steps=5, seed=0, progress=False)  # warm-up (the fewest steps allowed)
    synchronize(device)
    started = time.perf_counter()
    posterior(y, operator, model, steps=steps, seed=0, progress=False)
    synchronize(device)
    per_step = (time.perf_counter() - started) / steps
    defaults = resolve_settings(operator)
    label = f"{defaults.method}, {defaults.num_samples} × {defaults.steps} steps"
    return batch / (per_step * defaults.steps), label


def training_steps_per_second(model: ScoreModel, size: int, batch: int, steps: int, device: torch.device) -> float:
    data = phantoms("mixed", 4 * batch, size, seed=1000)
    model.requires_grad_(True)
    train(model, data, TrainingConfig(steps=2, batch_size=batch, warmup_steps=0), device=device, progress=False)
    synchronize(device)
    result = train(model, data, TrainingConfig(steps=steps, batch_size=batch, warmup_steps=0), device=device,
                   progress=False)
    synchronize(device)
    return steps / result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8, help="items per reconstruction call")
    parser.add_argument("--timing-steps", type=int, default=5, help="sampler steps timed")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=5, help="training steps timed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    args = parser.parse_args()
    limit_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"

    print(machine_line())
    print(f"Device: {name}. Command: python benchmarks/throughput.py --device {args.device} "
          f"--sizes {' '.join(map(str, args.sizes))} --batch {args.batch}\n")
    print("| size | parameters | training steps/s (batch {0}) | images/s, noise-free defaults (batch {1}) | "
          "images/s, 1% noise defaults (batch {1}) |".format(args.train_batch, args.batch))
    print("|---|---|---|---|---|")
    for size in args.sizes:
        torch.manual_seed(0)
        model = ScoreModel(config_at(size)).to(device)
        parameters = sum(p.numel() for p in model.parameters())
        train_rate = training_steps_per_second(model, size, args.train_batch, args.train_steps, device)
        model.eval().requires_grad_(False)
        rates = [reconstruction_images_per_second(model, size, args.batch, args.timing_steps, noise, device)
                 for noise in (0.0, 0.01)]
        print(f"| {size}² | {parameters / 1e6:.2f}M | {train_rate:.2f} | "
              + " | ".join(f"{rate:.3f} ({label})" for rate, label in rates) + " |", flush=True)

if __name__ == "__main__":
    main()
