"""One self-describing file per model: configuration, weights, training state.

A checkpoint is a ``torch.save`` of a plain dict holding only tensors and primitive values,
so it loads with ``torch.load(..., weights_only=True)`` (no arbitrary code runs on load):

========================  ==================================================================
``format``                ``"scoreinv-checkpoint"`` (what the file is)
``format_version``        1
``scoreinv_version``      the version of the package that wrote it
``model_config``          :class:`~scoreinv.config.ModelConfig` as JSON (SDE, U-Net, value range)
``training_config``       :class:`~scoreinv.config.TrainingConfig` as JSON, or ``None``
``step``                  optimiser steps taken so far
``ema``                   ``{"decay": d, "shadow": state dict}`` -- the weights to sample with
                          (d is ``None`` for an export of a model's current weights)
``weights``               the raw (last-iterate) state dict, or ``None``
``optimizer``             the optimiser's state dict, or ``None``
========================  ==================================================================

Files are written atomically: to a temporary file in the target folder, flushed and
fsynced, then renamed over the target, so a crash mid-write never leaves a truncated
checkpoint behind (the previous one survives).

Bundled priors live in ``scoreinv/weights/<name>.pt`` (package data) and are loaded by name:
``load_model("ct-phantom")``. They are exported with :func:`export_model` (EMA weights
only, float16 parameters), and load back as float32.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from scoreinv._version import __version__
from scoreinv.atomic import atomic_path
from scoreinv.config import ModelConfig, TrainingConfig
from scoreinv.devices import check_device
from scoreinv.models import EMA, ScoreModel
from scoreinv.registries import register

FORMAT = "scoreinv-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

_REQUIRED_KEYS = (
    "format",
    "format_version",
    "scoreinv_version",
    "model_config",
    "training_config",
    "step",
    "ema",
    "weights",
    "optimizer",
)


def cpu_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state dict (what a checkpoint stores, whatever the training device)."""
    return {name: value.detach().to("cpu", copy=True) for name, value in state.items()}


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through :func:`scoreinv.atomic.atomic_path`: complete or absent, normal permissions."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        torch.save(obj, handle)


def _content(
    model: ScoreModel,
    training_config: TrainingConfig | None,
    step: int,
    *,
    ema: dict[str, Any] | None,
    weights: dict[str, torch.Tensor] | None,
    optimizer: dict[str, Any] | None,
) -> dict[str, Any]:
    """The one layout of a checkpoint file (what :func:`read_checkpoint` validates)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scoreinv_version": __version__,
        "model_config": model.config.model_dump_json(),
        "training_config": None if training_config is None else training_config.model_dump_json(),
        "step": int(step),
        "ema": ema,
        "weights": weights,
        "optimizer": optimizer,
    }


def save_checkpoint(
    path: str | os.PathLike,
    model: ScoreModel,
    *,
    ema: EMA | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    training_config: TrainingConfig | None = None,
    step: int = 0,
) -> Path:
    """Write ``model`` (and optionally its EMA, optimiser and training state) to ``path``.

    Parameters
    ----------
    path:
        Target file (conventionally ``*.pt``); parent folders are created.
    model:
        The score model; its current state dict is stored as the raw ``weights``.
    ema:
        The EMA of the weights, stored as the weights to sample with. Without it,
        :func:`load_model` needs ``weights="raw"``.
    optimizer, training_config, step:
        What :func:`scoreinv.training.train` needs to resume exactly.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    if not isinstance(model, ScoreModel):
        raise ValueError(f"save_checkpoint needs a ScoreModel, got {type(model).__name__}")
    if int(step) < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    content = _content(
        model, training_config, step,
        ema=None if ema is None else {"decay": ema.decay, "shadow": cpu_state_dict(ema.shadow)},
        weights=cpu_state_dict(model.state_dict()),
        optimizer=None if optimizer is None else optimizer.state_dict(),
    )
    path = Path(path)
    atomic_torch_save(content, path)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint file.

    Returns
    -------
    dict
        The stored dict (keys in the module docstring), with ``model_config`` parsed into a
        :class:`~scoreinv.config.ModelConfig` and ``training_config`` into a
        :class:`~scoreinv.config.TrainingConfig` (or ``None``).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is truncated or corrupt, is a torch file that is not a scoreinv
        checkpoint, was written by a newer format version, or is inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no scoreinv checkpoint at {str(path)!r}: file not found")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # corrupt zip, bad pickle, non-tensor objects: all unreadable
        raise ValueError(
            f"{str(path)!r} is not a readable scoreinv checkpoint (truncated, corrupt or not a "
            f"weights-only torch file): {type(error).__name__}: {error}"
        ) from error

    if not isinstance(content, dict) or content.get("format") != FORMAT:
        found = sorted(map(str, content))[:8] if isinstance(content, dict) else type(content).__name__
        raise ValueError(
            f"{str(path)!r} is a torch file but not a scoreinv checkpoint "
            f"(no format marker {FORMAT!r}; found {found})"
        )
    version = content.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has checkpoint format version {version!r}; this scoreinv reads "
            f"versions 1..{FORMAT_VERSION} (written by scoreinv {content.get('scoreinv_version')})"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in content]
    if missing:
        raise ValueError(f"{str(path)!r} is an incomplete scoreinv checkpoint: missing {missing}")
    try:
        content["model_config"] = ModelConfig.model_validate_json(content["model_config"])
        if content["training_config"] is not None:
            content["training_config"] = TrainingConfig.model_validate_json(content["training_config"])
    except (ValueError, TypeError) as error:
        raise ValueError(f"{str(path)!r} holds an invalid configuration: {error}") from error
    if not isinstance(content["step"], int) or content["step"] < 0:
        raise ValueError(f"{str(path)!r} holds an invalid step {content['step']!r}")
    ema = content["ema"]
    if ema is not None and not (isinstance(ema, dict) and "decay" in ema and isinstance(ema.get("shadow"), dict)):
        raise ValueError(f"{str(path)!r} holds a malformed EMA entry")
    if ema is None and content["weights"] is None:
        raise ValueError(f"{str(path)!r} holds no weights (neither EMA nor raw)")
    return content


@dataclass(frozen=True)
class PriorEntry:
    """A prior that can be loaded by name, with what it was trained on.

    Attributes
    ----------
    name:
        The name ``load_model(name)`` takes.
    path:
        The checkpoint file.
    modality:
        The image domain (``"ct"``, ``"colour"``): operators of that domain
        (``operator.modality``) take this prior when no model is given.
    channels, image_size:
        The images it models: (channels, image_size, image_size).
    max_image_size:
        A patch prior serves every size from ``image_size`` to ``max_image_size`` (equal for a
        whole-image prior).
    """

    name: str
    path: Path
    modality: str
    channels: int
    image_size: int
    max_image_size: int

    def serves(self, channels: int, image_size: int) -> bool:
        return self.channels == int(channels) and self.image_size <= int(image_size) <= self.max_image_size

    def describe(self) -> str:
        plural = "s" if self.channels != 1 else ""
        sizes = f"{self.image_size}×{self.image_size}"
        if self.max_image_size != self.image_size:
            sizes += f" to {self.max_image_size}×{self.max_image_size}"
        return f"{self.name} ({self.modality}, {self.channels} channel{plural}, {sizes})"


#: The prior registry: the bundled priors, and any added with :func:`register_prior`. The first
#: entry that fits an operator is its default prior.
PRIORS: dict[str, PriorEntry] = {}


def register_prior(name: str, path: str | os.PathLike, *, modality: str, channels: int, image_size: int,
                   max_image_size: int | None = None) -> PriorEntry:
    """Make the checkpoint at ``path`` loadable as ``load_model(name)`` and eligible as the default
    prior of operators of ``modality`` on (channels, N, N) images, N = ``image_size`` (up to
    ``max_image_size`` for a patch prior). A name already registered is a ValueError."""
    largest = int(image_size) if max_image_size is None else int(max_image_size)
    if largest < int(image_size):
        raise ValueError(f"register_prior({name!r}): max_image_size {largest} < image_size {image_size}")
    entry = PriorEntry(str(name), Path(path), str(modality), int(channels), int(image_size), largest)
    return register(PRIORS, entry.name, entry, "prior")


# ct-anatomy first: the CT default. Trained on anatomy slices as well as the phantom families, it
# beat ct-phantom on every row of the 50-image phantom table and on real slices (docs/models.md).
register_prior("ct-anatomy", WEIGHTS_DIR / "ct-anatomy.pt", modality="ct", channels=1, image_size=64)
register_prior("ct-phantom", WEIGHTS_DIR / "ct-phantom.pt", modality="ct", channels=1, image_size=64)
register_prior("color-histology", WEIGHTS_DIR / "color-histology.pt", modality="colour", channels=3, image_size=64)
# The patch prior serves 64² too, but ct-anatomy, registered first, stays the 64² default (docs/models.md).
register_prior("ct-patch", WEIGHTS_DIR / "ct-patch.pt", modality="ct", channels=1, image_size=64, max_image_size=512)
# scikit-learn's 8×8 handwritten digits (docs/classifier.md): the prior of the digits-classifier pair.
register_prior("digits", WEIGHTS_DIR / "digits.pt", modality="digits", channels=1, image_size=8)


def bundled_models() -> list[str]:
    """Names of the priors that load by name (``load_model(name)``): the registry's."""
    return sorted(PRIORS)


def default_prior(modality: str | None, channels: int, image_size: int) -> str:
    """The name of the registered prior for images of ``modality`` (None: any) and shape
    (channels, image_size, image_size); a ValueError listing the registered priors if none fits."""
    for entry in PRIORS.values():
        if (modality is None or entry.modality == modality) and entry.serves(channels, image_size):
            return entry.name
    wanted = f"{channels}-channel {image_size}×{image_size}" + (f" {modality}" if modality else "")
    available = "; ".join(entry.describe() for entry in PRIORS.values()) or "none"
    raise ValueError(
        f"no bundled prior fits {wanted} images (bundled: {available}). Train one on your images with "
        f"`scoreinv train IMAGES.h5 PRIOR.pt` and pass model='PRIOR.pt'")


def default_prior_for(operator: Any, measurement_shape: tuple[int, ...] | None = None) -> str:
    """The name of the registered prior for ``operator``: its ``modality`` and the (channels, N, N)
    images it works on (:func:`default_prior`). The one rule that ``reconstruct``, the command
    line and batch reconstruction follow when no model is given.

    Parameters
    ----------
    operator:
        A forward operator; without ``measurement_shape`` it must be sized.
    measurement_shape:
        One item's measurement shape (e.g. (1, views, detectors)): the images are the ones the
        operator reconstructs from such measurements (``operator.bind(measurement_shape=...)``).

    Raises
    ------
    ValueError
        When no registered prior fits. The message names the measurements (a sinogram's detector
        count) and the measurement shapes the registered priors would take.
    """
    bound = operator if measurement_shape is None else operator.bind(measurement_shape=measurement_shape)
    channels, height, width = (int(s) for s in bound.in_shape)
    modality = getattr(bound, "modality", None)
    if height != width:
        raise ValueError(f"no registered prior works on {height}×{width} images (they are square): pass a model")
    try:
        return default_prior(modality, channels, height)
    except ValueError:
        pass
    fitting: dict[tuple[int, ...], list[str]] = {}  # measurement shape -> the priors taking it
    sized_for: dict[tuple[int, ...], Any] = {}
    for entry in PRIORS.values():
        if (modality is not None and entry.modality != modality) or entry.channels != channels:
            continue
        try:
            sized = operator.bind(image_shape=(entry.channels, entry.image_size, entry.image_size))
        except ValueError:  # a sized operator: the same one at the prior's size, where it has one
            try:
                sized = operator.with_options(image_size=entry.image_size)
            except (TypeError, ValueError):
                continue
        shape = tuple(int(s) for s in sized.out_shape)
        fitting.setdefault(shape, []).append(entry.name)
        sized_for[shape] = sized
    if not fitting:
        registered = "; ".join(entry.describe() for entry in PRIORS.values()) or "none"
        fits = (f"no registered prior models {modality + ' ' if modality else ''}images of {channels} channel(s) "
                f"(registered: {registered})")
    else:
        described = []
        for shape, names in fitting.items():
            side = int(sized_for[shape].in_shape[1])
            detectors = getattr(sized_for[shape], "n_detectors", None)
            what = f"{detectors} detectors, " if detectors is not None else ""
            described.append(f"{shape} ({what}{side}×{side} images: {', '.join(names)})")
        fits = "the registered priors take measurements of shape " + "; ".join(described)
    shape_given = tuple(measurement_shape) if measurement_shape is not None else tuple(int(s) for s in bound.out_shape)
    given = f"measurements of shape {shape_given}"
    detectors = getattr(bound, "n_detectors", None)
    if detectors is not None:
        given = f"a sinogram of {detectors} detectors ({given})"
    raise ValueError(f"no registered prior fits {given}, from which {getattr(operator, 'name', type(operator).__name__)} "
                     f"reconstructs {channels}-channel {height}×{width} images; {fits}. Pass measurements of such a "
                     "shape, or a prior trained at your size (`scoreinv train IMAGES.h5 --out PRIOR.pt`, then "
                     "model='PRIOR.pt')")


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """A file path for a checkpoint path or a registered prior name.

    A ``str`` with no path separator and no ``.pt`` suffix is a name and resolves to its
    registered file (the bundled ones are ``scoreinv/weights/<name>.pt``); anything else
    (including every ``pathlib.Path``) is a path.
    """
    if isinstance(path_or_name, str):
        name = path_or_name
        is_name = "/" not in name and os.sep not in name and not name.endswith(".pt")
        if os.altsep:
            is_name = is_name and os.altsep not in name
        if is_name:
            if name not in PRIORS:
                available = bundled_models()
                raise ValueError(
                    f"unknown bundled model {name!r}; available: {available if available else 'none'} "
                    f"(to load a file, pass a path with a separator or a .pt suffix)"
                )
            return PRIORS[name].path
    return Path(path_or_name)


def _state_for_model(model: ScoreModel, state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Cast stored tensors to the model's dtypes (float16 exports come back as float32)."""
    expected = model.state_dict()
    if set(state) != set(expected):
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        raise ValueError(
            f"{source}: stored weights do not match the model built from its config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    converted = {}
    for name, value in state.items():
        if value.shape != expected[name].shape:
            raise ValueError(
                f"{source}: weight {name!r} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(expected[name].shape)}"
            )
        converted[name] = value.to(expected[name].dtype)
    return converted


def load_model(
    path_or_name: str | os.PathLike,
    device: str | torch.device | None = None,
    weights: Literal["ema", "raw"] = "ema",
) -> ScoreModel:
    """A trained prior, ready for sampling: eval mode, parameters frozen, float32.

    Parameters
    ----------
    path_or_name:
        A checkpoint file, or the name of a bundled prior (see :func:`resolve_checkpoint`).
    device:
        Where to put the model (default: the CPU).
    weights:
        ``"ema"`` (default: the exponential moving average, what to sample with) or
        ``"raw"`` (the last training iterate).
    """
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    device = check_device(device)  # before reading the file
    path = resolve_checkpoint(path_or_name)
    content = read_checkpoint(path)
    if weights == "ema":
        if content["ema"] is None:
            raise ValueError(f"{str(path)!r} holds no EMA weights; load it with weights='raw'")
        state = content["ema"]["shadow"]
    else:
        if content["weights"] is None:
            raise ValueError(f"{str(path)!r} holds no raw weights (an export keeps only EMA); use weights='ema'")
        state = content["weights"]
    model = ScoreModel(content["model_config"])
    model.load_state_dict(_state_for_model(model, state, repr(str(path))))
    model.eval()
    model.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model


def trainable_copy(path_or_name: str | os.PathLike, device: str | torch.device | None = None) -> ScoreModel:
    """A prior's EMA weights as a model to train further (train mode, parameters trainable).

    ``scoreinv train --init-from NAME|PATH`` starts from it with a fresh optimiser and its
    learning-rate warm-up, so a prior can keep improving on another machine or on new data.
    The architecture, SDE and preconditioning are the prior's own.
    """
    model = load_model(path_or_name, device=device)
    model.train()
    model.requires_grad_(True)
    return model


def export_model(
    source: str | os.PathLike | ScoreModel,
    path_out: str | os.PathLike,
    half: bool = True,
) -> Path:
    """Write a compact, sampling-only checkpoint: EMA weights and config, no optimiser.

    Parameters
    ----------
    source:
        A checkpoint path or bundled name (its EMA weights are exported; training config
        and step are kept), or a :class:`ScoreModel`, whose *current* weights are exported
        as the weights to sample with (e.g. a model from :func:`load_model`).
    path_out:
        Target file, written atomically.
    half:
        Store the parameters as float16 (half the size). Buffers stay as they are: the
        U-Net's Fourier frequencies are up to ~50 and multiply t inside sin/cos, where
        float16's 3-digit precision would shift the time features visibly.
        :func:`load_model` casts everything back to float32.
    """
    if isinstance(source, nn.Module):
        if not isinstance(source, ScoreModel):
            raise ValueError(f"export_model needs a ScoreModel or a checkpoint, got {type(source).__name__}")
        model = source
        state = cpu_state_dict(model.state_dict())
        # Not an average we can vouch for: no decay is recorded.
        training_config, step, decay = None, 0, None
    else:
        path_in = resolve_checkpoint(source)
        content = read_checkpoint(path_in)
        if content["ema"] is None:
            raise ValueError(f"{str(path_in)!r} holds no EMA weights to export")
        model = ScoreModel(content["model_config"])
        state = _state_for_model(model, content["ema"]["shadow"], repr(str(path_in)))
        training_config, step = content["training_config"], content["step"]
        decay = content["ema"]["decay"]

    parameter_names = {name for name, _ in model.named_parameters()}
    if half:
        state = {
            name: value.half() if name in parameter_names and value.is_floating_point() else value
            for name, value in state.items()
        }
    content_out = _content(model, training_config, step, ema={"decay": decay, "shadow": state},
                           weights=None, optimizer=None)
    path_out = Path(path_out)
    atomic_torch_save(content_out, path_out)
    return path_out
