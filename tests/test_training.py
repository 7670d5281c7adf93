"""CPU thread budgeting of the training scripts (src.runtime.set_cpu_threads)."""
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


def test_curves_are_redrawn_at_most_every_interval_and_always_at_the_end(tmp_path, monkeypatch):
    """A thin network's epoch is seconds long: the PNG is not redrawn every epoch, but the last
    picture (end of training, or a stop by an exception) always shows every logged epoch."""
    drawn = []
    monkeypatch.setattr(training, "plot_training_curves", lambda log, png, title: drawn.append(len(log)))
    now = [0.0]
    monkeypatch.setattr(training.time, "monotonic", lambda: now[0])
    log = tmp_path / "log.csv"
    plot = training.CurvesPlot(log, tmp_path / "curves.png", min_interval=30.0)
    for epoch, t in enumerate([0.0, 10.0, 31.0, 40.0]):  # the epochs end at these times
        now[0] = t
        log.write_text("epoch,val_lwlrap\n" + "".join(f"{e},0.5\n" for e in range(epoch + 1)))
        plot.epoch_complete(None)
    assert drawn == [1, 3]          # the first epoch, then once 30 s had passed
    plot.complete(None)
    assert drawn[-1] == 4           # the end of training: every epoch
    monkeypatch.setattr(training, "plot_training_curves", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    plot.catch_exception(None)      # a failing picture never hides the exception that stopped training
