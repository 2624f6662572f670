"""Denoising score-matching training with EMA, checkpoints and exact resume.

One optimiser step k (k = 0, 1, …, counted over the whole run, not per call):

1. take a batch x_0 (B, C, H, W) from the data (see :func:`train` for the three kinds);
2. L = :func:`scoreinv.losses.dsm_loss` (t ~ U(eps, T) or log-normal noise levels, z ~ N(0, I));
3. AdamW step at learning rate lr · min(1, (k + 1) / warmup_steps), gradients clipped to
   global norm ``grad_clip``;
4. EMA update of the weights with ``ema_decay``.

Every random draw of step k -- batch indices, t, z, dropout masks -- comes from generators
seeded by a hash of (config.seed, k). Step k is therefore a pure function of the state
before it and (seed, k), and resuming from a checkpoint written after step k reproduces
the uninterrupted run bit for bit (same device, same torch build).

Under ``torchrun`` (:func:`scoreinv.distributed.world` reports more than one process) the
same loop runs data-parallel with :class:`~torch.nn.parallel.DistributedDataParallel`.
``batch_size`` is the global batch: every rank draws the same global batch indices and the
same global (t, z) for step k, and keeps its own contiguous block of B / W rows. Each rank's
loss is the mean over its rows and DDP averages the gradients over the W ranks, so the
gradient is that of the mean over the global batch: the run equals a single-process run
with the same global batch up to floating-point rounding (with dropout 0; dropout masks are
drawn per rank). Rank 0 alone shows the progress bar and writes checkpoints.
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
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, IterableDataset
from tqdm.auto import tqdm

from scoreinv.checkpoint import read_checkpoint, save_checkpoint
from scoreinv.config import TrainingConfig
from scoreinv.distributed import World, all_ok, barrier, device_for, world
from scoreinv.losses import dsm_draws, dsm_loss
from scoreinv.models import EMA, ScoreModel
from scoreinv.models.patch import position_channels

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


def edm_training_options(sigma_data: float) -> dict[str, Any]:
    """The ``TrainingConfig`` fields of the EDM recipe (Karras et al. 2022) for data of std σ_d:
    the EDM weighting and log-normal noise levels ln σ ~ N(−1.2 + ln 2σ_d, 1.2²), EDM's law
    (given for σ_d = 0.5) rescaled with the data. Pair it with ``ModelConfig(preconditioning="edm",
    sigma_data=σ_d)``."""
    return {"weighting": "edm", "noise_sampling": "lognormal", "lognormal_mean": -1.2 + math.log(2 * sigma_data),
            "lognormal_std": 1.2}


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


def _rows(world_: World, global_batch: int, what: str) -> slice:
    """This rank's contiguous block of rows of a global batch split evenly over the ranks."""
    if global_batch % world_.size:
        raise ValueError(
            f"{what} {global_batch} is not divisible by the {world_.size} processes of this torchrun job: "
            f"the global batch is split evenly, so use a multiple of {world_.size}"
        )
    share = global_batch // world_.size
    return slice(world_.rank * share, (world_.rank + 1) * share)


class _Batches:
    """Batch k of the training data, for the three kinds of data :func:`train` accepts.

    Under torchrun every rank computes the same global batch k (the same indices, or the
    same batch of the iterable) and loads only its own rows of it.
    """

    def __init__(
        self, data: Any, model: ScoreModel, config: TrainingConfig, device: torch.device, world_: World
    ) -> None:
        self.item_shape = (model.channels, model.image_size, model.image_size)
        self.config = config
        self.device = device
        self.data = data
        self.world = world_
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
        if self.kind != "iterable":
            _rows(world_, config.batch_size, "batch_size")

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

    def batch(self, step: int) -> tuple[torch.Tensor, None, int, slice]:
        """This rank's rows of the batch of step ``step``, no positions, the global batch size,
        and which rows.

        The rows are (B / W, C, H, W) float32 on the training device (all B rows when alone).
        """
        if self.kind == "iterable":
            # Every rank iterates the same data and keeps its block of each batch: exact, at
            # the cost of each rank loading whole batches.
            batch = torch.as_tensor(_first_tensor(self._next_from_iterable()))
            self._served += 1
            self._check(batch, f"batch {step}")
            size = batch.shape[0]
            rows = _rows(self.world, size, f"the size of batch {step} of the data iterable,")
            batch = batch[rows]
        else:
            generator = torch.Generator().manual_seed(step_seed(self.config.seed, step, "batch"))
            count = self.data.shape[0] if self.kind == "tensor" else len(self.data)
            size = self.config.batch_size
            rows = _rows(self.world, size, "batch_size")
            indices = torch.randint(count, (size,), generator=generator)[rows]
            if self.kind == "tensor":
                batch = self.data[indices.to(self.data.device)]
            else:
                batch = torch.stack([torch.as_tensor(_first_tensor(self.data[int(i)])) for i in indices])
                self._check(batch, f"batch {step}")
        return batch.to(self.device, torch.float32, non_blocking=True), None, size, rows


class _PatchBatches:
    """Batch k of a patch prior: random P×P patches of images of random size, with their positions.

    The data is a tensor (M, C, S, S) of large images. Item b of step k draws, from the step's
    generator, an image, an image size N_b = S / s_b for a factor s_b chosen uniformly among the
    integers that divide S and give N_b within the prior's ``[min_image_size, max_image_size]``
    (and N_b >= P), and a patch position (top, left) uniform in [0, N_b − P]². The patch is the
    s_b × s_b area average of the image (the image as rendered at N_b², with partial volume) at
    that position; its position channels are those of an N_b × N_b image.
    """

    def __init__(self, data: Any, model: ScoreModel, config: TrainingConfig, device: torch.device,
                 world_: World) -> None:
        if not isinstance(data, torch.Tensor) or not data.is_floating_point() or data.dim() != 4:
            got = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
            raise ValueError(f"a patch prior trains on a floating tensor of images (M, C, S, S), got {got}")
        channels, patch = model.channels, model.patch_size
        if data.shape[1] != channels or data.shape[2] != data.shape[3]:
            raise ValueError(f"data must have shape (M, {channels}, S, S) to fit the model, got {tuple(data.shape)}")
        if data.shape[0] == 0:
            raise ValueError("data tensor holds no images")
        source = data.shape[-1]
        low, high = model.image_sizes
        self.factors = [f for f in range(1, source + 1)
                        if source % f == 0 and low <= source // f <= high and source // f >= patch]
        if not self.factors:
            raise ValueError(f"images of {source}² give no image size in [{low}, {high}] by an integer factor: "
                             f"use images of a size between {low} and {high} (or a multiple of one)")
        bad = (~torch.isfinite(data)).sum().item()
        if bad:
            raise ValueError(f"data tensor holds {bad} non-finite values (NaN or inf)")
        self.data, self.patch, self.config, self.device, self.world = data, patch, config, device, world_
        _rows(world_, config.batch_size, "batch_size")

    @property
    def image_sizes(self) -> list[int]:
        """The image sizes N the patches are drawn from."""
        return [self.data.shape[-1] // f for f in self.factors]

    def skip(self, steps: int) -> None:
        """Batches depend on the step alone: nothing to skip."""

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, int, slice]:
        """This rank's patches (B / W, C, P, P) and positions (B / W, 2, P, P) of step ``step``,
        the global batch size, and which rows."""
        generator = torch.Generator().manual_seed(step_seed(self.config.seed, step, "batch"))
        size, patch = self.config.batch_size, self.patch
        indices = torch.randint(self.data.shape[0], (size,), generator=generator)
        factors = torch.tensor(self.factors)[torch.randint(len(self.factors), (size,), generator=generator)]
        image_sizes = self.data.shape[-1] // factors
        corners = (torch.rand((size, 2), generator=generator) * (image_sizes[:, None] - patch + 1)).long()
        rows = _rows(self.world, size, "batch_size")
        patches, positions = [], []
        offsets = torch.arange(patch)
        for b in range(size)[rows]:
            f, (top, left) = int(factors[b]), corners[b].tolist()
            crop = self.data[indices[b], :, top * f:(top + patch) * f, left * f:(left + patch) * f].float()
            patches.append(F.avg_pool2d(crop[None], f)[0] if f > 1 else crop)
            positions.append(position_channels((top + offsets)[None], (left + offsets)[None], int(image_sizes[b]))[0])
        x0 = torch.stack(patches).to(self.device, torch.float32)
        return x0, torch.stack(positions).to(self.device), size, rows


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
                stacklevel=4,
            )
    model.load_state_dict(content["weights"])
    ema.load_state_dict(content["ema"])
    optimizer.load_state_dict(content["optimizer"])
    return content["step"]


def _training_device(world_: World, requested: str | torch.device | None, model: ScoreModel) -> torch.device:
    """The requested device, else the model's; under torchrun an unindexed CUDA device is cuda:LOCAL_RANK."""
    device = device_for(world_, requested)
    if device is None:
        device = next(model.parameters()).device
        if world_.distributed and device.type == "cuda":
            device = torch.device("cuda", world_.local_rank)
    return device


def _exists_everywhere(path: Path, world_: World) -> bool:
    """Whether ``path`` exists, agreed by every rank (ValueError if only some ranks see it)."""
    exists = path.exists()
    if not world_.distributed:
        return exists
    everywhere, nowhere = all_ok(exists), all_ok(not exists)
    if not (everywhere or nowhere):
        raise ValueError(
            f"the checkpoint {str(path)!r} exists for some torchrun processes and not others: "
            "resuming needs a file system that every process shares"
        )
    return everywhere


def _global_mean(loss: torch.Tensor, world_: World) -> float:
    """The loss averaged over the ranks (each a mean over an equal shard): the global batch's loss."""
    if not world_.distributed:
        return loss.item()
    total = loss.detach().float().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.item() / world_.size


@dataclass
class _Run:
    """Everything one training run holds between its steps."""

    model: ScoreModel
    network: Any  # the model, or its DistributedDataParallel wrapper under torchrun
    config: TrainingConfig
    device: torch.device
    world: World
    parameters: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    ema: EMA
    batches: _Batches | _PatchBatches
    path: Path | None
    use_amp: bool
    cuda_devices: list[int]
    dropout_stream: str


def _set_up(model: ScoreModel, data: Any, config: TrainingConfig, checkpoint_path: str | os.PathLike | None,
            device: str | torch.device | None) -> _Run:
    """Check the arguments, place the model, wrap it for torchrun, build the optimiser and the EMA."""
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
    world_ = world()
    device = _training_device(world_, device, model)
    model.to(device)
    batches = (_PatchBatches if model.is_patch_prior else _Batches)(data, model, config, device, world_)

    network: Any = model
    if world_.distributed:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # Construction broadcasts rank 0's weights, so every rank starts from the same model.
        # The only buffers (the Fourier frequencies) are constants: no per-step broadcast.
        network = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay)
    cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    # Rank 0 draws the dropout masks a single process would; the others draw their own
    # (the same masks on every rank would correlate the shards).
    dropout_stream = "dropout" if world_.is_main else f"dropout:{world_.rank}"
    return _Run(model=model, network=network, config=config, device=device, world=world_, parameters=parameters,
                optimizer=optimizer, ema=ema, batches=batches,
                path=Path(checkpoint_path) if checkpoint_path is not None else None,
                use_amp=(config.amp and device.type == "cuda") or (config.cpu_amp and device.type == "cpu"),
                cuda_devices=cuda_devices,
                dropout_stream=dropout_stream)


def _resume(run: _Run, resume: bool) -> int:
    """The step to start from: the checkpoint's, restored into model, EMA and optimiser, or 0."""
    if run.path is not None and resume and _exists_everywhere(run.path, run.world):
        return _restore(run.path, run.model, run.ema, run.optimizer, run.config)
    return 0


def _train_step(run: _Run, step: int) -> float:
    """Optimiser step ``step`` (counted over the whole run); returns the loss of the global batch."""
    config, device, model = run.config, run.device, run.model
    x0, positions, global_batch, rows = run.batches.batch(step)
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps > 0 else 1.0
    for group in run.optimizer.param_groups:
        group["lr"] = config.learning_rate * warmup

    # (t, z) of the whole global batch from the step's seed; this rank's rows of it.
    noise = torch.Generator(device=device).manual_seed(step_seed(config.seed, step, "noise"))
    t, z = dsm_draws(model.sde, (global_batch, *x0.shape[1:]), noise, x0, config.eps, config.noise_sampling,
                     (config.lognormal_mean, config.lognormal_std))
    draws = (t[rows], z[rows])
    # Dropout draws from the global RNG: seed it per step, inside a fork so the
    # caller's RNG state is left as it was.
    with torch.random.fork_rng(devices=run.cuda_devices):
        torch.random.default_generator.manual_seed(step_seed(config.seed, step, run.dropout_stream))
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(step_seed(config.seed, step, run.dropout_stream))
        run.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=run.use_amp):
            # The mean over this rank's B / W rows; DDP's gradient average over the W
            # equal shards is then the gradient of the global batch's mean.
            score_fn = run.network if positions is None else (lambda x, t: run.network(x, t, positions))
            loss = dsm_loss(score_fn, model.sde, x0, None, config.weighting, config.eps, draws=draws,
                            sigma_data=model.config.sigma_data)
    value = _global_mean(loss, run.world)
    if not math.isfinite(value):
        bad_data = not torch.isfinite(x0).all().item()
        raise FloatingPointError(
            f"training loss is {value} at step {step + 1}"
            + (" (the batch holds NaN/inf values)" if bad_data else " (try a lower learning rate)")
        )
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.parameters, config.grad_clip)
    run.optimizer.step()
    run.ema.update(model, ema_decay(config, step))
    return value


def _checkpoint(run: _Run, done: int) -> None:
    """After ``done`` steps: write the checkpoint if one is due (rank 0), then every rank waits for it."""
    config = run.config
    if run.path is not None and (done % config.checkpoint_every == 0 or done == config.steps):
        if run.world.is_main:
            save_checkpoint(run.path, run.model, ema=run.ema, optimizer=run.optimizer, training_config=config,
                            step=done)
        # The others wait, so that the file is complete wherever train() has returned.
        barrier()


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

        Under torchrun with W processes, ``config.batch_size`` is the global batch and must
        be divisible by W; each rank loads its own B / W of the step's indices. An iterable
        is iterated whole by every rank and each rank keeps its contiguous block of every
        batch (whose size must then be divisible by W): give every rank the same iterable
        (a DataLoader without shuffling, or shuffling with a seeded generator), not one
        already sharded per rank.
    config:
        Optimiser, schedule, EMA, loss weighting, checkpoint cadence, seed.
    checkpoint_path:
        If given, a checkpoint is written there every ``checkpoint_every`` steps and after
        the last step (by rank 0 alone under torchrun; the others wait for it). It holds
        the plain model's weights, whether or not the run was distributed.
    device:
        Where to train; default the device of the model's parameters. The model is moved.
        Under torchrun, ``"cuda"`` (or a model on the GPU) means ``cuda:LOCAL_RANK``.
    resume:
        If the checkpoint file exists, continue from it (ValueError if it was written for a
        different model config). With ``resume=False`` an existing file is overwritten.
        Under torchrun every rank reads the same file, so it must be on a file system they
        share.
    progress:
        Show a tqdm bar with the loss and steps/s (on rank 0 only).

    Returns
    -------
    TrainingResult
        Final step, this call's per-step losses (under torchrun the mean over all ranks,
        i.e. the loss of the global batch, the same on every rank), seconds, and the EMA.

    Raises
    ------
    ValueError
        Data that does not fit the model, a checkpoint that does not fit it, a global
        batch not divisible by the number of torchrun processes.
    FloatingPointError
        The loss became NaN or infinite; the message names the step.
    """
    run = _set_up(model, data, config, checkpoint_path, device)
    start_step = _resume(run, resume)
    if start_step >= config.steps:
        return TrainingResult(step=start_step, losses=[], seconds=0.0, ema=run.ema)
    run.batches.skip(start_step)

    was_training = model.training
    model.train()
    losses: list[float] = []
    bar = tqdm(
        total=config.steps,
        initial=start_step,
        disable=not (progress and run.world.is_main),
        unit="step",
        dynamic_ncols=True,
    )
    started = time.perf_counter()
    try:
        for step in range(start_step, config.steps):
            value = _train_step(run, step)
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            _checkpoint(run, step + 1)
    finally:
        bar.close()
        model.train(was_training)
    return TrainingResult(step=config.steps, losses=losses, seconds=time.perf_counter() - started, ema=run.ema)
