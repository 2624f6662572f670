"""A time-dependent classifier p_t(c | x_t): the learned term of the score Bayes rule.

    ∇ₓ log p_t(x | c) = ∇ₓ log p_t(x) + ∇ₓ log p_t(c | x)

The first term is a prior's score; the second comes from a classifier of *noisy* images,
trained by cross-entropy on x_t = m(t) x_0 + std(t) z drawn from the prior's own SDE with
t ~ U(ε, T) (Song et al., ICLR 2021, class-conditional generation). Guided sampling adds
s · ∇ₓ log p_t(c | x_t) to the score (:class:`scoreinv.sampling.ClassifierGuidedScore`).

The network (:class:`TimeClassifier`) is the U-Net's down path with a pooled linear head. It
sees the input in the units the U-Net's EDM preconditioning uses, whatever the SDE:

    x̃ = (x / m(t) − μ_d) / √(σ² + σ_d²),   σ = std(t) / m(t),   c_noise = ¼ ln σ,

so that x̃ has about unit variance at every noise level (μ_d, σ_d: the training images' mean
and std) and the noise level enters through Fourier features of c_noise, which spans a range
of order one for VE and VP alike.

A classifier checkpoint is self-describing and loads with ``weights_only=True``, like a prior's
(:mod:`scoreinv.checkpoint`), under its own format marker ``"scoreinv-classifier"``:
``classifier_config`` (architecture, classes, SDE, the default guidance scale),
``training_config``, ``step``, ``ema``, ``weights``, ``optimizer``. Training resumes exactly:
every random draw of step k comes from generators seeded by (seed, k).

Bundled classifiers load by name (:data:`CLASSIFIERS`, :func:`register_classifier`):
``digits-classifier`` (10 digits, for the ``digits`` prior) and ``ct-region-classifier``
(head / thorax / abdomen, for ``ct-anatomy``).
"""

from __future__ import annotations

import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from tqdm.auto import tqdm

from scoreinv._version import __version__
from scoreinv.checkpoint import WEIGHTS_DIR, atomic_torch_save, cpu_state_dict
from scoreinv.config import SDEConfig
from scoreinv.models import EMA
from scoreinv.models.unet import Downsample, GaussianFourierFeatures, ResidualBlock, _groups
from scoreinv.sde import SDE, expand_to
from scoreinv.training import step_seed

FORMAT = "scoreinv-classifier"
FORMAT_VERSION = 1
_REQUIRED_KEYS = ("format", "format_version", "scoreinv_version", "classifier_config", "training_config", "step",
                  "ema", "weights", "optimizer")
# Training-config fields that may change when a run is resumed without breaking exactness.
_RESUMABLE_CHANGES = {"steps", "checkpoint_every"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassifierArchitecture(_Strict):
    """The encoder: U-Net down path (residual blocks, stride-2 convs) and a pooled linear head."""

    base_channels: int = Field(32, ge=4, description="width of the first level")
    channel_multipliers: tuple[int, ...] = Field((1, 2), min_length=1, description="width per level")
    num_res_blocks: int = Field(1, ge=1, description="residual blocks per level")
    fourier_scale: float = Field(1.0, gt=0, description="std of the Fourier frequencies of c_noise = ln(σ)/4")
    group_norm_groups: int = Field(8, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)


class ClassifierConfig(_Strict):
    """Everything needed to rebuild a classifier: its classes, images, SDE and architecture."""

    class_names: tuple[str, ...] = Field(min_length=2, description="label k is class_names[k]")
    image_size: int = Field(ge=1)
    channels: int = Field(ge=1)
    sde: SDEConfig
    architecture: ClassifierArchitecture = ClassifierArchitecture()
    value_range: tuple[float, float] = (0.0, 1.0)
    data_mean: float = Field(0.5, description="μ_d of the input scaling")
    data_std: float = Field(0.5, gt=0, description="σ_d of the input scaling")
    default_scale: float = Field(1.0, ge=0, description="guidance scale s used when none is given")
    prior: str | None = Field(None, description="the registered prior it was trained for (its SDE)")

    @model_validator(mode="after")
    def _distinct_names(self) -> "ClassifierConfig":
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be distinct, got {list(self.class_names)}")
        return self


class ClassifierTrainingConfig(_Strict):
    """Cross-entropy training on x_t = m(t) x_0 + std(t) z, t ~ U(eps, T)."""

    steps: int = Field(2000, ge=0)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(100, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    eps: float = Field(1e-5, gt=0, lt=1, description="smallest training time ε")
    dequantize_levels: int | None = Field(None, ge=2, description="add U(0, 1/(levels−1)) to each batch "
                                          "(quantised data such as the 17-level digits)")
    checkpoint_every: int = Field(500, ge=1)
    seed: int = Field(0, ge=0, lt=2**63)


class ClassifierRunConfig(_Strict):
    """``scoreinv train-classifier --config FILE``: ``[architecture]`` and ``[training]``."""

    architecture: ClassifierArchitecture = ClassifierArchitecture()
    training: ClassifierTrainingConfig = ClassifierTrainingConfig()


class TimeClassifier(nn.Module):
    """Logits of p_t(c | x_t): ``classifier(x, t)`` with x (B, C, N, N), t (B,) -> (B, K).

    Parameters
    ----------
    config:
        Classes, image shape, SDE and architecture.
    seed:
        Seeds the initial weights (the caller's global RNG state is left as it was).
    """

    def __init__(self, config: ClassifierConfig, seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(config, ClassifierConfig):
            raise ValueError(f"TimeClassifier needs a ClassifierConfig, got {type(config).__name__}")
        self._config = config
        self._sde = config.sde.build()
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            self._build(config)

    def _build(self, config: ClassifierConfig) -> None:
        arch = config.architecture
        base, groups = arch.base_channels, arch.group_norm_groups
        embed_dim = 4 * base
        self.time_features = GaussianFourierFeatures(base, arch.fourier_scale)
        self.time_mlp = nn.Sequential(nn.Linear(2 * base, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.stem = nn.Conv2d(config.channels, base, 3, padding=1)
        self.blocks = nn.ModuleList()
        width = base
        for level, multiplier in enumerate(arch.channel_multipliers):
            for _ in range(arch.num_res_blocks):
                self.blocks.append(ResidualBlock(width, base * multiplier, embed_dim, arch.dropout, groups))
                width = base * multiplier
            if level < len(arch.channel_multipliers) - 1:
                self.blocks.append(Downsample(width))
        self.head_norm = nn.GroupNorm(_groups(width, groups), width)
        self.head = nn.Linear(width, len(config.class_names))

    @property
    def config(self) -> ClassifierConfig:
        return self._config

    @property
    def sde(self) -> SDE:
        return self._sde

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._config.class_names

    @property
    def num_classes(self) -> int:
        return len(self._config.class_names)

    @property
    def image_size(self) -> int:
        return self._config.image_size

    @property
    def channels(self) -> int:
        return self._config.channels

    @property
    def default_scale(self) -> float:
        return self._config.default_scale

    def label_index(self, label: int | str) -> int:
        """A class index from an index or a class name (a name wins over a numeral: "3" is
        class_names.index("3") when that name exists)."""
        if isinstance(label, str):
            if label in self.class_names:
                return self.class_names.index(label)
            if label.strip().lstrip("-").isdigit():
                label = int(label)
            else:
                raise ValueError(f"unknown class {label!r}; this classifier knows {list(self.class_names)}")
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise TypeError(f"label must be a class index or name, got {type(label).__name__}")
        label = int(label)
        if not 0 <= label < self.num_classes:
            raise ValueError(f"label {label} out of range: this classifier has {self.num_classes} classes "
                             f"{list(self.class_names)}")
        return label

    def _check_input(self, x: torch.Tensor, t: torch.Tensor) -> None:
        expected = (self.channels, self.image_size, self.image_size)
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4 or tuple(x.shape[1:]) != expected:
            got = (tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a floating tensor of shape (B, {', '.join(map(str, expected))}), got {got}")
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],) or not t.is_floating_point():
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must be a floating tensor of shape ({x.shape[0]},), got {got}")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits (B, K); log p_t(c | x) = log_softmax(logits)[:, c]."""
        self._check_input(x, t)
        mean = expand_to(self._sde.mean_coefficient(t).to(x.dtype), x)
        std = expand_to(self._sde.marginal_std(t).to(x.dtype), x)
        sigma = std / mean
        scaled = (x / mean - self._config.data_mean) * (sigma**2 + self._config.data_std**2).rsqrt()
        embedding = self.time_mlp(self.time_features(sigma.flatten(1)[:, 0].log() / 4))
        h = self.stem(scaled)
        for block in self.blocks:
            h = block(h, embedding) if isinstance(block, ResidualBlock) else block(h)
        return self.head(F.silu(self.head_norm(h)).mean(dim=(2, 3)))

    def extra_repr(self) -> str:
        return f"classes={list(self.class_names)}, sde={self._sde!r}, image_size={self.image_size}"


# ---------------------------------------------------------------------------------------------
# checkpoints


def _content(model: TimeClassifier, training_config: ClassifierTrainingConfig | None, step: int, *,
             ema: dict[str, Any] | None, weights: dict[str, torch.Tensor] | None,
             optimizer: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "scoreinv_version": __version__,
        "classifier_config": model.config.model_dump_json(),
        "training_config": None if training_config is None else training_config.model_dump_json(),
        "step": int(step), "ema": ema, "weights": weights, "optimizer": optimizer,
    }


def save_classifier(path: str | os.PathLike, model: TimeClassifier, *, ema: EMA | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    training_config: ClassifierTrainingConfig | None = None, step: int = 0) -> Path:
    """Write a classifier checkpoint atomically (raw weights, and EMA / optimiser / step to resume)."""
    if not isinstance(model, TimeClassifier):
        raise ValueError(f"save_classifier needs a TimeClassifier, got {type(model).__name__}")
    content = _content(model, training_config, step,
                       ema=None if ema is None else {"decay": ema.decay, "shadow": cpu_state_dict(ema.shadow)},
                       weights=cpu_state_dict(model.state_dict()),
                       optimizer=None if optimizer is None else optimizer.state_dict())
    path = Path(path)
    atomic_torch_save(content, path)
    return path


def read_classifier(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a classifier checkpoint (configs parsed); ValueError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no scoreinv classifier at {str(path)!r}: file not found")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{str(path)!r} is not a readable scoreinv classifier (truncated, corrupt or not a "
                         f"weights-only torch file): {type(error).__name__}: {error}") from error
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        marker = content.get("format") if isinstance(content, dict) else None
        hint = " (it is a prior: load it with scoreinv.load_model)" if marker == "scoreinv-checkpoint" else ""
        raise ValueError(f"{str(path)!r} is not a scoreinv classifier (format marker {marker!r}, expected "
                         f"{FORMAT!r}){hint}")
    version = content.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} has classifier format version {version!r}; this scoreinv reads "
                         f"versions 1..{FORMAT_VERSION}")
    missing = [key for key in _REQUIRED_KEYS if key not in content]
    if missing:
        raise ValueError(f"{str(path)!r} is an incomplete scoreinv classifier: missing {missing}")
    try:
        content["classifier_config"] = ClassifierConfig.model_validate_json(content["classifier_config"])
        if content["training_config"] is not None:
            content["training_config"] = ClassifierTrainingConfig.model_validate_json(content["training_config"])
    except (ValueError, TypeError) as error:
        raise ValueError(f"{str(path)!r} holds an invalid configuration: {error}") from error
    if content["ema"] is None and content["weights"] is None:
        raise ValueError(f"{str(path)!r} holds no weights (neither EMA nor raw)")
    return content


@dataclass(frozen=True)
class ClassifierEntry:
    """A classifier loadable by name, and the prior it was trained for."""

    name: str
    path: Path
    prior: str | None


#: The classifier registry: bundled classifiers and any added with :func:`register_classifier`.
CLASSIFIERS: dict[str, ClassifierEntry] = {}


def register_classifier(name: str, path: str | os.PathLike, *, prior: str | None = None) -> ClassifierEntry:
    """Make the classifier at ``path`` loadable as ``load_classifier(name)``; a name already
    registered is a ValueError."""
    name = str(name)
    if name in CLASSIFIERS:
        raise ValueError(f"a classifier named {name!r} is registered already ({CLASSIFIERS[name].path})")
    entry = ClassifierEntry(name, Path(path), prior)
    CLASSIFIERS[name] = entry
    return entry


register_classifier("digits-classifier", WEIGHTS_DIR / "digits-classifier.pt", prior="digits")
register_classifier("ct-region-classifier", WEIGHTS_DIR / "ct-region-classifier.pt", prior="ct-anatomy")


def _resolve(path_or_name: str | os.PathLike) -> Path:
    """A registered name (a str with no separator and no .pt suffix) or a path."""
    if isinstance(path_or_name, str) and "/" not in path_or_name and os.sep not in path_or_name \
            and not path_or_name.endswith(".pt"):
        if path_or_name not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {path_or_name!r}; registered: {sorted(CLASSIFIERS)} (to load a "
                             "file, pass a path with a separator or a .pt suffix)")
        return CLASSIFIERS[path_or_name].path
    return Path(path_or_name)


def _state_for(model: TimeClassifier, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    if set(state) != set(expected):
        raise ValueError(f"{source}: stored weights do not match the classifier built from its config")
    return {name: value.to(expected[name].dtype) for name, value in state.items()}


def load_classifier(path_or_name: str | os.PathLike, device: str | torch.device | None = None,
                    weights: Literal["ema", "raw"] = "ema") -> TimeClassifier:
    """A trained classifier ready for guidance: eval mode, parameters frozen, float32."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    path = _resolve(path_or_name)
    content = read_classifier(path)
    if weights == "ema":
        if content["ema"] is None:
            raise ValueError(f"{str(path)!r} holds no EMA weights; load it with weights='raw'")
        stored = content["ema"]["shadow"]
    else:
        stored = content["weights"]
        if stored is None:
            raise ValueError(f"{str(path)!r} holds no raw weights (an export keeps only EMA); use weights='ema'")
    model = TimeClassifier(content["classifier_config"])
    model.load_state_dict(_state_for(model, stored, repr(str(path))))
    model.eval()
    model.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model


def resolve_classifier(classifier: Any, device: str | torch.device | None = None) -> Any:
    """A classifier object as given (any callable ``(x, t) -> logits``), or loaded from a name or path."""
    if isinstance(classifier, (str, os.PathLike)):
        return load_classifier(classifier, device=device)
    if not callable(classifier):
        raise TypeError(f"classifier must be a loaded classifier, a registered name or a checkpoint path, "
                        f"got {type(classifier).__name__}")
    return classifier


def export_classifier(source: str | os.PathLike, path_out: str | os.PathLike, *, half: bool = True,
                      default_scale: float | None = None, prior: str | None = None) -> Path:
    """A compact, guidance-only copy of a classifier checkpoint: EMA weights (float16 parameters
    with ``half``), config and step, no optimiser. ``default_scale`` and ``prior`` replace the
    config's (the scale chosen on validation samples is stored this way)."""
    content = read_classifier(_resolve(source))
    config = content["classifier_config"]
    updates = {key: value for key, value in (("default_scale", default_scale), ("prior", prior)) if value is not None}
    config = ClassifierConfig.model_validate({**config.model_dump(), **updates})
    model = TimeClassifier(config)
    state = _state_for(model, content["ema"]["shadow"] if content["ema"] is not None else content["weights"],
                       str(source))
    parameters = {name for name, _ in model.named_parameters()}
    if half:  # buffers (the Fourier frequencies) stay float32, as in checkpoint.export_model
        state = {name: value.half() if name in parameters else value for name, value in state.items()}
    decay = content["ema"]["decay"] if content["ema"] is not None else None
    out = _content(model, content["training_config"], content["step"], ema={"decay": decay, "shadow": state},
                   weights=None, optimizer=None)
    path_out = Path(path_out)
    atomic_torch_save(out, path_out)
    return path_out


# ---------------------------------------------------------------------------------------------
# training


@dataclass
class ClassifierTrainingResult:
    """``step`` after the call, the loss and batch accuracy of every step run, wall time, EMA."""

    step: int
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    ema: EMA | None = None


def data_statistics(images: torch.Tensor) -> tuple[float, float]:
    """(μ_d, σ_d) of a set of images, for :class:`ClassifierConfig`'s input scaling."""
    return float(images.mean()), float(images.std().clamp_min(1e-3))


def noisy_batch(sde: SDE, images: torch.Tensor, eps: float, generator: torch.Generator,
                dequantize_levels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = m(t) x_0 + std(t) z with t ~ U(eps, T) per item (and optional dequantisation): (x_t, t)."""
    if dequantize_levels is not None:
        images = images + torch.rand(images.shape, generator=generator) / (dequantize_levels - 1)
    t = eps + (sde.T - eps) * torch.rand(images.shape[0], generator=generator)
    z = torch.randn(images.shape, generator=generator)
    return expand_to(sde.mean_coefficient(t), images) * images + expand_to(sde.marginal_std(t), images) * z, t


def train_classifier(
    model: TimeClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: ClassifierTrainingConfig,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
) -> ClassifierTrainingResult:
    """Train ``model`` by cross-entropy on noisy images from its own SDE; resumes exactly.

    Step k: indices of a batch of ``batch_size`` images, t ~ U(eps, T), z ~ N(0, I) (and the
    dequantisation noise) from a generator seeded by (seed, k); loss = cross-entropy of the
    logits at (x_t, t) against the labels; AdamW at lr · min(1, (k + 1) / warmup_steps),
    gradients clipped; EMA update. A checkpoint written after step k resumes to the same weights
    as an uninterrupted run (same torch build).

    Parameters
    ----------
    images, labels:
        (N, C, H, W) float images in the model's value range and (N,) class indices.
    checkpoint_path:
        Written every ``checkpoint_every`` steps and at the end; resumed from when it exists
        and ``resume`` (its classifier config must equal the model's, and its training config
        may differ only in ``steps`` and ``checkpoint_every``).
    """
    expected = (model.channels, model.image_size, model.image_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != expected or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (N, {', '.join(map(str, expected))}), got "
                         f"{tuple(images.shape)} {images.dtype}")
    labels = torch.as_tensor(labels)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    if labels.numel() == 0 or labels.min() < 0 or labels.max() >= model.num_classes:
        raise ValueError(f"labels must lie in 0…{model.num_classes - 1}")
    images, labels = images.float().cpu(), labels.long().cpu()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay)
    step = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and resume and path.exists():
        content = read_classifier(path)
        if content["classifier_config"] != model.config:
            raise ValueError(f"{path} holds a different classifier configuration; pass resume=False to start over")
        stored = content["training_config"]
        if stored is not None:
            changed = {key for key in ClassifierTrainingConfig.model_fields
                       if getattr(stored, key) != getattr(config, key)} - _RESUMABLE_CHANGES
            if changed:
                raise ValueError(f"{path} was trained with different settings {sorted(changed)}; "
                                 "pass resume=False to start over")
        if content["weights"] is None or content["optimizer"] is None or content["ema"] is None:
            raise ValueError(f"{path} is an export without training state; it cannot be resumed")
        model.load_state_dict(_state_for(model, content["weights"], str(path)))
        optimizer.load_state_dict(content["optimizer"])
        ema.load_state_dict(content["ema"])
        step = content["step"]

    result = ClassifierTrainingResult(step=step, ema=ema)
    model.train()
    sde = model.sde
    started = time.perf_counter()
    bar = tqdm(range(step, config.steps), desc="classifier training", disable=not progress, leave=False)
    for k in bar:
        generator = torch.Generator().manual_seed(step_seed(config.seed, k, "classifier"))
        index = torch.randint(images.shape[0], (config.batch_size,), generator=generator)
        x_t, t = noisy_batch(sde, images[index], config.eps, generator, config.dequantize_levels)
        logits = model(x_t, t)
        loss = F.cross_entropy(logits, labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * min(1.0, (k + 1) / max(1, config.warmup_steps))
        optimizer.step()
        ema.update(model)
        result.losses.append(loss.item())
        result.accuracies.append(float((logits.argmax(1) == labels[index]).float().mean()))
        result.step = k + 1
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}", refresh=False)
        if path is not None and (result.step % config.checkpoint_every == 0 or result.step == config.steps):
            save_classifier(path, model, ema=ema, optimizer=optimizer, training_config=config, step=result.step)
    if path is not None and result.step == step:  # nothing to run: still leave a checkpoint behind
        save_classifier(path, model, ema=ema, optimizer=optimizer, training_config=config, step=result.step)
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


@torch.no_grad()
def accuracy_by_time(classifier: TimeClassifier, images: torch.Tensor, labels: torch.Tensor,
                     times: list[float], seed: int = 0, batch_size: int = 256) -> list[float]:
    """Held-out accuracy of argmax p_t(c | x_t) at each time in ``times``, x_t from the classifier's SDE
    with noise seeded by ``seed`` (the same draws at every t, scaled)."""
    sde = classifier.sde
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator)
    accuracies = []
    for time_point in times:
        correct = 0
        for start in range(0, images.shape[0], batch_size):
            x0 = images[start:start + batch_size]
            t = torch.full((x0.shape[0],), float(time_point))
            x_t = expand_to(sde.mean_coefficient(t), x0) * x0 + expand_to(sde.marginal_std(t), x0) * noise[
                start:start + batch_size]
            correct += int((classifier(x_t, t).argmax(1) == labels[start:start + batch_size]).sum())
        accuracies.append(correct / images.shape[0])
    return accuracies


def guidance_sde_check(prior_sde: SDE, classifier: Any) -> None:
    """ValueError when a classifier was trained on another SDE's noise than the prior samples from."""
    classifier_sde = getattr(classifier, "sde", None)
    if classifier_sde is not None and repr(classifier_sde) != repr(prior_sde):
        raise ValueError(f"the classifier was trained on noise from {classifier_sde!r}, the prior samples from "
                         f"{prior_sde!r}: train the classifier with this prior's SDE")


__all__ = [
    "TimeClassifier", "ClassifierConfig", "ClassifierArchitecture", "ClassifierTrainingConfig", "ClassifierRunConfig",
    "train_classifier", "save_classifier", "read_classifier", "load_classifier", "export_classifier",
    "resolve_classifier", "register_classifier", "CLASSIFIERS", "accuracy_by_time", "data_statistics",
    "noisy_batch", "guidance_sde_check",
]
