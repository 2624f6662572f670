"""How much of a sampler's wall time is the loop itself, not the score function?

For each score function and shape, the script times

* ``pc_sample`` with reverse-diffusion predictor + Langevin corrector (NFE = 2N),
* ``pc_sample`` predictor only (NFE = N),
* ``ode_sample`` (probability-flow ODE, scipy RK45, rtol = atol = 1e-5),

and one call of the score function alone (median of many, same shape, no grad).
The loop overhead is the share of the wall time spent outside the score function
(the SDE coefficients, the noise draws, the step arithmetic, and for the ODE the
torch ↔ numpy copies and scipy's RK45 controller), measured two ways:

* isolated:  (wall − NFE × t_score) / wall, t_score the median isolated call;
* in loop:   (wall − Σ time inside the score calls of that run) / wall, the
  score function wrapped in a timer. On a shared CPU, whose speed drifts by tens
  of % within a minute, this one is the robust number (both terms are measured
  under the same load); the isolated one can even come out negative.

"per NFE" is the in-loop overhead in µs per score evaluation. Each sampler runs
3 times (1 with --quick), score-call timing interleaved; medians are reported.

Score functions (all take (x, t), VE SDE σ ∈ [0.01, 50]):

* ``gaussian``: :class:`scoreinv.gaussian.GaussianPrior`, diagonal covariance (µs).
* ``conv1``: one 3×3 Conv2d(C, C), output scaled like a score network's (tens of µs).
* ``convnet``: a small network: 3×3 convs C → 32 → 32 → 32 → 32 → C with SiLU (ms),
  standing in for a real score network.

The fake networks are not scores of any data set; they are there for their cost.
Their output is −x/std² + 0.01·net(x)/std, which keeps the samplers stable.

Run:  python benchmarks/sampler_overhead.py [--quick] [--threads 1] [--blas-threads 1]
Progress bars are off (``progress=False``), as in a batch job.

BLAS threads: scipy's RK45 combines its stages with a BLAS matrix–vector product
over the whole state (numpy's OpenBLAS, not torch's thread pool). On a shared
CPU a multi-threaded OpenBLAS made ``ode_sample`` several times slower (64² batch
of 8: 0.5 s instead of 0.13 s with another busy process on the 2 cores), so the
BLAS pool is limited to ``--blas-threads`` (default: same as --threads; 0 leaves
numpy's default) through threadpoolctl when it is installed (benchmarks/_machine.py).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _machine import limit_threads, machine_line
from _scores import NetScore, TimedScore, convnet, median_time

from scoreinv.gaussian import GaussianPrior
from scoreinv.sampling import ode_sample, pc_sample
from scoreinv.sde import VESDE


def conv1(channels: int) -> torch.nn.Module:
    return torch.nn.Conv2d(channels, channels, 3, padding=1)


def make_score(kind: str, sde: VESDE, shape: tuple[int, ...]):
    torch.manual_seed(0)
    item = shape[1:]
    if kind == "gaussian":
        mean = torch.linspace(-0.5, 0.5, int(torch.tensor(item).prod())).reshape(item)
        variance = torch.linspace(0.05, 1.0, mean.numel()).reshape(item)
        return GaussianPrior(sde, mean, variance)
    if kind == "conv1":
        return NetScore(sde, conv1(shape[1]))
    if kind == "convnet":
        return NetScore(sde, convnet(shape[1]))
    raise ValueError(kind)


def time_score_call(score_fn, shape: tuple[int, ...], repeats: int) -> float:
    """Median seconds of one score_fn(x, t) call on a batch of ``shape``."""
    generator = torch.Generator().manual_seed(1)
    x = 3.0 * torch.randn(shape, generator=generator)
    t = torch.full((shape[0],), 0.5)
    with torch.no_grad():
        return median_time(lambda: score_fn(x, t), repeats, warmup=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (about a minute)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="PC time points N (default 200, quick 50)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="numpy/scipy BLAS threads (default: --threads; 0: numpy's default)")
    parser.add_argument("--scores", default="gaussian,conv1,convnet")
    parser.add_argument("--shapes", default="8x1x32x32,8x1x64x64")
    args = parser.parse_args()

    limit_threads(args.threads, args.blas_threads)
    steps = args.steps or (50 if args.quick else 200)
    repeats = 20 if args.quick else 50
    runs = 1 if args.quick else 3
    shapes = [tuple(int(s) for s in spec.split("x")) for spec in args.shapes.split(",")]
    kinds = args.scores.split(",")
    sde = VESDE(0.01, 50.0)

    print(machine_line())
    print(f"SDE: {sde}; PC: N = {steps} steps, snr 0.16, 1 corrector step; "
          f"ODE: RK45, rtol = atol = 1e-5; wall: median of {runs} run(s); "
          f"score call: median of {runs} × {repeats} calls\n")
    print("| score | shape | sampler | NFE | wall (s) | score call (ms) | overhead, isolated "
          "| overhead, in loop | overhead per NFE (µs) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")

    samplers = [
        ("pc: reverse_diffusion + langevin",
         lambda f, shape, g: pc_sample(f, sde, shape, steps=steps, corrector="langevin", snr=0.16,
                                       generator=g, progress=False)),
        ("pc: reverse_diffusion only",
         lambda f, shape, g: pc_sample(f, sde, shape, steps=steps, corrector="none",
                                       generator=g, progress=False)),
        ("ode: RK45 1e-5",
         lambda f, shape, g: ode_sample(f, sde, shape, generator=g, progress=False)),
    ]
    for kind in kinds:
        for shape in shapes:
            score_fn = make_score(kind, sde, shape)
            # warm-up (first-call allocations, scipy imports)
            pc_sample(score_fn, sde, shape, steps=3, generator=torch.Generator().manual_seed(0), progress=False)
            ode_sample(score_fn, sde, shape, rtol=1e-2, atol=1e-2, generator=torch.Generator().manual_seed(0),
                       progress=False)
            for name, run in samplers:
                walls, calls, isolated, in_loop, per_nfe = [], [], [], [], []
                for _ in range(runs):
                    call = time_score_call(score_fn, shape, repeats)
                    timed = TimedScore(score_fn)
                    result = run(timed, shape, torch.Generator().manual_seed(0))
                    if not torch.isfinite(result.samples).all():
                        raise RuntimeError(f"{kind} {shape} {name}: non-finite samples")
                    if timed.calls != result.nfe:
                        raise RuntimeError(f"NFE {result.nfe} but {timed.calls} score calls")
                    wall = result.seconds
                    walls.append(wall)
                    calls.append(call)
                    isolated.append((wall - result.nfe * call) / wall)
                    in_loop.append((wall - timed.seconds) / wall)
                    per_nfe.append((wall - timed.seconds) / result.nfe * 1e6)
                med = statistics.median
                shape_text = "×".join(str(s) for s in shape)
                print(f"| {kind} | {shape_text} | {name} | {result.nfe} | {med(walls):.3f} "
                      f"| {med(calls) * 1e3:.3f} | {med(isolated):.0%} | {med(in_loop):.0%} "
                      f"| {med(per_nfe):.0f} |", flush=True)


if __name__ == "__main__":
    main()
