"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tests use tiny tensors: one thread avoids oversubscribing a 2-core machine
    (two threads slowed small networks by up to 80× when another process shared the cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
