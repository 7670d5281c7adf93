"""Data-parallel training (src/train/distributed.py): per-rank sampling, metric agreement, torchrun end to end.

Everything runs on CPU with the gloo backend and 2 processes.
"""
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from src.errors import BadInput, UserError
from src.train import distributed

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- per-rank sampling (one process)

def test_split_per_rank_keeps_the_global_batch_and_epoch():
    # The recipe's 128 x 256 epoch over 4 GPUs: 32 a step and 8192 an epoch per rank.
    assert distributed.split_per_rank(128, 4, "batch_size") == 32
    assert distributed.split_per_rank(32768, 4, "epoch_size") == 8192
    assert distributed.split_per_rank(128, 1, "batch_size") == 128
    with pytest.raises(ValueError, match=r"batch_size=128 does not split evenly over 3 .*batch_size=126"):
        distributed.split_per_rank(128, 3, "batch_size")


def test_rank_seeds_differ_and_rank_0_keeps_the_one_process_seed():
    seeds = [distributed.rank_seed(42 + fold, rank) for fold in range(5) for rank in range(8)]
    assert len(set(seeds)) == len(seeds)
    assert distributed.rank_seed(43, 0) == 43


def _as_tensor(spec):
    return torch.from_numpy(spec)


@pytest.mark.parametrize("workers", [0, 1])
def test_each_rank_draws_its_share_of_the_same_stream(workers):
    """Each rank: epoch_size / N samples in batches of batch_size / N, its own draws, the same source mix."""
    from src.data.datasets import build_train_dataset, make_loader
    from src.runtime import seed_everything

    world_size, epoch_size, batch_size, noisy_prob = 2, 4000, 40, 0.3
    # Clip i of a source is a 1 x 1 spectrogram holding i (noisy clips: 100 + i), so a sample names its clip.
    curated = ([np.full((1, 1), i, np.float32) for i in range(10)], np.eye(10, dtype=np.float32))
    noisy = ([np.full((1, 1), 100 + i, np.float32) for i in range(10)], np.eye(10, dtype=np.float32))

    def draw(rank):
        seed = distributed.rank_seed(7, rank)
        seed_everything(seed)  # workers=0 draws from the main process's numpy RNG
        dataset = build_train_dataset(curated, noisy, noisy_prob=noisy_prob, transform=_as_tensor,
                                      epoch_size=distributed.split_per_rank(epoch_size, world_size, "epoch_size"))
        loader = make_loader(dataset, distributed.split_per_rank(batch_size, world_size, "batch_size"),
                             shuffle=True, workers=workers, seed=seed, drop_last=True)
        batches = list(loader)
        assert len(dataset) == epoch_size // world_size
        assert len(loader) == len(batches) == epoch_size // batch_size  # same step count on every rank
        assert all(len(b[0]) == batch_size // world_size for b in batches)
        clips = torch.cat([b[0].flatten() for b in batches]).numpy()
        flags = torch.cat([b[2] for b in batches]).numpy()
        np.testing.assert_array_equal(flags, clips >= 100)  # the flag marks the noisy source
        return clips, flags

    (clips0, flags0), (clips1, flags1) = draw(0), draw(1)
    assert not np.array_equal(clips0, clips1)  # the ranks draw different samples...
    np.testing.assert_array_equal(draw(0)[0], clips0)  # ...reproducibly
    # ...from the same source probabilities: binomial sd of the share is ~0.01 per rank.
    for flags in (flags0, flags1):
        assert abs(flags.mean() - noisy_prob) < 0.04
    assert abs(np.concatenate([flags0, flags1]).mean() - noisy_prob) < 0.03


# ---------------------------------------------------------------- collectives (2 gloo processes)

def _collectives_worker(rank, world_size, tmp):
    """One rank of test_ranks_agree_*: asserts inside, mp.spawn re-raises failures in the parent."""
    from argus.callbacks import EarlyStopping, ReduceLROnPlateau

    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world_size)
    try:
        assert distributed.is_distributed() and distributed.is_main() == (rank == 0)

        # SyncMetrics: rank 0's val_lwlrap falls, rank 1's rises. Without syncing, rank 0 would
        # stop and lower its lr while rank 1 trained on (and DDP would hang); with it both follow rank 0.
        def run(sync):
            param = torch.nn.Parameter(torch.zeros(1))
            state = SimpleNamespace(metrics={}, stopped=False, logger=logging.getLogger("test"), epoch=0,
                                    model=SimpleNamespace(optimizer=torch.optim.SGD([param], lr=1.0)))
            callbacks = ([distributed.SyncMetrics()] if sync else []) + [
                ReduceLROnPlateau(monitor="val_lwlrap", better="max", patience=1, factor=0.5),
                EarlyStopping(monitor="val_lwlrap", better="max", patience=2)]
            for callback in callbacks:
                if hasattr(callback, "start"):  # argus calls only the event methods a callback defines
                    callback.start(state)
            for epoch in range(10):
                state.epoch = epoch
                value = 0.5 - 0.1 * epoch if rank == 0 else 0.5 + 0.01 * epoch
                state.metrics = {"train_loss": float(1 + 2 * rank), "val_lwlrap": value}
                for callback in callbacks:
                    callback.epoch_complete(state)
                if state.stopped:
                    break
            return epoch, state.model.optimizer.param_groups[0]["lr"], state.metrics

        epoch, lr, metrics = run(sync=True)
        assert (epoch, lr) == (2, 0.5)  # rank 0's story: no improvement at epochs 1, 2
        assert metrics == pytest.approx({"train_loss": 2.0, "val_lwlrap": 0.3})  # loss: mean of 1 and 3
        gathered = [None] * world_size
        dist.all_gather_object(gathered, (epoch, lr))
        assert gathered[0] == gathered[1]
        if rank == 1:
            assert run(sync=False)[:2] == (9, 1.0)  # the control: unsynced, rank 1 would not stop

        # run_on_main: only rank 0 runs it, every rank gets the result; rank 0's failure reaches all.
        calls = []
        assert distributed.run_on_main(lambda: calls.append(rank) or [0, 3]) == [0, 3]
        assert calls == ([0] if rank == 0 else [])
        def fail():
            raise BadInput("disk full")

        with pytest.raises(UserError, match="disk full"):  # on rank 1: "... because rank 0 failed: ..."
            distributed.run_on_main(fail)

        # main_first: rank 1 runs only after rank 0 finished (it reads what rank 0 wrote).
        cache = Path(tmp) / "cache.txt"
        read = distributed.main_first(lambda: cache.write_text("features") if rank == 0 else cache.read_text())
        assert read == (len("features") if rank == 0 else "features")
        # Tear down together: after main_first rank 0 would otherwise destroy its gloo group while rank 1
        # is still at work in it.
        dist.barrier()
        distributed.cleanup()
        # The group is really gone: no gloo thread outlives it into interpreter exit. (One did when
        # torch._dynamo was first imported after init_process_group, by the optimizer above: the cause of
        # the SIGABRT "terminate called without an active exception" once seen here; issue 24 and
        # src/train/distributed.py.)
        left = _gloo_threads_left()
        assert not left, f"rank {rank}: gloo threads alive after destroy_process_group: {left}"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _gloo_threads_left(wait=30.0) -> list:
    """The gloo threads still alive once those that are ending have ended. A thread whose join() has returned
    can still be listed for a moment (it has not been reaped yet; longer on a loaded machine), so this waits
    for the list to empty, up to `wait` seconds: a group that is kept alive keeps its threads for good."""
    deadline = time.monotonic() + wait
    while (names := _gloo_threads()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return names


def _gloo_threads() -> list:
    """Names of this process's native threads that belong to gloo (Linux: /proc/self/task/*/comm)."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return []
    names = []
    for task in tasks.iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:  # a thread that ended meanwhile
            continue
    return sorted(name for name in names if "gloo" in name)


@pytest.mark.slow
def test_ranks_agree_on_metrics_lr_and_stopping(tmp_path):
    mp.spawn(_collectives_worker, args=(2, str(tmp_path)), nprocs=2, join=True)


def test_one_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = distributed.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    assert info.device == torch.device("cpu") and not dist.is_initialized()
    assert distributed.run_on_main(lambda: 5) == 5 and distributed.main_first(lambda: 6) == 6
    distributed.barrier()  # returns at once
    model = SimpleNamespace(nn_module=torch.nn.Linear(2, 2))
    assert isinstance(distributed.wrap_ddp(model, info).nn_module, torch.nn.Linear)


# ---------------------------------------------------------------- torchrun end to end

@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    import make_folds
    from src.data.demo_data import generate_demo_dataset

    root = tmp_path_factory.mktemp("ddp") / "demo"
    generate_demo_dataset(root, n_curated=40, n_noisy=20, n_test=10, progress=False)
    make_folds.main(["--data-dir", str(root)])
    return root


RANK_LINE = re.compile(r"rank (\d)/2 fold 0: (\d+) epochs of (\d+) samples in (\d+) batches of (\d+), "
                       r"seed (\d+), final lr (\S+), best val_lwlrap (\S+)")


@pytest.mark.slow
def test_torchrun_trains_one_fold_on_two_processes(demo_dir, tmp_path):
    from src.train.checkpoints import load_checkpoint

    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--log-dir", str(logs), "--redirects", "3",  # each rank's output in its own file
               "train_folds.py", "--experiment", "demo", "--data-dir", str(demo_dir), "--folds", "0",
               "--epochs", "3", "--workers", "0", "--no-progress",
               "--set", "epoch_size=64", "--set", "batch_size=16", "--set", "model.base_size=4",
               "--set", "model.ratio=2", "--set", "crop_size=64",
               "--set", "early_stopping=1", "--set", "plateau.patience=0"]  # make stop and lr decisions likely
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    outputs = {int(p.parent.name): p.read_text() for p in logs.rglob("stdout.log")}
    assert done.returncode == 0, done.stderr[-3000:] + "".join(p.read_text() for p in logs.rglob("stderr.log"))

    # Each rank: half the epoch (32 of 64 samples) in batches of half the global batch, its own seed;
    # both ran the same number of epochs and ended with the same lr and best score.
    ranks = {}
    for rank, text in outputs.items():
        (match,) = RANK_LINE.findall(text)
        ranks[rank] = match
    assert sorted(ranks) == [0, 1]
    r0, r1 = ranks[0], ranks[1]
    assert r0[2:5] == r1[2:5] == ("32", "4", "8")
    assert r0[5] != r1[5]
    assert (r0[1], r0[6], r0[7]) == (r1[1], r1[6], r1[7])

    # Rank 0 alone wrote the outputs: one checkpoint, one log, and the log has one row per epoch run.
    exp = demo_dir / "experiments" / "demo"
    assert len(list(exp.rglob("model-*.pth"))) == 1 and len(list(exp.rglob("log.csv"))) == 1
    fold_dir = exp / "fold_0"
    assert sorted(p.name for p in fold_dir.iterdir() if not p.name.startswith("model-")) == \
        ["curves.png", "done.json", "last_state.pth", "log.csv", "log.txt"]
    log = (fold_dir / "log.csv").read_text().strip().splitlines()
    assert len(log) - 1 == int(r0[1])
    assert json.loads((exp / "config.json").read_text())["world_size"] == 2
    assert "experiment demo" in outputs[0] and "experiment demo" not in outputs[1]

    # The checkpoint is a plain argus model: no DDP wrapper, no "module." prefixes, loads on CPU.
    (checkpoint,) = fold_dir.glob("model-*.pth")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert not any(key.startswith("module.") for key in state["nn_state_dict"])
    model = load_checkpoint(checkpoint, device="cpu")
    assert isinstance(model.nn_module, torch.nn.Module)
    assert not isinstance(model.nn_module, torch.nn.parallel.DistributedDataParallel)
    probs = model.predict(torch.zeros(2, 3, 128, 64))
    assert probs.shape == (2, 12) and bool(((probs >= 0) & (probs <= 1)).all())
