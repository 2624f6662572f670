"""What do the conditional samplers cost beyond their score evaluations?

A network-sized score function (a 5-layer 3×3 conv stack, 1 → w → w → w → w → 1 channels,
w = 16 by default, with SiLU: a few ms per call on a batch of 8 at 64² on one CPU thread; it
is not the score of any data set, only its cost matters) drives
:func:`scoreinv.solvers.conditional_sample` on a batch of 8 images of 64², N time points,
reverse-diffusion predictor + 1 Langevin corrector (NFE = 2N):

* unconditional ``pc_sample`` (the loop alone, for reference);
* consistency, RadonOp(23, image_size=64): λ-consistency steps after every predictor and
  corrector update (a forward projection of the state and of a noise draw, an FBP of the
  residual) and a final CG-20 projection;
* replacement, MaskOp (50% of the pixels): the same steps with T = identity;
* guidance, RadonOp(23, 64) and MaskOp: every evaluation is a forward *and a backward* pass
  through the network (plus A and Aᵀ), so its per-evaluation cost is higher.

Columns:

* wall: median wall time of the sampling call;
* score call: median isolated forward call of the network score (no grad);
* overhead: (wall − NFE × score call) / wall: the share of the time not spent in forward
  score evaluations (for guidance it includes the backward passes);
* in loop: the same with the time measured inside that run's forward score calls (robust to
  the CPU speed drifting between measurements on a shared machine);
* per evaluation / score call: for guidance, the isolated cost of one guided evaluation
  (forward + backward + operator) over one plain forward call.

A second table times the pieces in isolation: one consistency step (``project``), the final
projection (``finish``), one guided evaluation.

Run:  python benchmarks/solver_overhead.py [--quick] [--threads 1] [--steps 100]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _machine import limit_threads, machine_line
from _scores import NetScore, TimedScore, convnet, median_time

from scoreinv.operators import MaskOp, RadonOp
from scoreinv.sampling import pc_sample
from scoreinv.sde import VESDE
from scoreinv.reconstruct import resolve_settings
from scoreinv.solvers import GuidedScore, MeasurementConsistency, conditional_sample


def conv_score(sde: VESDE, channels: int = 1, width: int = 16, depth: int = 5) -> NetScore:
    """A network-sized score: ``depth`` 3×3 convolutions of ``width`` channels (seeded)."""
    torch.manual_seed(0)
    return NetScore(sde, convnet(channels, width, depth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 steps, one run (about 30 s)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="N time points (default 100; quick 30)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16, help="channels of the conv stack (default 16)")
    args = parser.parse_args()
    limit_threads(args.threads)
    steps = args.steps or (30 if args.quick else 100)
    runs = 1 if args.quick else 3
    repeats = 10 if args.quick else 30
    batch, size = args.batch, args.size

    sde = VESDE(0.01, 50.0)
    score = conv_score(sde, width=args.width)
    radon = RadonOp(23, image_size=size).build(full=True)
    mask = MaskOp(image_size=size, fraction=0.5, generator=torch.Generator().manual_seed(0))
    shape = (batch, 1, size, size)
    truth = 0.5 + 0.2 * torch.randn(shape, generator=torch.Generator().manual_seed(1))
    y_radon, y_mask = radon(truth), mask(truth)

    x = 3.0 * torch.randn(shape, generator=torch.Generator().manual_seed(2))
    t = torch.full((batch,), 0.5)
    with torch.no_grad():
        score_call = median_time(lambda: score(x, t), repeats)

    print(machine_line())
    print(f"Score: 5-layer conv stack (width {args.width}), batch {batch}, {size}²; VE SDE (0.01, 50); N = {steps} "
          f"steps, reverse diffusion + 1 Langevin corrector (snr 0.16); RadonOp(23, {size}) with "
          f"{radon.full_views} full views; MaskOp 50%; medians of {runs} run(s)\n")

    cases = [
        ("unconditional pc_sample", None, None, None, {}),
        ("consistency λ = 1, CG-20 (RadonOp)", "consistency", radon, y_radon, {"weight": 1.0}),
        ("consistency λ = 0.841, CG-20 (RadonOp)", "consistency", radon, y_radon, {"weight": 0.841}),
        ("replacement (MaskOp)", "replacement", mask, y_mask, {}),
        ("guidance ζ = 1 (RadonOp)", "guidance", radon, y_radon, {"guidance_scale": 1.0}),
        ("guidance ζ = 1 (MaskOp)", "guidance", mask, y_mask, {"guidance_scale": 1.0}),
    ]
    print("| sampler | NFE | wall (s) | score call (ms) | NFE × score call (s) | overhead | in loop "
          "| per evaluation / score call |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, method, operator, y, options in cases:
        walls, overheads, in_loop, calls = [], [], [], []
        for _ in range(runs):
            with torch.no_grad():
                call = median_time(lambda: score(x, t), repeats)
            timed = TimedScore(score)
            generator = torch.Generator().manual_seed(0)
            if method is None:
                result = pc_sample(timed, sde, shape, steps=steps, snr=0.16, generator=generator, progress=False)
            else:
                settings = resolve_settings(operator, method=method, steps=steps, snr=0.16, **options)
                result = conditional_sample(timed, sde, operator, y, settings, generator=generator, progress=False)
            if not torch.isfinite(result.samples).all():
                raise RuntimeError(f"{name}: non-finite samples")
            walls.append(result.seconds)
            calls.append(call)
            overheads.append((result.seconds - result.nfe * call) / result.seconds)
            in_loop.append((result.seconds - timed.seconds) / result.seconds)
        ratio = "–"
        if method == "guidance":
            guided = GuidedScore(score, sde, operator, y, operator.noise_std, 1.0)
            ratio = f"{median_time(lambda g=guided: g(x, t), repeats) / score_call:.2f}"
        med = statistics.median
        print(f"| {name} | {result.nfe} | {med(walls):.2f} | {med(calls) * 1e3:.2f} "
              f"| {result.nfe * med(calls):.2f} | {med(overheads):.0%} | {med(in_loop):.0%} | {ratio} |",
              flush=True)

    print("\nPieces in isolation (batch of the sampler, median):\n")
    print("| piece | ms | / score call |")
    print("|---|---:|---:|")
    generator = torch.Generator().manual_seed(3)
    pieces = [("network score call (forward, no grad)", lambda: score(x, t))]
    for label, operator, y in (("RadonOp", radon, y_radon), ("MaskOp", mask, y_mask)):
        consistency = MeasurementConsistency(sde, operator, y, 1.0, 20, 0.0)
        replacement = MeasurementConsistency(sde, operator, y, 1.0, 0, 0.0)
        guided = GuidedScore(score, sde, operator, y, 0.0, 1.0)
        pieces += [
            (f"one consistency step, {label} (project)", lambda c=consistency: c.project(x, t, generator)),
            (f"final CG-20 projection, {label} (finish)", lambda c=consistency: c.finish(x)),
            (f"final exact-replacement step, {label} (finish, k = 0)", lambda c=replacement: c.finish(x)),
            (f"one guided evaluation, {label} (forward + backward)", lambda g=guided: g(x, t)),
        ]
    for label, function in pieces:
        with torch.no_grad() if "guided" not in label else torch.enable_grad():
            seconds = median_time(function, repeats)
        print(f"| {label} | {seconds * 1e3:.2f} | {seconds / score_call:.2f} |", flush=True)


if __name__ == "__main__":
    main()
