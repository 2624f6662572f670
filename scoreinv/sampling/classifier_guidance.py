"""Classifier guidance: the score of p_t(x | c) from an unconditional score and a noisy-image classifier.

By Bayes' rule p_t(x | c) ∝ p_t(x) p_t(c | x), so

    ∇ₓ log p_t(x | c) = ∇ₓ log p_t(x) + ∇ₓ log p_t(c | x).

:class:`ClassifierGuidedScore` is a score callable that returns

    s(x, t) + s_c · ∇ₓ log softmax(f(x, t))_c,

f the classifier's logits and s_c the guidance scale (1: Bayes' rule; larger sharpens the
class, 0: unconditional). The gradient is taken by autograd, so any differentiable classifier
works. It is a score like any other: every predictor, corrector and the probability-flow ODE
follow it, and the inverse-problem methods take it in place of the prior's score (a forward
operator and a class together). It sees only callables, never a network class.
"""

from __future__ import annotations

from typing import Any

import torch

from scoreinv.sde import ScoreFn


class ClassifierGuidedScore:
    """s(x, t) + scale · ∇ₓ log p_t(label | x).

    Parameters
    ----------
    score_fn:
        The prior's score ``score_fn(x, t)``; its ``sde``, ``channels``, ``image_size`` and
        ``value_range`` are carried over, so the guided score is a prior too.
    classifier:
        ``classifier(x, t) -> logits`` of shape (B, K).
    label:
        The class c: an index, or one index per item (a (B,) tensor).
    scale:
        s_c ≥ 0.
    """

    def __init__(self, score_fn: ScoreFn, classifier: Any, label: int | torch.Tensor, scale: float = 1.0) -> None:
        if not callable(classifier):
            raise TypeError(f"classifier must be callable as classifier(x, t) -> logits, got {type(classifier).__name__}")
        if not float(scale) >= 0:
            raise ValueError(f"the classifier guidance scale must be >= 0, got {scale}")
        label = torch.as_tensor(label)
        if label.dtype in (torch.float16, torch.float32, torch.float64, torch.bool) or label.dim() > 1:
            raise TypeError(f"label must be an integer class index or a (B,) tensor of them, got {label!r}")
        self.score_fn = score_fn
        self.classifier = classifier
        self.label = label.long()
        self.scale = float(scale)
        for name in ("sde", "channels", "image_size", "value_range"):
            if hasattr(score_fn, name):
                setattr(self, name, getattr(score_fn, name))

    def _labels(self, batch: int, device: torch.device) -> torch.Tensor:
        if self.label.dim() == 0:
            return self.label.expand(batch).to(device)
        if self.label.shape[0] != batch:
            raise ValueError(f"{self.label.shape[0]} labels for a batch of {batch} items")
        return self.label.to(device)

    def log_prob(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p_t(label | x) per item, shape (B,)."""
        logits = self.classifier(x, t)
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"the classifier must return logits of shape (B, K), got {tuple(logits.shape)}")
        labels = self._labels(x.shape[0], logits.device)
        if (labels < 0).any() or (labels >= logits.shape[1]).any():
            raise ValueError(f"label out of range for a classifier of {logits.shape[1]} classes")
        return torch.log_softmax(logits, dim=1).gather(1, labels[:, None])[:, 0]

    def guidance(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """∇ₓ log p_t(label | x) (not scaled), by autograd; the shape of x."""
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(self.log_prob(leaf, t).sum(), leaf)
        return gradient

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        score = self.score_fn(x, t)
        if self.scale == 0.0:
            return score
        return score + self.scale * self.guidance(x, t).to(score.dtype)
