"""Denoising score-matching training with EMA, checkpoints and exact resume.

One optimiser step k (k = 0, 1, …, counted over the whole run, not per call):

1. take a batch x_0 (B, C, H, W) from the data (see :func:`train` for the three kinds);
2. L = :func:`scoreinv.losses.dsm_loss` (t ~ U(eps, T), z ~ N(0, I));
3. AdamW step at learning rate lr · min(1, (k + 1) / warmup_steps), gradients clipped to
   global norm ``grad_clip``;
4. EMA update of the weights with ``ema_decay``.

Every random draw of step k -- batch indices, t, z, dropout masks -- comes from generators
seeded by a hash of (config.seed, k). Step k is therefore a pure function of the state
before it and (seed, k), and resuming from a checkpoint written after step k reproduces
the uninterrupted run bit for bit (same device, same torch build).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset
from tqdm.auto import tqdm

from scoreinv.checkpoint import read_checkpoint, save_checkpoint
from scoreinv.config import TrainingConfig
from scoreinv.losses import dsm_loss
from scoreinv.models import EMA, ScoreModel

# Training-config fields that may change between a run and its resumption without
# breaking exactness: the length of the run and how often it is saved.
_RESUMABLE_CHANGES = {"steps", "checkpoint_every"}


@dataclass
class TrainingResult:
    """What one call to :func:`train` did.

    Attributes
    ----------
    step:
        The total number of optimiser steps taken after this call (including any resumed).
    losses:
        The loss of every step run in this call, in order.
    seconds:
        Wall-clock time of this call's training loop.
    ema:
        The EMA of the weights (the model itself holds the raw, last-iterate weights);
        ``ema.copy_to(model)`` puts the sampling weights into a model.
    """

    step: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    ema: EMA | None = None


def ema_decay(config: TrainingConfig, step: int) -> float:
    """The EMA decay of step k (0-based): min(ema_decay, (1 + k) / (10 + k)) with warm-up."""
    if not config.ema_warmup:
        return config.ema_decay
    return min(config.ema_decay, (1 + step) / (10 + step))


def step_seed(seed: int, step: int, stream: str) -> int:
    """A 63-bit seed for one random stream of one step: a hash of (seed, step, stream)."""
    digest = hashlib.blake2b(f"{seed}:{step}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _first_tensor(item: Any) -> Any:
    """Datasets and loaders often yield (image, label) pairs: the image comes first."""
    if isinstance(item, (tuple, list)) and item:
        return item[0]
    return item


class _Batches:
    """Batch k of the training data, for the three kinds of data :func:`train` accepts."""

    def __init__(self, data: Any, model: ScoreModel, config: TrainingConfig, device: torch.device) -> None:
        self.item_shape = (model.channels, model.image_size, model.image_size)
        self.config = config
        self.device = device
        self.data = data
        if isinstance(data, torch.Tensor):
            self.kind = "tensor"
            self._check(data, "data")
            if data.shape[0] == 0:
                raise ValueError("data tensor holds no images")
            bad = (~torch.isfinite(data)).sum().item()
            if bad:
                raise ValueError(f"data tensor holds {bad} non-finite values (NaN or inf)")
        elif isinstance(data, Dataset) and not isinstance(data, IterableDataset):
            self.kind = "dataset"
            if len(data) == 0:
                raise ValueError("dataset holds no items")
            first = torch.as_tensor(_first_tensor(data[0]))
            self._check(first[None], "dataset item")
        elif isinstance(data, Iterable):
            self.kind = "iterable"
            self._iterator: Iterator | None = None
            self._served = 0
        else:
            raise ValueError(
                "data must be a tensor (N, C, H, W), a map-style torch Dataset or an iterable of "
                f"(B, C, H, W) batches, got {type(data).__name__}"
            )

    def _check(self, batch: Any, what: str) -> None:
        expected = f"(B, {', '.join(map(str, self.item_shape))})"
        if not isinstance(batch, torch.Tensor) or not batch.is_floating_point():
            got = batch.dtype if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ValueError(f"{what} must be a floating tensor of shape {expected}, got {got}")
        if batch.dim() != 4 or tuple(batch.shape[1:]) != self.item_shape:
            raise ValueError(f"{what} must have shape {expected} to fit the model, got {tuple(batch.shape)}")

    def skip(self, steps: int) -> None:
        """Advance past the first ``steps`` batches (only the iterable kind has a position)."""
        if self.kind == "iterable":
            for _ in range(steps):
                self._next_from_iterable()

    def _next_from_iterable(self) -> torch.Tensor:
        if self._iterator is None:
            self._iterator = iter(self.data)
        try:
            return next(self._iterator)
        except StopIteration:
            pass
        # The iterable ended: start it again (an epoch boundary).
        previous, self._iterator = self._iterator, iter(self.data)
        if self._iterator is previous:
            raise ValueError(
                f"the data iterator ended after {self._served} batches and cannot be restarted; "
                "pass a re-iterable object (a list, a DataLoader) or enough batches for every step"
            )
        try:
            return next(self._iterator)
        except StopIteration:
            raise ValueError("the data iterable yields no batches") from None

    def batch(self, step: int) -> torch.Tensor:
        """The (B, C, H, W) float32 batch of step ``step``, on the training device."""
        if self.kind == "iterable":
            batch = torch.as_tensor(_first_tensor(self._next_from_iterable()))
            self._served += 1
            self._check(batch, f"batch {step}")
        else:
            generator = torch.Generator().manual_seed(step_seed(self.config.seed, step, "batch"))
            count = self.data.shape[0] if self.kind == "tensor" else len(self.data)
            indices = torch.randint(count, (self.config.batch_size,), generator=generator)
            if self.kind == "tensor":
                batch = self.data[indices.to(self.data.device)]
            else:
                batch = torch.stack([torch.as_tensor(_first_tensor(self.data[int(i)])) for i in indices])
                self._check(batch, f"batch {step}")
        return batch.to(self.device, torch.float32, non_blocking=True)


def _restore(
    path: Path,
    model: ScoreModel,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    config: TrainingConfig,
) -> int:
    """Load the training state from ``path`` into model, EMA and optimiser; return its step."""
    content = read_checkpoint(path)
    if content["model_config"] != model.config:
        raise ValueError(
            f"cannot resume from {str(path)!r}: it was written for a different model.\n"
            f"  stored: {content['model_config'].model_dump_json()}\n"
            f"  model:  {model.config.model_dump_json()}\n"
            "pass resume=False (the file will be overwritten) or another checkpoint_path"
        )
    absent = [key for key in ("weights", "ema", "optimizer") if content[key] is None]
    if absent:
        raise ValueError(
            f"cannot resume from {str(path)!r}: it holds no {', '.join(absent)} state "
            "(an export or a bare save, not a training checkpoint)"
        )
    stored = content["training_config"]
    if stored is not None:
        changed = sorted(
            name
            for name in TrainingConfig.model_fields
            if name not in _RESUMABLE_CHANGES and getattr(stored, name) != getattr(config, name)
        )
        if changed:
            warnings.warn(
                f"resuming from {str(path)!r} with a different training config ({', '.join(changed)}); "
                "the run will not match an uninterrupted one",
                stacklevel=3,
            )
    model.load_state_dict(content["weights"])
    ema.load_state_dict(content["ema"])
    optimizer.load_state_dict(content["optimizer"])
    return content["step"]


def train(
    model: ScoreModel,
    data: Any,
    config: TrainingConfig,
    checkpoint_path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainingResult:
    """Train ``model`` by denoising score matching, in place, up to ``config.steps`` steps.

    Parameters
    ----------
    model:
        The score model; its parameters are updated in place (raw weights). The EMA is
        returned in the result and written into the checkpoint.
    data:
        One of

        * a float tensor (N, C, H, W): each step draws ``batch_size`` indices with
          replacement;
        * a map-style :class:`torch.utils.data.Dataset` whose items are (C, H, W) tensors
          (or tuples whose first element is one): likewise;
        * any other iterable of (B, C, H, W) batches (or tuples whose first element is one),
          e.g. a list or a DataLoader: consumed in order and restarted when it ends. Its
          batch size is its own. On resume the first ``start_step`` batches are skipped,
          so the resumed run is exact only if the iterable yields the same batches every
          time it is iterated (a shuffling DataLoader needs a seeded generator).

        For the first two kinds, the indices of step k come from a generator seeded by
        (config.seed, k): batch k is a function of the seed and k alone. C, H, W must match
        the model (ValueError otherwise).
    config:
        Optimiser, schedule, EMA, loss weighting, checkpoint cadence, seed.
    checkpoint_path:
        If given, a checkpoint is written there every ``checkpoint_every`` steps and after
        the last step.
    device:
        Where to train; default the device of the model's parameters. The model is moved.
    resume:
        If the checkpoint file exists, continue from it (ValueError if it was written for a
        different model config). With ``resume=False`` an existing file is overwritten.
    progress:
        Show a tqdm bar with the loss and steps/s.

    Returns
    -------
    TrainingResult
        Final step, this call's per-step losses, seconds, and the EMA.

    Raises
    ------
    ValueError
        Data that does not fit the model, a checkpoint that does not fit it.
    FloatingPointError
        The loss became NaN or infinite; the message names the step.
    """
    if not isinstance(model, ScoreModel):
        raise ValueError(f"train needs a ScoreModel, got {type(model).__name__}")
    if not isinstance(config, TrainingConfig):
        raise ValueError(f"config must be a TrainingConfig, got {type(config).__name__}")
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError(
            "the model's parameters are all frozen (load_model freezes them); "
            "call model.requires_grad_(True) to train it"
        )
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    batches = _Batches(data, model, config, device)

    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay)
    start_step = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and resume and path.exists():
        start_step = _restore(path, model, ema, optimizer, config)
    if start_step >= config.steps:
        return TrainingResult(step=start_step, losses=[], seconds=0.0, ema=ema)
    batches.skip(start_step)

    use_amp = config.amp and device.type == "cuda"
    cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    was_training = model.training
    model.train()
    losses: list[float] = []
    bar = tqdm(total=config.steps, initial=start_step, disable=not progress, unit="step", dynamic_ncols=True)
    started = time.perf_counter()
    try:
        for step in range(start_step, config.steps):
            x0 = batches.batch(step)
            warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps > 0 else 1.0
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate * warmup

            noise = torch.Generator(device=device).manual_seed(step_seed(config.seed, step, "noise"))
            # Dropout draws from the global RNG: seed it per step, inside a fork so the
            # caller's RNG state is left as it was.
            with torch.random.fork_rng(devices=cuda_devices):
                torch.random.default_generator.manual_seed(step_seed(config.seed, step, "dropout"))
                if device.type == "cuda":
                    with torch.cuda.device(device):
                        torch.cuda.manual_seed(step_seed(config.seed, step, "dropout"))
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss = dsm_loss(model, model.sde, x0, noise, config.weighting, config.eps)
            value = loss.item()
            if not math.isfinite(value):
                bad_data = not torch.isfinite(x0).all().item()
                raise FloatingPointError(
                    f"training loss is {value} at step {step + 1}"
                    + (" (the batch holds NaN/inf values)" if bad_data else " (try a lower learning rate)")
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
            optimizer.step()
            ema.update(model, ema_decay(config, step))
            losses.append(value)

            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if path is not None and (done % config.checkpoint_every == 0 or done == config.steps):
                save_checkpoint(path, model, ema=ema, optimizer=optimizer, training_config=config, step=done)
    finally:
        bar.close()
        model.train(was_training)
    return TrainingResult(step=config.steps, losses=losses, seconds=time.perf_counter() - started, ema=ema)
