"""The CT patch prior's design choices, measured: its noise range, patch size and network width.

    OMP_NUM_THREADS=1 python benchmarks/patch_prior_choices.py --pool runs/ct-patch-pool-720.pt
    OMP_NUM_THREADS=1 python benchmarks/patch_prior_choices.py --pool runs/ct-patch-pool-720.pt \\
        --variants 64:24 32:24 64:16 32:24:1600 --steps 400

Part 1, the noise range. A VE prior's σ_max should reach the largest distance between two
training inputs (Song & Ermon 2020, technique 1), or the prior's samples at σ_max are not yet
independent of the data. The table gives, for each image size N the prior serves, the largest
L2 distance between two 64² patches (what a patch prior's network sees) and between two whole
N² images of the training pool (what a whole-image prior would have to cover).

Part 2, the architecture. Each ``P:W`` variant (patch size P, U-Net base width W; ``P:W:S`` for S
steps) trains from scratch on the same pool, seed and batches for ``--steps`` steps (batch
``--batch-size``), then
its EMA weights are scored on patches of held-out validation anatomy phantoms (seed 5·10⁶,
rendered at 512² and area-averaged to 256²) by the denoising score-matching error
E‖σ s_θ(x + σz, σ) + z‖² / (P²) at the noise levels a reconstruction visits (σ ≤ 2 from the
part-way start). Lower is better; the seconds per training step are from the same run.
The training pool file is the one ``examples/train_prior.py ct-patch --pool-cache`` writes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _machine import limit_threads, machine_line

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from train_prior import patch_model_config  # noqa: E402

from scoreinv.config import TrainingConfig  # noqa: E402
from scoreinv.datasets import phantoms  # noqa: E402
from scoreinv.distributed import world  # noqa: E402
from scoreinv.models import ScoreModel  # noqa: E402
from scoreinv.training import _PatchBatches, train  # noqa: E402

VALIDATION_SEED = 5_000_000
NOISE_LEVELS = (0.02, 0.1, 0.5, 2.0)


def largest_distance(items: torch.Tensor, chunk: int = 256) -> float:
    """max ‖a − b‖₂ over pairs of rows of ``items`` (M, D), in float64 blocks."""
    flat = items.reshape(items.shape[0], -1).double()
    return max(float(torch.cdist(flat[i:i + chunk], flat).max()) for i in range(0, flat.shape[0], chunk))


def noise_range_table(pool: torch.Tensor, patch: int, patches_per_size: int) -> None:
    print(f"| N | largest distance, two {patch}² patches | largest distance, two whole N² images |")
    print("|---|---:|---:|")
    generator = torch.Generator().manual_seed(0)
    source = pool.shape[-1]
    for size in (64, 128, 256, 512):
        factor = source // size
        images = torch.cat([F.avg_pool2d(pool[i:i + 32].float(), factor) if factor > 1 else pool[i:i + 32].float()
                            for i in range(0, pool.shape[0], 32)])
        which = torch.randint(images.shape[0], (patches_per_size,), generator=generator)
        corners = torch.randint(size - patch + 1, (patches_per_size, 2), generator=generator)
        patches = torch.stack([images[i, :, r:r + patch, c:c + patch] for i, (r, c) in zip(which.tolist(),
                                                                                           corners.tolist())])
        print(f"| {size} | {largest_distance(patches):.1f} | {largest_distance(images):.1f} |", flush=True)


def validation_error(model: ScoreModel, batches: _PatchBatches, rounds: int) -> dict[float, float]:
    """Mean E‖σ s + z‖² per pixel at each noise level, on the same validation patches for every model."""
    errors: dict[float, float] = {}
    with torch.no_grad():
        for sigma in NOISE_LEVELS:
            total = 0.0
            for k in range(rounds):
                x0, positions, _, _ = batches.batch(k)
                z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(k))
                t = model.sde.time_at_noise_level(torch.full((x0.shape[0],), sigma))
                score = model(x0 + sigma * z, t, positions)
                total += float(((sigma * score + z) ** 2).mean())
            errors[sigma] = total / rounds
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, required=True, help="the ct-patch training pool (M, 1, 512, 512)")
    parser.add_argument("--variants", nargs="*", default=[],
                        help="P:W[:S], patch size, base width and (default --steps) steps, e.g. 64:24 or 32:24:1600")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patches", type=int, default=2000, help="patches per size for the distance table")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    limit_threads(args.threads)
    pool = torch.load(args.pool, weights_only=True)
    print(f"# training pool: {tuple(pool.shape)}\n# {machine_line()}\n")
    noise_range_table(pool, 64, args.patches)
    if not args.variants:
        return
    validation = phantoms("anatomy", 8, 512, seed=VALIDATION_SEED)
    print(f"\n| patch | width | steps | parameters | s / step | " + " | ".join(f"error at σ = {s:g}" for s in NOISE_LEVELS)
          + " | mean |")
    print("|---|---|---:|---:|---:|" + "---:|" * (len(NOISE_LEVELS) + 1))
    for variant in args.variants:
        patch, width, *rest = (int(part) for part in variant.split(":"))
        steps = rest[0] if rest else args.steps
        config = patch_model_config(patch)
        config = config.model_copy(update={"unet": config.unet.model_copy(update={"base_channels": width})})
        model = ScoreModel(config, seed=0)
        training = TrainingConfig(steps=steps, batch_size=args.batch_size, learning_rate=5e-4,
                                  warmup_steps=min(200, steps // 3), ema_decay=0.999, seed=0)
        started = time.perf_counter()
        result = train(model, pool, training, checkpoint_path=None, progress=False)
        seconds = (time.perf_counter() - started) / steps
        result.ema.copy_to(model)
        model.eval()
        held_out = _PatchBatches(F.avg_pool2d(validation, 2), model,
                                 TrainingConfig(batch_size=32, seed=1), torch.device("cpu"), world())
        held_out.factors = [1]  # the validation slices at 256², the benchmarks' size
        errors = validation_error(model, held_out, rounds=4)
        parameters = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {patch} | {width} | {steps} | {parameters:.2f}M | {seconds:.2f} | "
              + " | ".join(f"{errors[s]:.4f}" for s in NOISE_LEVELS) + f" | {sum(errors.values()) / len(errors):.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
