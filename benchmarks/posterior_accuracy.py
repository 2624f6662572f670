"""How close are the conditional samplers to the exact posterior?  Gaussian priors, closed forms.

A Gaussian prior with a correlated (squared-exponential) covariance and its exact score
(:class:`scoreinv.gaussian.GaussianPrior`, VE SDE (0.01, 20)) makes every posterior
p(x | y) Gaussian and known (benchmarks/_closed_form.py). Each method draws S samples
per measurement with :func:`scoreinv.solvers.conditional_sample` (reverse-diffusion
predictor + 1 Langevin corrector, NFE = 2 × steps); their mean and per-pixel std are
compared with the analytic ones:

* mean err: ‖m̂ − m‖ / ‖m‖;
* std err: mean over the pixels not fixed by the data of |ŝ − s| / s;
* std ratio: mean of ŝ / s over the same pixels (< 1: samples too narrow).

The first row of every table, "exact posterior draws", is S exact samples of the analytic
posterior: the Monte Carlo floor that no sampler can beat with S samples.

Problems (noiseless unless stated; one measurement of a prior draw):

* inpainting: MaskOp, 50% of the pixels kept at random, 8×8 (ℓ = 2) and 16×16 (ℓ = 3);
* sparse-view CT: RadonOp(8, image_size=16) (ℓ = 3, 184 full views) and RadonOp(16, 32)
  (ℓ = 5, 192 full views);
* colorization: GrayscaleOp on 3×8×8 (ℓ = 2, channel correlation ρ^|i−j|, ρ = 0.8);
* noisy CT: RadonOp(8, 16) with Gaussian noise σ_y = 1% and 5% of the clean sinograms'
  largest value, three measurements, analytic posterior with σ_y².

The noiseless CT tables have one more column: the same samples against the posterior of the
same sinogram with σ_y = 0.4% of its peak. A sparse-view Radon matrix has a tail of tiny
singular values (~1e-2 of ~10); the noiseless posterior pins those directions exactly, a
sampler only to the precision of its last steps, and this tiny noise level frees them.

Methods:

* replacement: λ = 1 with the exact T⁻¹ (MaskOp, GrayscaleOp);
* consistency λ, CG-k, δ: λ-consistency steps (residual form) then a final least-squares
  projection, k conjugate-gradient iterations with damping δ;
* consistency λ, exact final (k = 0): the final step is x + T⁻¹Λᵀ(y − Ax), exact for
  MaskOp/GrayscaleOp, FBP-based for RadonOp ("FBP final");
* consistency λ, no final step (benchmark only): the state after the Tweedie denoising;
* guidance ζ: DPS with the self-normalised variance s² = max(σ_y², ‖y − A x̂₀‖²/M).

Run:  python benchmarks/posterior_accuracy.py [--quick] [--threads 1]
(full: about 5 minutes on 2 shared cores; --quick 20 s)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from _closed_form import (
    GaussianPosterior,
    analytic_posterior,
    correlated_prior,
    dense_matrix,
    posterior_errors,
)
from _machine import limit_threads, machine_line

from scoreinv.gaussian import GaussianPrior
from scoreinv.operators import GrayscaleOp, LinearOperator, MaskOp, RadonOp
from scoreinv.sampling import pc_sample
from scoreinv.reconstruct import resolve_settings
from scoreinv.solvers import MeasurementConsistency, conditional_sample


class NoFinalStep(MeasurementConsistency):
    """λ-consistency steps, no final projection: returns the denoised state as it is."""

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class Row:
    label: str
    method: str
    steps: int = 500
    snr: float = 0.16
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Problem:
    title: str
    prior: GaussianPrior
    operator: LinearOperator
    y: torch.Tensor
    truth: GaussianPosterior
    unknown: torch.Tensor | None
    rows: list[Row]
    samples: int
    note: str = ""
    reference: GaussianPosterior | None = None
    reference_label: str = ""


def sample_summary(problem: Problem, row: Row, samples: int, seed: int):
    """Sample mean and std (B, D), NFE and seconds of one method on one problem."""
    items = problem.y.shape[0]
    repeated = problem.y.repeat_interleave(samples, dim=0)
    generator = torch.Generator().manual_seed(seed)
    if row.method == "no-final":
        conditioning = NoFinalStep(problem.prior.sde, problem.operator, repeated,
                                   row.options.get("weight", 1.0))
        shape = (repeated.shape[0], *problem.operator.in_shape)
        result = pc_sample(problem.prior, problem.prior.sde, shape, steps=row.steps, snr=row.snr,
                           generator=generator, conditioning=conditioning, progress=False)
    else:
        settings = resolve_settings(problem.operator, method=row.method, steps=row.steps, snr=row.snr,
                                    **row.options)
        result = conditional_sample(problem.prior, problem.prior.sde, problem.operator, repeated, settings,
                                    generator=generator, progress=False)
    drawn = result.samples.double().reshape(items, samples, -1)
    if not torch.isfinite(drawn).all():
        raise RuntimeError(f"{problem.title}, {row.label}: non-finite samples")
    return drawn.mean(dim=1), drawn.std(dim=1), result.nfe, result.seconds


def run_problem(problem: Problem, seed: int, scale: float = 1.0) -> None:
    samples = max(8, round(problem.samples * scale))
    print(f"\n**{problem.title}**, S = {samples} samples per measurement, "
          f"{problem.y.shape[0]} measurement(s){problem.note}\n")
    extra = problem.reference is not None
    head = f" {problem.reference_label}: mean / std err |" if extra else ""
    print(f"| method | steps | snr | mean err | std err | std ratio | NFE | s |{head}")
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if extra else ""))

    def cells(mean, std):
        err = posterior_errors(mean, std, problem.truth, problem.unknown)
        text = f"{err.mean:.3f} | {err.std:.3f} | {err.ratio:.2f}"
        if extra:
            ref = posterior_errors(mean, std, problem.reference, problem.unknown)
            return text, f" {ref.mean:.3f} / {ref.std:.3f} |"
        return text, ""

    draws = problem.truth.sample(samples, torch.Generator().manual_seed(seed))
    text, tail = cells(draws.mean(dim=1), draws.std(dim=1))
    if extra:  # the floor against the reference: exact draws of the reference posterior
        ref_draws = problem.reference.sample(samples, torch.Generator().manual_seed(seed))
        ref = posterior_errors(ref_draws.mean(dim=1), ref_draws.std(dim=1), problem.reference, problem.unknown)
        tail = f" {ref.mean:.3f} / {ref.std:.3f} (its own draws) |"
    print(f"| exact posterior draws | – | – | {text} | – | – |{tail}", flush=True)
    for row in problem.rows:
        mean, std, nfe, seconds = sample_summary(problem, row, samples, seed)
        text, tail = cells(mean, std)
        print(f"| {row.label} | {row.steps} | {row.snr:g} | {text} | {nfe} | {seconds:.1f} |{tail}", flush=True)


def measured(prior: GaussianPrior, operator: LinearOperator, items: int, seed: int,
             noisy: LinearOperator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth x (items drawn from the prior) and y = A x (+ noise of ``noisy``)."""
    x = prior.sample(items, torch.Generator().manual_seed(seed)).float()
    if noisy is None:
        return x, operator(x)
    return x, noisy.simulate(x, torch.Generator().manual_seed(seed + 100))


def grid(method: str, label: str, steps_list, snrs, **options) -> list[Row]:
    return [Row(label, method, steps, snr, dict(options)) for steps in steps_list for snr in snrs]


def noiseless_problems(quick: bool) -> list[Problem]:
    problems = []
    main = 200 if quick else 500  # the steps of the rows that are not a steps × snr grid
    many_steps = (main,) if quick else (200, 500, 1000)
    many_snrs = (0.16,) if quick else (0.16, 0.3)
    zetas = (1.0,) if quick else (0.3, 1.0, 3.0)

    def guidance_rows(scales=zetas):
        return [Row(f"guidance ζ = {z:g}", "guidance", main, 0.16, {"guidance_scale": z}) for z in scales]

    # inpainting
    for side, scale in ((8, 2.0), (16, 3.0)):
        if quick and side == 16:
            continue
        prior = correlated_prior(side, scale)
        operator = MaskOp(image_size=side, fraction=0.5, generator=torch.Generator().manual_seed(1))
        _, y = measured(prior, operator, 1, seed=0)
        truth = analytic_posterior(prior, dense_matrix(operator), y, 0.0)
        if side == 8:
            rows = grid("replacement", "replacement", many_steps, many_snrs)
        else:
            rows = [Row("replacement", "replacement", steps, snr) for steps, snr in ((500, 0.16), (500, 0.3), (1000, 0.16))]
        rows += [
            Row("consistency λ = 1, CG-20", "consistency", main, 0.16, {"weight": 1.0}),
            Row("consistency λ = 0.841, CG-20", "consistency", main, 0.16, {"weight": 0.841}),
            Row("consistency λ = 0.841, exact final", "consistency", main, 0.16,
                {"weight": 0.841, "final_iterations": 0}),
        ]
        rows += guidance_rows() if side == 8 else guidance_rows((1.0,))
        problems.append(Problem(f"Inpainting {side}×{side}, 50% of the pixels kept (ℓ = {scale:g})", prior,
                                operator, y, truth, operator.mask.flatten() == 0, rows, samples=400,
                                note="; consistency λ = 1 with the exact final step is replacement"))

    # sparse-view CT
    for views, side, scale in ((8, 16, 3.0), (16, 32, 5.0)):
        if quick and side == 32:
            continue
        prior = correlated_prior(side, scale)
        operator = RadonOp(views, image_size=side)
        matrix = dense_matrix(operator)
        _, y = measured(prior, operator, 1, seed=2)
        truth = analytic_posterior(prior, matrix, y, 0.0)
        # noiseless sparse-view CT pins directions of singular value ~1e-2 (of ~10); a tiny noise
        # level frees them: the posterior of σ_y = 0.4% of the sinogram peak, for comparison
        reference_std = 0.004 * y.abs().max().item()
        reference = analytic_posterior(prior, matrix, y, reference_std)
        if side == 16:
            rows = grid("consistency", "consistency λ = 1, CG-20", many_steps, many_snrs, weight=1.0)
            rows.append(Row("consistency λ = 1, CG-20", "consistency", main, 0.246, {"weight": 1.0}))
            rows += [
                Row("consistency λ = 1, FBP final", "consistency", main, 0.16, {"weight": 1.0, "final_iterations": 0}),
                Row("consistency λ = 1, no final step", "no-final", main, 0.16, {"weight": 1.0}),
                Row("consistency λ = 0.841, CG-20", "consistency", main, 0.16, {"weight": 0.841}),
                Row("consistency λ = 0.841, FBP final", "consistency", main, 0.16,
                    {"weight": 0.841, "final_iterations": 0}),
            ]
            rows += guidance_rows()
        else:
            rows = [
                Row("consistency λ = 1, CG-20", "consistency", main, 0.16, {"weight": 1.0}),
                Row("consistency λ = 1, FBP final", "consistency", main, 0.16, {"weight": 1.0, "final_iterations": 0}),
                Row("consistency λ = 0.841, CG-20", "consistency", main, 0.16, {"weight": 0.841}),
            ] + guidance_rows((1.0,))
        problems.append(Problem(f"Sparse-view CT, RadonOp({views}, image_size={side}), "
                                f"{operator.full_views} full views (ℓ = {scale:g})",
                                prior, operator, y, truth, None, rows, samples=200 if side == 16 else 100,
                                reference=reference, reference_label=f"vs σ_y = {reference_std:.3f}"))

    # colorization
    prior = correlated_prior(8, 2.0, channels=3, channel_correlation=0.8)
    operator = GrayscaleOp(8)
    _, y = measured(prior, operator, 1, seed=3)
    truth = analytic_posterior(prior, dense_matrix(operator), y, 0.0)
    rows = grid("replacement", "replacement", many_steps, (0.16,))
    if not quick:
        rows.append(Row("replacement", "replacement", 500, 0.3))
    rows += [
        Row("consistency λ = 1, CG-20", "consistency", main, 0.16, {"weight": 1.0}),
        Row("consistency λ = 0.841, CG-20", "consistency", main, 0.16, {"weight": 0.841}),
        Row("consistency λ = 0.841, exact final", "consistency", main, 0.16, {"weight": 0.841, "final_iterations": 0}),
    ]
    rows += guidance_rows()
    problems.append(Problem("Colorization 3×8×8, GrayscaleOp (ℓ = 2, channel correlation 0.8)",
                            prior, operator, y, truth, None, rows, samples=200))
    return problems


def noisy_problems(quick: bool) -> list[Problem]:
    prior = correlated_prior(16, 3.0)
    clean = RadonOp(8, image_size=16)
    matrix = dense_matrix(clean)
    items = 3
    x, _ = measured(prior, clean, items, seed=2)
    peak = clean(x).abs().max().item()
    pixel_variance = prior.covariance().diagonal().mean().item()
    main = 200 if quick else 500
    problems = []
    for fraction in (0.01, 0.05):
        sigma = fraction * peak
        operator = RadonOp(8, image_size=16, noise_std=sigma)
        _, y = measured(prior, clean, items, seed=2, noisy=operator)
        truth = analytic_posterior(prior, matrix, y, sigma)
        bayes = sigma**2 / pixel_variance
        factors = (0, 1, 50) if quick else (0, 1, 10, 50)
        weights = (1.0, 0.5) if quick else (1.0, 0.841, 0.5)
        rows = []
        for weight in weights:
            for factor in factors:
                what = "" if factor == 0 else " (σ_y²/τ²)" if factor == 1 else f" ({factor} σ_y²/τ²)"
                rows.append(Row(f"consistency λ = {weight:g}, CG-20, δ = {factor * bayes:.3g}{what}",
                                "consistency", main, 0.246, {"weight": weight, "final_damping": factor * bayes}))
            if weight != 0.841 and not quick:
                rows.append(Row(f"consistency λ = {weight:g}, FBP final", "consistency", main, 0.246,
                                {"weight": weight, "final_iterations": 0}))
                rows.append(Row(f"consistency λ = {weight:g}, no final step", "no-final", main, 0.246,
                                {"weight": weight}))
        zetas = (1.0,) if quick else (0.3, 1.0, 3.0)
        rows += [Row(f"guidance ζ = {z:g}, σ_y", "guidance", main, 0.246, {"guidance_scale": z}) for z in zetas]
        if not quick:
            rows += [
                Row("guidance ζ = 1, σ_y", "guidance", 200, 0.246, {"guidance_scale": 1.0}),
                Row("guidance ζ = 1, σ_y", "guidance", 500, 0.16, {"guidance_scale": 1.0}),
                Row("guidance ζ = 1, σ_y = 0 given", "guidance", 500, 0.246,
                    {"guidance_scale": 1.0, "measurement_std": 0.0}),
            ]
        problems.append(Problem(
            f"Noisy sparse-view CT, RadonOp(8, 16), σ_y = {fraction:.0%} of the sinogram peak = {sigma:.4f}",
            prior, operator, y, truth, None, rows, samples=150,
            note=f"; τ² = {pixel_variance:.2f} (prior pixel variance), σ_y²/τ² = {bayes:.3g}"))
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer problems, rows and samples (about a minute)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--sample-scale", type=float, default=None,
                        help="multiply every problem's S by this (default 1; quick 0.25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("noiseless", "noisy"), default=None)
    args = parser.parse_args()
    limit_threads(args.threads)
    scale = args.sample_scale or (0.25 if args.quick else 1.0)
    print(machine_line())
    print("VE SDE (0.01, 20), reverse-diffusion predictor + 1 Langevin corrector (NFE = 2 × steps), "
          f"seed {args.seed}; {'--quick' if args.quick else 'full run'}")
    start = time.perf_counter()
    if args.only != "noisy":
        for problem in noiseless_problems(args.quick):
            run_problem(problem, args.seed, scale)
    if args.only != "noiseless":
        for problem in noisy_problems(args.quick):
            run_problem(problem, args.seed, scale)
    print(f"\nTotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
