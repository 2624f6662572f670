"""The PC sampler's variance bias against the dimension, on Gaussian data with its exact score.

Data: diagonal Gaussian on a side × side image (D = side²), variances
linspace(v_lo, 1), means linspace(−0.5, 0.5), exact score (GaussianPrior).
VE SDE (σ_min, σ_max) = (0.01, 50), N = 500 time points, reverse-diffusion
predictor, 2000 samples. For each sampler the table gives the per-pixel ratio
sample variance / true variance (mean, min and max over the D pixels) and the
largest |mean error| / std.

* predictor only;
* + ``langevin``, snr r = 0.16: ε = 2 (r ‖z‖ / ‖s‖)² per item, norms over the image;
* + ``annealed_langevin``, snr r = 0.16: ε = 2 (r σ_t)².

With ``--diagnose`` two more correctors (defined here, registered for this run
only) separate the two ways the SNR step depends on the state:

* ``langevin-indep-z``: as ``langevin`` but ‖z‖ from a second, independent draw
  (the step no longer scales with the very noise it multiplies);
* ``langevin-mean-norms``: ‖z‖² → D and ‖s‖² → E‖s‖² = tr Σ_t⁻¹ (no state dependence).

Statistical noise with n = 2000: a per-pixel variance ratio has standard error
√(2/(n−1)) ≈ 3.2%, so the mean over D pixels ≈ 3.2%/√D and the max over D pixels
sits a few standard errors above 1 even without bias.

Run:  python benchmarks/langevin_bias.py [--quick] [--sides 4,8,16] [--v-lo 0.05] [--diagnose]
"""

from __future__ import annotations

import argparse
import time

import torch
from _machine import limit_threads, machine_line

from scoreinv.gaussian import GaussianPrior
from scoreinv.sampling import CORRECTORS, LangevinCorrector, pc_sample
from scoreinv.sde import VESDE


class IndependentNormLangevin(LangevinCorrector):
    """SNR Langevin whose ‖z‖ comes from an independent draw (diagnostic)."""

    name = "langevin-indep-z"

    def step_size(self, score, noise, t, dt):
        other = torch.randn(noise.shape, dtype=noise.dtype, device=noise.device)
        return super().step_size(score, other, t, dt)


class MeanNormLangevin(LangevinCorrector):
    """SNR Langevin with ‖z‖² → D and ‖s‖² → tr Σ_t⁻¹ = E‖s‖² (diagnostic; needs .prior)."""

    name = "langevin-mean-norms"
    prior: GaussianPrior | None = None

    def step_size(self, score, noise, t, dt):
        prior = MeanNormLangevin.prior
        std = self.sde.marginal_std(t).to(torch.float64)[:, None]
        mean_sq_score = (1 / (prior.eigenvalues[None] + std**2)).sum(dim=1)
        dims = noise[0].numel()
        return (2 * self.alpha(t, dt) * self.snr**2 * dims / mean_sq_score).to(score.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sides 4 and 8, 200 steps, 1000 samples")
    parser.add_argument("--sides", default=None, help="comma-separated image sides (default 4,8,16)")
    parser.add_argument("--steps", type=int, default=None, help="N (default 500)")
    parser.add_argument("--samples", type=int, default=None, help="n (default 2000)")
    parser.add_argument("--v-lo", type=float, default=0.05, help="smallest data variance (default 0.05)")
    parser.add_argument("--snr", type=float, default=0.16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--diagnose", action="store_true", help="add the two diagnostic correctors")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()

    limit_threads(args.threads)
    torch.manual_seed(args.seed)  # the langevin-indep-z diagnostic draws its extra ‖z‖ from the global RNG
    sides = [int(s) for s in (args.sides or ("4,8" if args.quick else "4,8,16")).split(",")]
    steps = args.steps or (200 if args.quick else 500)
    n = args.samples or (1000 if args.quick else 2000)
    sde = VESDE(0.01, 50.0)
    samplers = [("predictor only", "none"), (f"+ langevin, snr {args.snr}", "langevin"),
                (f"+ annealed_langevin, snr {args.snr}", "annealed_langevin")]
    if args.diagnose:
        CORRECTORS[IndependentNormLangevin.name] = IndependentNormLangevin
        CORRECTORS[MeanNormLangevin.name] = MeanNormLangevin
        samplers += [(f"+ langevin, ‖z‖ independent, snr {args.snr}", IndependentNormLangevin.name),
                     (f"+ langevin, mean norms, snr {args.snr}", MeanNormLangevin.name)]

    print(machine_line())
    print(f"SDE: {sde}; reverse_diffusion predictor, N = {steps}, n = {n} samples, "
          f"variances linspace({args.v_lo}, 1), means linspace(-0.5, 0.5), seed {args.seed}\n")
    print("| D | sampler | NFE | var ratio mean | var ratio min | var ratio max | max mean err / std | s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for side in sides:
        dims = side * side
        mean = torch.linspace(-0.5, 0.5, dims).reshape(1, side, side)
        variance = torch.linspace(args.v_lo, 1.0, dims).reshape(1, side, side)
        prior = GaussianPrior(sde, mean, variance)
        MeanNormLangevin.prior = prior
        for label, corrector in samplers:
            start = time.perf_counter()
            result = pc_sample(prior, sde, (n, 1, side, side), steps=steps, corrector=corrector,
                               snr=args.snr, generator=torch.Generator().manual_seed(args.seed),
                               progress=False)
            seconds = time.perf_counter() - start
            x = result.samples.double()
            ratio = x.var(0) / variance
            mean_error = ((x.mean(0) - mean).abs() / variance.sqrt()).max().item()
            print(f"| {dims} | {label} | {result.nfe} | {ratio.mean():.3f} | {ratio.min():.3f} "
                  f"| {ratio.max():.3f} | {mean_error:.3f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
