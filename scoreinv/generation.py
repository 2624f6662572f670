"""``scoreinv.sample``: draw samples from a prior, of one class when a classifier is given.

The user-facing face of :func:`scoreinv.sampling.sample`: it also takes the prior and the
classifier by registered name or checkpoint path (``scoreinv.sample(load_model("digits"), 64,
classifier="digits-classifier", label=3, seed=0)``), turns a class name into its index, takes the
classifier's validated default scale when none is given, and refuses a classifier trained on
another SDE's noise. The sampler itself sees only score callables.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from scoreinv.sampling import sample as _sample


def resolve_label(classifier: Any, label: int | str | torch.Tensor) -> int | torch.Tensor:
    """An index (or a (B,) tensor of them) from an index or a class name of ``classifier``."""
    if isinstance(label, torch.Tensor):
        return label
    if hasattr(classifier, "label_index"):
        return classifier.label_index(label)
    if isinstance(label, str):
        raise ValueError(f"class name {label!r} given, but this classifier has no class names: pass an index")
    return label


def guided_prior(prior: Any, classifier: Any, label: int | str | torch.Tensor | None,
                 classifier_scale: float | None, device: torch.device | str | None = None) -> tuple[Any, dict[str, Any]]:
    """The prior's score guided to class ``label`` by ``classifier`` (name, path or object), and a
    record of what ran (classifier, class index and name, scale) for the output's settings."""
    from scoreinv.classifier import guidance_sde_check, resolve_classifier
    from scoreinv.sampling import ClassifierGuidedScore, prior_device

    if classifier is None:
        raise ValueError("label=... and classifier_scale=... need a classifier=... to guide the sampler")
    if label is None:
        raise ValueError("classifier guidance needs the class: pass label=...")
    loaded = resolve_classifier(classifier, device=device if device is not None else prior_device(prior))
    if getattr(prior, "sde", None) is not None:
        guidance_sde_check(prior.sde, loaded)
    scale = classifier_scale if classifier_scale is not None else float(getattr(loaded, "default_scale", 1.0))
    index = resolve_label(loaded, label)
    names = getattr(loaded, "class_names", None)
    record = {
        "classifier": classifier if isinstance(classifier, (str, os.PathLike)) else type(classifier).__name__,
        "label": index.tolist() if isinstance(index, torch.Tensor) else index,
        "classifier_scale": scale,
    }
    if names is not None and not isinstance(index, torch.Tensor):
        record["class_name"] = names[index]
    record["classifier"] = str(record["classifier"])
    return ClassifierGuidedScore(prior, loaded, index, scale), record


def sample(
    prior: Any,
    shape: int | Sequence[int],
    method: str = "pc",
    *,
    classifier: Any = None,
    label: int | str | torch.Tensor | None = None,
    classifier_scale: float | None = None,
    device: torch.device | str | None = None,
    **options: Any,
) -> torch.Tensor:
    """Samples of a prior, ``(B, C, H, W)``; of class ``label`` with a ``classifier``.

    Parameters
    ----------
    prior:
        A loaded prior (any score callable with ``.sde``), a registered prior name or a checkpoint path.
    shape:
        ``(B, C, H, W)``, or B for a prior that states its image shape.
    method:
        ``"pc"`` or ``"ode"``; ``options`` are :func:`scoreinv.sampling.sample`'s (``steps``,
        ``predictor``, ``corrector``, ``snr``, ``seed``, ``generator``, ``progress``, ...).
    classifier:
        p_t(c | x_t): a loaded classifier (:func:`scoreinv.classifier.load_classifier`, or any callable
        ``(x, t) -> logits``), a registered name (``digits-classifier``, ``ct-region-classifier``) or a
        checkpoint path. It must have been trained on the prior's SDE.
    label:
        The class: an index, a class name of the classifier (``"head"``), or a (B,) tensor of indices.
    classifier_scale:
        The guidance scale s ≥ 0 (0: unconditional, 1: Bayes' rule); default the classifier's
        ``default_scale`` (chosen on validation samples for the bundled ones), else 1.
    """
    if isinstance(prior, (str, os.PathLike)):
        from scoreinv.checkpoint import load_model

        prior = load_model(prior, device=device)
    if classifier is None:
        if label is not None or classifier_scale is not None:
            raise ValueError("label=... and classifier_scale=... need a classifier=... to guide the sampler")
        return _sample(prior, shape, method, device=device, **options)
    from scoreinv.sampling import prior_device

    device = device if device is not None else prior_device(prior)  # the guided score is no module
    if isinstance(shape, int):
        from scoreinv.sampling import prior_item_shape

        shape = (shape, *prior_item_shape(prior))
    guided, _ = guided_prior(prior, classifier, label, classifier_scale, device)
    return _sample(guided, shape, method, device=device, **options)
