"""Two training recipes at equal CPU steps: the VE / uniform-t / std-scaled recipe against EDM.

    # train both (one thread each; they can run side by side), then compare them
    python benchmarks/training_recipes.py train --recipe std --steps 1500 --out runs/recipe-std.pt
    python benchmarks/training_recipes.py train --recipe edm --steps 1500 --out runs/recipe-edm.pt
    python benchmarks/training_recipes.py compare runs/recipe-std.pt runs/recipe-edm.pt

Both runs share everything but the recipe: the U-Net (0.86M parameters, the bundled CT prior's),
the VE SDE (σ 0.01 … 64), the data pool (``--data``, generated from seed 1000), batch 32,
AdamW 5e-4 with 200 warm-up steps, EMA 0.999 with warm-up, seed 0.

* ``std``: s = UNet(x, t)/std(t), t ~ U(eps, 1), λ = std² (the recipe of the bundled priors);
* ``edm``: Karras et al. (2022) preconditioning with σ_d = the pool's pixel std, log-normal
  noise levels ln σ ~ N(−1.2 + ln 2σ_d, 1.2²) (EDM's law rescaled from σ_d = 0.5), EDM weighting.

``compare`` measures, on held-out images (seeds ≥ 10⁶) of the same family:

* the held-out DSM loss with the *same* weighting for both (λ = std², t ~ U(eps, 1); 4 fixed
  draws of (t, z) per image), i.e. the mean squared error of std·s + z;
* bits/dim through the probability-flow ODE (Hutchinson, 256 levels, offset 8);
* 23-view CT PSNR / SSIM with the reconstruction defaults of the time, noise-free, beside FBP.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from scoreinv.checkpoint import load_model
from scoreinv.config import ModelConfig, SDEConfig, TrainingConfig, UNetConfig
from scoreinv.datasets import phantoms
from scoreinv.losses import dsm_draws, dsm_loss
from scoreinv.models import ScoreModel
from scoreinv.training import edm_training_options, train

TRAINING_SEED = 1000
HELD_OUT_SEED = 10**6 + 500


def model_config(recipe: str, sigma_data: float, size: int = 64) -> ModelConfig:
    return ModelConfig(
        sde=SDEConfig(kind="ve", sigma_min=0.01, sigma_max=64.0),
        unet=UNetConfig(image_size=size, channels=1, base_channels=24, channel_multipliers=(1, 2, 2, 2),
                        num_res_blocks=1, attention_resolutions=(size // 8,)),
        preconditioning="std" if recipe == "std" else "edm",
        sigma_data=sigma_data,
    )


def training_config(recipe: str, steps: int, sigma_data: float) -> TrainingConfig:
    common = dict(steps=steps, batch_size=32, learning_rate=5e-4, warmup_steps=200, ema_decay=0.999,
                  checkpoint_every=100, seed=0)
    if recipe == "std":
        return TrainingConfig(**common)
    return TrainingConfig(**common, **edm_training_options(sigma_data))


def command_train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    pool = phantoms(args.data, args.pool, 64, seed=TRAINING_SEED)
    sigma_data = float(pool.std())
    model = ScoreModel(model_config(args.recipe, sigma_data), seed=0)
    config = training_config(args.recipe, args.steps, sigma_data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = train(model, pool, config, checkpoint_path=args.out, progress=False)
    print(f"{args.recipe}: step {result.step}, {result.seconds:.0f} s this call, σ_d = {sigma_data:.3f}")


def held_out_dsm(model: ScoreModel, images: torch.Tensor, repeats: int = 4) -> float:
    losses = []
    with torch.no_grad():
        for repeat in range(repeats):
            generator = torch.Generator().manual_seed(repeat)
            draws = dsm_draws(model.sde, tuple(images.shape), generator, images)
            losses.append(float(dsm_loss(model, model.sde, images, draws=draws)))
    return sum(losses) / len(losses)


def command_compare(args: argparse.Namespace) -> None:
    from scoreinv.likelihood import log_likelihood
    from scoreinv.metrics import psnr, ssim
    from scoreinv.operators import RadonOp
    from scoreinv.reconstruct import posterior

    torch.set_num_threads(args.threads)
    images = phantoms(args.data, args.n, 64, seed=HELD_OUT_SEED)
    operator = RadonOp(23, image_size=64)
    y = operator(images)
    fbp = operator.pinv(y)
    rows = []
    for path in args.checkpoints:
        model = load_model(path)
        started = time.perf_counter()
        dsm = held_out_dsm(model, images)
        likelihood = log_likelihood(model, images[: args.likelihood_images], progress=False,
                                    generator=torch.Generator().manual_seed(0))
        bpd = likelihood.bpd
        result = posterior(y[: args.ct_images], operator, model, seed=0, progress=False)
        truth = images[: args.ct_images]
        ct_psnr, ct_ssim = psnr(result.mean, truth), ssim(result.mean, truth)
        rows.append((Path(path).stem, model.config.preconditioning, dsm, float(bpd.mean()), float(bpd.std()),
                     float(ct_psnr.mean()), float(ct_psnr.std()), float(ct_ssim.mean()),
                     time.perf_counter() - started, result.settings["method"], result.nfe))
    fbp_psnr = psnr(fbp[: args.ct_images], images[: args.ct_images])
    print(f"{args.n} held-out {args.data} phantoms (seed {HELD_OUT_SEED}), 64²; bits/dim on "
          f"{args.likelihood_images}, CT on {args.ct_images} (23 views, noise-free; FBP "
          f"{fbp_psnr.mean():.2f} ± {fbp_psnr.std():.2f} dB)")
    print("| run | preconditioning | held-out DSM (std²) | bits/dim | CT PSNR (dB) | CT SSIM | method, NFE | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kind, dsm, bpd, bpd_std, p, p_std, s, seconds, method, nfe in rows:
        print(f"| {name} | {kind} | {dsm:.4f} | {bpd:.3f} ± {bpd_std:.3f} | {p:.2f} ± {p_std:.2f} | {s:.3f} | "
              f"{method}, {nfe} | {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    trainer = commands.add_parser("train")
    trainer.add_argument("--recipe", choices=["std", "edm"], required=True)
    trainer.add_argument("--steps", type=int, default=1500)
    trainer.add_argument("--out", type=Path, required=True)
    trainer.add_argument("--data", default="mixed")
    trainer.add_argument("--pool", type=int, default=6000)
    trainer.add_argument("--threads", type=int, default=1)
    compare = commands.add_parser("compare")
    compare.add_argument("checkpoints", nargs="+", type=Path)
    compare.add_argument("--data", default="mixed")
    compare.add_argument("--n", type=int, default=64, help="held-out images for the DSM loss")
    compare.add_argument("--likelihood-images", type=int, default=8)
    compare.add_argument("--ct-images", type=int, default=6)
    compare.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    command_train(args) if args.command == "train" else command_compare(args)


if __name__ == "__main__":
    main()
