"""Data-parallel training under torchrun (2 CPU processes, gloo) equals one process.

Each torchrun launch starts 3 Python processes (agent + 2 workers) that import torch: a few
seconds each on a shared 2-core machine. Every launch has a timeout so a stuck rendezvous
or collective fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import tiny_model, tiny_model_config
from scoreinv import training
from scoreinv.checkpoint import read_checkpoint, save_checkpoint
from scoreinv.config import TrainingConfig
from scoreinv.distributed import World
from scoreinv.models import EMA, ScoreModel
from scoreinv.training import train

LAUNCH_TIMEOUT_S = 240

MODEL = tiny_model_config()


def training_config(steps: int, **overrides) -> TrainingConfig:
    settings = {
        "steps": steps, "batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 2,
        "ema_decay": 0.9, "checkpoint_every": 2, "seed": 5,
    }
    settings.update(overrides)
    return TrainingConfig(**settings)


def build(seed: int) -> ScoreModel:
    return tiny_model(MODEL, seed=seed)


def images() -> torch.Tensor:
    return torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def torchrun(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *arguments]
    try:
        return subprocess.run(
            command, check=False, cwd=cwd, env=environment, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"torchrun did not finish in {LAUNCH_TIMEOUT_S} s: {error.stderr}")


def assert_same_model(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Two runs' weights (or EMAs) agree up to rounding, as parameters and as a function.

    Two half-batch gradients summed by DDP differ from one full-batch gradient in the last
    bits. Adam divides by the gradient's own scale, so where the gradient is zero in exact
    arithmetic (biases whose per-channel constant a following GroupNorm removes) it turns
    that rounding noise into steps of up to the learning rate: a handful of such entries
    (18 of 40,753 here) differ by up to ~5e-4, without changing the network's output. All
    other entries agree to ~2e-6, the outputs to ~4e-6 of their scale (observed).
    """
    assert a.keys() == b.keys()  # plain (not "module."-prefixed) names: the single-process format
    gaps = torch.cat([(a[name].double() - b[name].double()).abs().flatten() for name in a])
    assert gaps.quantile(0.999).item() < 1e-5
    assert gaps.max().item() < 2e-3  # the zero-gradient entries: bounded by Adam's step, lr = 1e-3
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    t = torch.linspace(0.05, 1.0, 8)
    outputs = []
    for state in (a, b):
        model = ScoreModel(MODEL)
        model.load_state_dict(state)
        with torch.no_grad():
            outputs.append(model(x, t))
    scale = outputs[0].abs().max().item()
    assert (outputs[0] - outputs[1]).abs().max().item() < 3e-5 * scale


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        assert torch.equal(value, b[name]), name


WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import torch

    from scoreinv import training
    from scoreinv.config import ModelConfig, TrainingConfig
    from scoreinv.distributed import world
    from scoreinv.models import ScoreModel

    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    rank = world().rank
    saves = []
    original = training.save_checkpoint

    def spy(*args, **kwargs):
        saves.append(kwargs["step"])
        return original(*args, **kwargs)

    training.save_checkpoint = spy
    model_config = ModelConfig.model_validate_json((out / "model.json").read_text())
    half = TrainingConfig.model_validate_json((out / "half.json").read_text())
    full = TrainingConfig.model_validate_json((out / "full.json").read_text())
    data = torch.load(out / "images.pt")

    def build(seed):
        torch.manual_seed(seed)
        return ScoreModel(model_config)

    # Rank 1 starts from other weights: DDP must hand it rank 0's.
    dataset = torch.utils.data.TensorDataset(data)
    first = training.train(build(0 if rank == 0 else 7), dataset, half, out / "run.pt", progress=False)
    resumed_model = build(99)  # everything must come from the checkpoint
    second = training.train(resumed_model, dataset, full, out / "run.pt", progress=False)
    batches = [data[i : i + 4] for i in range(0, 12, 4)]  # 3 batches: a 4-step run cycles
    iterable_model = build(0)
    iterable = training.train(iterable_model, batches, half, progress=False)
    torch.save({"weights": resumed_model.state_dict(), "ema": second.ema.shadow,
                "iterable": iterable_model.state_dict()}, out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps({
        "saves": saves, "losses": first.losses + second.losses, "iterable_losses": iterable.losses,
    }))
    """
)


def test_torchrun_script_equals_one_process_with_resume_dataset_and_iterable(tmp_path):
    data = images()
    half, full = training_config(4), training_config(6)
    (tmp_path / "model.json").write_text(MODEL.model_dump_json())
    (tmp_path / "half.json").write_text(half.model_dump_json())
    (tmp_path / "full.json").write_text(full.model_dump_json())
    torch.save(data, tmp_path / "images.pt")
    (tmp_path / "worker.py").write_text(WORKER)

    launch = torchrun(["worker.py", str(tmp_path)], cwd=tmp_path)
    assert launch.returncode == 0, launch.stderr[-3000:]

    reference_model = build(0)
    reference = train(reference_model, data, full, progress=False)
    iterable_model = build(0)
    iterable = train(iterable_model, [data[i : i + 4] for i in range(0, 12, 4)], half, progress=False)

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    # Rank 0 alone wrote the checkpoints (every 2 steps and at the end of each call).
    assert reports[0]["saves"] == [2, 4, 6] and reports[1]["saves"] == []
    # Reported losses are the global batch's, the same on both ranks and as one process's.
    assert reports[0]["losses"] == reports[1]["losses"]
    np.testing.assert_allclose(reports[0]["losses"], reference.losses, rtol=1e-5)
    np.testing.assert_allclose(reports[0]["iterable_losses"], iterable.losses, rtol=1e-5)

    content = read_checkpoint(tmp_path / "run.pt")
    assert content["step"] == 6 and content["training_config"] == full
    assert_same_model(content["weights"], reference_model.state_dict())
    assert_same_model(content["ema"]["shadow"], reference.ema.shadow)
    assert_same_model(states[1]["iterable"], iterable_model.state_dict())
    # Every rank holds exactly the same weights and EMA (identical all-reduced gradients),
    # and the checkpoint holds them.
    for key in ("weights", "ema", "iterable"):
        assert_identical(states[0][key], states[1][key])
    assert_identical(content["weights"], states[0]["weights"])


def test_torchrun_cli_train_equals_one_process(tmp_path):
    data = images()
    config = training_config(5, checkpoint_every=100)
    np.save(tmp_path / "images.npy", data.numpy())
    (tmp_path / "config.json").write_text(
        json.dumps({"model": json.loads(MODEL.model_dump_json()), "training": json.loads(config.model_dump_json())})
    )
    # The CLI draws its initial weights unseeded: start it from a step-0 checkpoint of known
    # weights, which it resumes (every rank reads the same file).
    initial = build(0)
    optimizer = torch.optim.AdamW(initial.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    save_checkpoint(tmp_path / "m.pt", initial, ema=EMA(initial), optimizer=optimizer, training_config=config)

    launch = torchrun(
        ["-m", "scoreinv", "train", "images.npy", "--out", "m.pt", "--config", "config.json", "--steps", "5"],
        cwd=tmp_path,
    )
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert launch.stdout.count("trained to step 5") == 1  # one summary line, from rank 0

    reference_model = build(0)
    reference = train(reference_model, data, config, progress=False)
    content = read_checkpoint(tmp_path / "m.pt")
    assert content["step"] == 5
    assert_same_model(content["weights"], reference_model.state_dict())
    assert_same_model(content["ema"]["shadow"], reference.ema.shadow)


@pytest.mark.parametrize("kind", ["tensor", "dataset", "iterable"])
def test_global_batch_not_divisible_by_the_processes_is_refused(monkeypatch, kind):
    # The check runs before any collective, so a pretend 3-process world needs no launch
    # (an iterable's batch size is known at its first batch, after the DDP wrapping).
    monkeypatch.setattr(training, "world", lambda: World(rank=1, size=3, local_rank=1))
    monkeypatch.setattr(training, "DistributedDataParallel", lambda model, **_: model)
    data = images()
    if kind == "dataset":
        data = TensorDataset(data)
    elif kind == "iterable":
        data = [data[:4]]
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        train(build(0), data, training_config(2, batch_size=4), progress=False)


def test_each_rank_loads_its_block_of_the_global_batch(monkeypatch):
    """Rank r of W gets rows r·B/W … (r+1)·B/W − 1 of the single-process batch."""
    data = images()
    config = training_config(1, batch_size=6)
    model = build(0)
    alone = training._Batches(data, model, config, torch.device("cpu"), World())
    whole, _, size, _ = alone.batch(3)
    assert size == 6
    for rank in range(3):
        shard = training._Batches(data, model, config, torch.device("cpu"), World(rank=rank, size=3))
        rows, _, size, where = shard.batch(3)
        assert size == 6 and where == slice(2 * rank, 2 * rank + 2)
        assert torch.equal(rows, whole[2 * rank : 2 * rank + 2])
