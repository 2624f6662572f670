"""`scoreinv batch` under torchrun (2 CPU processes, gloo) equals the single-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
from tiny_batch import data_file, tiny_checkpoint

from scoreinv.config import ReconstructionSettings
from scoreinv.app.batch import reconstruct_h5, work_folder


def read(path):
    with h5py.File(path, "r") as handle:
        return {key: np.asarray(handle[key]) for key in handle}, json.loads(handle.attrs["run"])


def test_two_processes_write_what_one_process_writes(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    data = data_file(tmp_path, n=5)
    out = tmp_path / "distributed.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SCOREINV_DIST_BACKEND": "gloo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "scoreinv", "batch", str(data), str(out), "--model", str(checkpoint), "--steps", "5",
               "--num-samples", "2", "--seed", "5", "--batch-size", "2"]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("5 items: 5 computed") == 1  # one summary line, from rank 0
    assert not work_folder(out).exists()

    single = tmp_path / "single.h5"
    reconstruct_h5(data, single, checkpoint, ReconstructionSettings(steps=5, num_samples=2, seed=5),
                   batch_size=2, progress=False)
    (joined, run), (reference, _) = read(out), read(single)
    assert run["world_size"] == 2
    assert joined.keys() == reference.keys() and joined["done"].all()
    for key in reference:
        assert np.array_equal(joined[key], reference[key]), key
