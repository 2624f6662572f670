"""Score functions with a network's cost and a timer, shared by the overhead benchmarks."""

from __future__ import annotations

import statistics
import time

import torch

from scoreinv.sde import VESDE, expand_to


class NetScore:
    """score(x, t) = (0.01 · net(x) − x / std(t)) / std(t): the cost of ``net``, a score's scale."""

    def __init__(self, sde: VESDE, net: torch.nn.Module) -> None:
        self.sde = sde
        self.net = net.eval()

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        std = expand_to(self.sde.marginal_std(t), x)
        return (0.01 * self.net(x) - x / std) / std


class TimedScore:
    """Wraps a score function; counts its calls and the seconds spent inside them."""

    def __init__(self, score_fn) -> None:
        self.score_fn = score_fn
        self.sde = getattr(score_fn, "sde", None)
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.score_fn(x, t)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def convnet(channels: int, width: int = 32, depth: int = 5) -> torch.nn.Module:
    """A plain stack of ``depth`` 3×3 convolutions with SiLU between them."""
    layers: list[torch.nn.Module] = []
    sizes = [channels] + [width] * (depth - 1) + [channels]
    for i in range(depth):
        layers.append(torch.nn.Conv2d(sizes[i], sizes[i + 1], 3, padding=1))
        if i < depth - 1:
            layers.append(torch.nn.SiLU())
    return torch.nn.Sequential(*layers)


def median_time(function, repeats: int, warmup: int = 3) -> float:
    """Median wall seconds of ``function()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
