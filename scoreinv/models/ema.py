"""Exponential moving average (EMA) of a model's weights, used for sampling.

After every optimiser step, each floating-point parameter θ updates its shadow θ̄ as

    θ̄ <- d · θ̄ + (1 − d) · θ,      d = decay ∈ [0, 1).

Buffers (running statistics, the U-Net's fixed Fourier frequencies) are not optimised, so
they are copied rather than averaged: averaging a constant would only add rounding error.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class EMA:
    """A shadow copy of a model's state dict, averaged over training.

    Parameters
    ----------
    model:
        The model being trained; the shadow starts as a copy of its current state.
    decay:
        d in the update rule above, 0 <= d < 1 (0.999 is typical; 0 tracks the model).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = self._check_decay(decay)
        self._parameter_names = {name for name, _ in model.named_parameters()}
        self.shadow: dict[str, torch.Tensor] = {
            name: value.detach().clone() for name, value in model.state_dict().items()
        }

    @staticmethod
    def _check_decay(decay: float) -> float:
        decay = float(decay)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must satisfy 0 <= decay < 1, got {decay}")
        return decay

    def _check_keys(self, state: Mapping[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            missing = sorted(set(self.shadow) - set(state))
            unexpected = sorted(set(state) - set(self.shadow))
            raise ValueError(f"model does not match the EMA: missing {missing}, unexpected {unexpected}")

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> None:
        """θ̄ <- d θ̄ + (1 − d) θ for the parameters; buffers are copied.

        ``decay`` overrides d for this update (a warm-up schedule), default ``self.decay``.
        """
        decay = self.decay if decay is None else self._check_decay(decay)
        state = model.state_dict()
        self._check_keys(state)
        for name, value in state.items():
            shadow = self.shadow[name]
            if name in self._parameter_names and shadow.is_floating_point():
                shadow.mul_(decay).add_(value.detach().to(shadow), alpha=1.0 - decay)
            else:
                shadow.copy_(value)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's parameters and buffers with the shadow (in place)."""
        state = model.state_dict()
        self._check_keys(state)
        for name, value in state.items():
            value.copy_(self.shadow[name])

    def to(self, device: torch.device | str) -> "EMA":
        """Move the shadow to ``device`` (returns self)."""
        self.shadow = {name: value.to(device) for name, value in self.shadow.items()}
        return self

    def state_dict(self) -> dict:
        """``{"decay": d, "shadow": {name: tensor}}``; the tensors are copies."""
        return {"decay": self.decay, "shadow": {name: value.detach().clone() for name, value in self.shadow.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict`; the shadow keeps its device and dtypes."""
        if not isinstance(state, Mapping) or "decay" not in state or "shadow" not in state:
            raise ValueError("an EMA state must be a mapping with 'decay' and 'shadow'")
        decay = self._check_decay(state["decay"])
        shadow = state["shadow"]
        self._check_keys(shadow)
        with torch.no_grad():
            for name, value in shadow.items():
                self.shadow[name].copy_(value)
        self.decay = decay
