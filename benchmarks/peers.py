"""Sparse-view CT: scoreinv beside DeepInverse's diffusion solvers, all on the bundled CT prior.

    OMP_NUM_THREADS=1 python benchmarks/peers.py --n 50           # the documented table
    OMP_NUM_THREADS=1 python benchmarks/peers.py --n 2 --quick    # smoke run, small grids

Needs DeepInverse (``pip install -e ".[peers]"`` beside the CPU torch; see docs/benchmarks.md,
"Against DeepInverse's samplers on our prior").

The same score network serves every sampler. DeepInverse's solvers call a Gaussian denoiser
D(x, σ) on images in [0, 1] with σ the noise std in those units; ours is Tweedie's formula on
the VE prior, D(x, σ) = x + σ² s(x, t(σ)), with t(σ) = ``model.sde.time_at_noise_level(σ)``
and σ clipped to the prior's [σ_min, σ_max] = [0.01, 64] (beyond σ_max the network's input
is out of its training range, and the denoiser of σ_max, which already returns about the data
mean, is the stable choice). DiffPIR and DPS (``minus_one_one=True``, DeepInverse's default)
carry their states in [-1, 1] and convert to [0, 1] (halving σ) before every denoiser call, so
the prior sees its own value range. ``RadonOp(23, image_size=64)`` enters as a
``LinearPhysics`` (A = op.forward, A_adjoint = op.adjoint, Gaussian noise of the operator's std).

Rows: data set (held-out ``phantoms("ellipses"/"chest", n, 64, seed=10⁶+1 / 10⁶+2)`` and
Shepp–Logan) × noise level (none, 1% of the sinogram peak, as benchmarks/quality.py) × method:
FBP, SIRT-300, DiffPIR at ``--diffpir-steps``, DPS at ``--dps-steps``, one chain of scoreinv's
decomposed sampler at ``--evals`` and scoreinv's defaults (with noise, the mean of several chains;
its evaluations count all of them). DiffPIR's (λ, ζ) and DPS's step size are
chosen per noise level by the best mean PSNR on 4 validation phantoms per family
(seed 5·10⁶): (λ, ζ) on a grid at the smallest DiffPIR step count, then λ refined at each
other step count; DPS's weight on a grid at its step count. DiffPIR starts from the FBP (its
default start, 2·Aᵀy − 1, is off scale for a Radon operator; the start is drowned in noise
of σ ≈ 157 at the first step anyway). Noise-free data has no noise std for DiffPIR's ρ_t =
λσ_n²/σ_t², so it uses a nominal σ_n = 1% of the sinogram peak there (only λσ_n² matters).
Score evaluations are counted at the denoiser (DPS's also carry a backward pass each).
Prints a Markdown table; draws PSNR against score evaluations to ``--figure``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import time
from pathlib import Path

import torch
from _machine import limit_threads, machine_line
from quality import VALIDATION_SEED, shepp_logan, simulate

from scoreinv.app.demo import HELD_OUT_SEED
from scoreinv.checkpoint import load_model
from scoreinv.classical import sirt
from scoreinv.datasets.phantoms import phantoms
from scoreinv.metrics import psnr, ssim
from scoreinv.reconstruct import posterior, resolve_settings


def import_deepinv():
    """``deepinv``, importable beside a CPU-only torch.

    deepinv imports torchvision at start-up; PyPI's torchvision wheel links its compiled ops
    against CUDA torch libraries, so beside ``torch+cpu`` they fail to load and torchvision's
    unguarded fake-kernel registration for ``nms``/``qnms`` raises "operator torchvision::nms
    does not exist". Declaring those two operator schemas first lets torchvision import without
    its compiled ops, none of which the diffusion solvers use.
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None or importlib.util.find_spec("deepinv") is None:
        raise SystemExit('needs DeepInverse: pip install -e ".[peers]" (see docs/benchmarks.md)')
    library = next(Path(spec.origin).parent.glob("_C*.so"), None)
    try:
        torch.ops.load_library(str(library))
    except (OSError, RuntimeError, TypeError):
        for name in ("nms", "qnms"):
            torch.library.define(f"torchvision::{name}",
                                 "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import deepinv

    return deepinv


dinv = import_deepinv()


class ScoreDenoiser(dinv.models.Denoiser):
    """A scoreinv VE score model as DeepInverse's denoiser: D(x, σ) = x + σ² s(x, t(σ)).

    x: (B, C, H, W) in [0, 1]; σ: a number, a 0-d tensor or one per item, in the same units.
    ``calls`` counts score evaluations per item.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.sde = model.sde
        self.calls = 0

    def forward(self, x, sigma, *args, **kwargs):
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).detach().reshape(-1)
        sigma = sigma.expand(x.shape[0]).clamp(self.sde.sigma_min, self.sde.sigma_max)
        t = self.sde.time_at_noise_level(sigma).to(x.dtype)
        score = self.model(x, t)
        self.calls += 1
        return x + sigma.to(x.dtype).view(-1, 1, 1, 1) ** 2 * score


def radon_physics(operator):
    """``RadonOp`` as a DeepInverse ``LinearPhysics`` with the operator's Gaussian noise."""
    noise = dinv.physics.GaussianNoise(sigma=operator.noise_std) if operator.noise_std > 0 \
        else dinv.physics.ZeroNoise()
    return dinv.physics.LinearPhysics(A=operator.forward, A_adjoint=operator.adjoint, noise_model=noise)


def nominal_noise(operator, y) -> float:
    """DiffPIR's σ_n: the operator's noise std, or 1% of the sinogram peak for noise-free data."""
    return operator.noise_std if operator.noise_std > 0 else 0.01 * float(y.abs().max())


def run_diffpir(denoiser, operator, y, steps, lam, zeta):
    solver = dinv.sampling.DiffPIR(denoiser, dinv.optim.data_fidelity.L2(), sigma=nominal_noise(operator, y),
                                   max_iter=steps, zeta=zeta, lambda_=lam)
    denoiser.calls = 0
    torch.manual_seed(1)
    estimate = solver(y, radon_physics(operator), x_init=operator.pinv(y).clamp(0, 1))
    return estimate, denoiser.calls


def run_dps(denoiser, operator, y, steps, weight):
    solver = dinv.sampling.DPS(denoiser, schedule="ve", solver="ddpm", num_steps=steps, weight=weight,
                               rng=torch.Generator().manual_seed(1))
    denoiser.calls = 0
    estimate = solver(y, radon_physics(operator), x_init=(y.shape[0], 1, *operator.in_shape[-2:]), seed=1)
    return estimate.float(), denoiser.calls


def run_ours(model, operator, y, steps=None):
    """One decomposed chain of ``steps`` steps, or (None) the operator's defaults, which may average
    several chains; returns the estimate and the score evaluations per image over all chains."""
    overrides = {} if steps is None else {"method": "decomposed", "steps": steps, "num_samples": 1}
    result = posterior(y, operator, model, seed=0, progress=False, **overrides)
    return torch.as_tensor(result.mean), result.evaluations_per_item


def mean_psnr(estimate, truth) -> float:
    return float(psnr(estimate.detach().float().clamp(0, 1), truth).mean())


def tune(validation, noise, views, size, denoiser, args, log):
    """DiffPIR (λ, ζ) per step count and DPS weight, by the best mean validation PSNR."""
    operator, y = simulate(validation, noise, views, size)
    first, *rest = args.diffpir_steps
    scores = {}
    for lam, zeta in itertools.product(args.lambdas, args.zetas):
        scores[lam, zeta] = mean_psnr(run_diffpir(denoiser, operator, y, first, lam, zeta)[0], validation)
    log(f"DiffPIR-{first} (λ, ζ): " + ", ".join(f"{k}: {v:.2f}" for k, v in scores.items()))
    chosen = {first: max(scores, key=scores.get)}
    for steps in rest:
        lam0, zeta = chosen[first]
        scores = {(lam, zeta): mean_psnr(run_diffpir(denoiser, operator, y, steps, lam, zeta)[0], validation)
                  for lam in (lam0 / 3, lam0, lam0 * 3)}
        log(f"DiffPIR-{steps} (λ, ζ): " + ", ".join(f"{k}: {v:.2f}" for k, v in scores.items()))
        chosen[steps] = max(scores, key=scores.get)
    scores = {weight: mean_psnr(run_dps(denoiser, operator, y, args.dps_steps, weight)[0], validation)
              for weight in args.dps_weights}
    log(f"DPS-{args.dps_steps} weight: " + ", ".join(f"{k:g}: {v:.2f}" for k, v in scores.items()))
    return chosen, max(scores, key=scores.get)


def plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noises = sorted({r["noise"] for r in results})
    fig, axes = plt.subplots(1, len(noises), figsize=(5.2 * len(noises), 4), sharey=False, squeeze=False)
    for ax, noise in zip(axes[0], noises):
        rows = [r for r in results if r["noise"] == noise]
        # Pooled over all test images of the noise level (weighted by each data set's count).
        pooled = {}
        for r in rows:
            entry = pooled.setdefault((r["family"], r["evals"]), [0.0, 0])
            entry[0] += r["psnr_mean"] * r["count"]
            entry[1] += r["count"]
        curves = {}
        for (family, evals), (total, count) in pooled.items():
            curves.setdefault(family, []).append((evals, total / count))
        styles = {"scoreinv decomposed": ("C0", "o-"), "DiffPIR": ("C1", "s-"), "DPS": ("C2", "^"),
                  "scoreinv default": ("C3", "*")}
        for family, (colour, marker) in styles.items():
            if family in curves:
                points = sorted(curves[family])
                ax.plot(*zip(*points), marker, color=colour, label=family, markersize=10 if "*" in marker else 6)
        for family, style in (("FBP", ":"), ("SIRT-300", "--")):
            if family in curves:
                ax.axhline(curves[family][0][1], color="gray", linestyle=style, label=family)
        ax.set_xscale("log")
        ax.set_xlabel("score evaluations per image")
        ax.set_ylabel("PSNR (dB), mean over test images")
        ax.set_title("noise-free" if noise == 0 else f"Gaussian noise, {noise:.0%} of sinogram peak")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Sparse-view CT (23 views, 64²) on the bundled ct-phantom prior")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ct-phantom")
    parser.add_argument("--n", type=int, default=50, help="held-out images per phantom family")
    parser.add_argument("--views", type=int, default=23)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01])
    parser.add_argument("--evals", type=int, nargs="+", default=[10, 20, 50, 100],
                        help="scoreinv decomposed step counts (one score evaluation per step)")
    parser.add_argument("--diffpir-steps", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--dps-steps", type=int, default=100)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
                        help="DiffPIR λ grid (at the smallest step count)")
    parser.add_argument("--zetas", type=float, nargs="+", default=[0.1, 0.3, 1.0], help="DiffPIR ζ grid")
    parser.add_argument("--dps-weights", type=float, nargs="+", default=[0.3, 1.0, 3.0],
                        help="DPS step-size grid (guidance='norm')")
    parser.add_argument("--validation", type=int, default=4, help="validation phantoms per family")
    parser.add_argument("--sirt-iterations", type=int, default=300)
    parser.add_argument("--figure", type=Path, default=Path(__file__).parent.parent / "docs/figures/peers.png")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--quick", action="store_true", help="small grids and step counts (smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.evals, args.diffpir_steps, args.dps_steps = [10, 20], [10, 20], 20
        args.lambdas, args.zetas, args.dps_weights, args.validation = [0.1, 1.0], [0.3], [1.0], 1
    limit_threads(args.threads)

    def log(line: str) -> None:
        print(f"<!-- {line} -->", flush=True)

    model = load_model(args.model, device="cpu")
    size = model.image_size
    denoiser = ScoreDenoiser(model)
    data = {
        "ellipses": phantoms("ellipses", args.n, size, seed=HELD_OUT_SEED + 1),
        "chest": phantoms("chest", args.n, size, seed=HELD_OUT_SEED + 2),
        "Shepp–Logan": shepp_logan(size),
    }
    validation = torch.cat([phantoms(family, args.validation, size, seed=VALIDATION_SEED)
                            for family in ("ellipses", "chest")])
    print(f"# {size}², {args.views} views, model {args.model}, deepinv {dinv.__version__}\n"
          f"# {machine_line()}\n")
    chosen = {}
    for noise in args.noise:
        started = time.perf_counter()
        chosen[noise] = tune(validation, noise, args.views, size, denoiser, args, log)
        log(f"noise {noise:.0%}: chosen DiffPIR (λ, ζ) {chosen[noise][0]}, DPS weight {chosen[noise][1]:g} "
            f"({time.perf_counter() - started:.0f} s)")

    print("| data | noise | method | score evals | PSNR (dB) | SSIM | s / image |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for noise in args.noise:
        diffpir_weights, dps_weight = chosen[noise]
        for name, truth in data.items():
            operator, y = simulate(truth, noise, args.views, size)
            settings = resolve_settings(operator)
            methods = [("FBP", "FBP", lambda: (operator.pinv(y), 0)),
                       (f"SIRT-{args.sirt_iterations}", f"SIRT-{args.sirt_iterations}",
                        lambda: (sirt(operator, y, args.sirt_iterations), 0))]
            for steps in args.diffpir_steps:
                lam, zeta = diffpir_weights[steps]
                methods.append((f"DiffPIR, {steps} steps (λ={lam:g}, ζ={zeta:g})", "DiffPIR",
                                lambda steps=steps, lam=lam, zeta=zeta: run_diffpir(denoiser, operator, y, steps,
                                                                                   lam, zeta)))
            methods.append((f"DPS, {args.dps_steps} steps (weight {dps_weight:g})", "DPS",
                            lambda: run_dps(denoiser, operator, y, args.dps_steps, dps_weight)))
            for steps in args.evals:
                methods.append((f"scoreinv decomposed, {steps} steps", "scoreinv decomposed",
                                lambda steps=steps: run_ours(model, operator, y, steps)))
            chains = f"{settings.num_samples} × {settings.steps}" if settings.num_samples > 1 else f"{settings.steps}"
            methods.append((f"scoreinv default ({settings.method}, {chains} steps)", "scoreinv default",
                            lambda: run_ours(model, operator, y)))
            for label, family, method in methods:
                started = time.perf_counter()
                estimate, evals = method()
                seconds = (time.perf_counter() - started) / len(truth)
                estimate = estimate.detach().float().cpu().clamp(0, 1)
                quality_psnr, quality_ssim = psnr(estimate, truth), ssim(estimate, truth)
                std = f" ± {quality_psnr.std():.2f}" if len(truth) > 1 else ""
                print(f"| {name} ({len(truth)}) | {noise:.0%} | {label} | {evals or '—'} | "
                      f"{quality_psnr.mean():.2f}{std} | {quality_ssim.mean():.3f} | {seconds:.2f} |", flush=True)
                results.append({"data": name, "count": len(truth), "noise": noise, "method": label,
                                "family": family, "evals": evals, "psnr_mean": float(quality_psnr.mean()),
                                "psnr_std": float(quality_psnr.std()) if len(truth) > 1 else 0.0,
                                "ssim_mean": float(quality_ssim.mean()), "seconds_per_image": seconds})
    if args.json:
        args.json.write_text(json.dumps({"chosen": {str(k): [{str(s): w for s, w in v[0].items()}, v[1]]
                                                    for k, v in chosen.items()}, "rows": results}, indent=1))
    if args.figure:
        plot(results, args.figure)
        print(f"\n<!-- figure: {args.figure} -->")


if __name__ == "__main__":
    main()
