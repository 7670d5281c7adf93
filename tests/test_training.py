"""CPU thread budgeting of the training scripts (src.utils.set_cpu_threads)."""
import pytest
import torch

from src.train import fit as training

CPU = torch.device("cpu")


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(training.os, "cpu_count", lambda: 4)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)  # torch's thread count: restored by tests/conftest.py


@pytest.mark.parametrize("workers, light, expected", [
    (1, False, 3),   # per-sample augmentation: each worker keeps a core busy
    (3, False, 1),
    (8, False, 1),   # never below one thread
    (3, True, 4),    # raw-crop workers (augment="device") are light: torch gets every core
])
def test_threads_leave_the_busy_workers_their_cores(four_cores, workers, light, expected):
    assert training.set_cpu_threads(CPU, workers, light_workers=light) == expected
    assert torch.get_num_threads() == expected


def test_requested_threads_win_and_torchrun_ranks_share_the_cores(four_cores, monkeypatch):
    assert training.set_cpu_threads(CPU, 3, requested=2) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks on this machine: 2 cores each
    assert training.set_cpu_threads(CPU, 1) == 1
    assert training.set_cpu_threads(CPU, 1, light_workers=True) == 2
