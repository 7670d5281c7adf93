"""train_folds.py --jobs: folds trained in parallel single-threaded children, and one run per fold at a time.

The end-to-end tests train 2 folds of the demo experiment for 2 tiny epochs in 2 child processes
(their start, importing torch, is most of the time), against a lone in-process run of one fold.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import train_folds
from src.cli import run
from src.errors import BadSetting, UserError
from src.experiments import EXPERIMENTS, get_experiment
from src.locks import exclusive_lock
from src.train.jobs import choose_jobs, thin_network
from src.train.resume import LAST_STATE, load_training_state
from tests.helpers import ROOT, demo_dataset, torch_threads

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
TINY = ["--experiment", "demo", "--epochs", "2", "--device", "cpu", "--no-progress",
        "--set", "epoch_size=32", "--set", "batch_size=16", "--set", "plateau.patience=1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A tiny generated dataset with its feature cache (computed once), no experiments."""
    with torch_threads(1):
        root = demo_dataset(tmp_path_factory.mktemp("jobs") / "data", seed=3, n_curated=20, n_noisy=5, n_test=5)
        from src.data.sources import load_training_data
        from src.experiments import data_settings
        load_training_data(root, **data_settings(get_experiment("demo")), workers=0)
    return root


def copy_data(src, dst) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("experiments"))
    return Path(dst)


def fold_files(data_dir, fold) -> tuple:
    """(log.csv without times, best checkpoint's name and weights, last training state's weights) of a fold."""
    folder = Path(data_dir) / "experiments" / "demo" / f"fold_{fold}"
    [best] = folder.glob("model-*.pth")
    return (pd.read_csv(folder / "log.csv").drop(columns="time"), best.name,
            torch.load(best, weights_only=True)["nn_state_dict"], load_training_state(folder / LAST_STATE)["model"])


def assert_same_fold(a, b):
    pd.testing.assert_frame_equal(a[0], b[0])
    assert a[1] == b[1]
    for weights_a, weights_b in ((a[2], b[2]), (a[3], b[3])):
        assert weights_a.keys() == weights_b.keys()
        for key in weights_a:
            assert torch.equal(weights_a[key], weights_b[key]), key


# ----------------------------------------------------------------------------- how many processes

def test_auto_uses_the_cores_for_the_thin_experiments_on_a_cpu_only():
    assert sorted(name for name, experiment in EXPERIMENTS.items() if thin_network(experiment)) == \
        ["demo", "demo_skip", "small"]
    small, full = get_experiment("small"), get_experiment("corr_noisy_007")
    decide = dict(device=CPU, distributed=False, experiment=small)
    assert choose_jobs("auto", folds=5, cores=4, **decide) == 5       # one process per fold
    assert choose_jobs("auto", folds=5, cores=2, **decide) == 5       # time-shared: no core idles at the end
    assert choose_jobs("auto", folds=20, cores=2, **decide) == 8      # at most 4 per core (memory)
    assert choose_jobs("auto", folds=5, cores=1, **decide) == 1       # one core: nothing to share
    assert choose_jobs("auto", folds=2, cores=4, **decide) == 2       # no more processes than folds
    assert choose_jobs("auto", folds=0, cores=4, **decide) == 1       # --resume of a finished experiment
    assert choose_jobs("auto", folds=5, cores=4, workers=0, **decide) == 5  # what the children use anyway
    assert choose_jobs("auto", folds=5, cores=4, threads=2, **decide) == 1  # one process configured by hand
    assert choose_jobs("auto", folds=5, cores=4, workers=2, **decide) == 1
    assert choose_jobs("auto", folds=5, cores=4, device=CUDA, distributed=False, experiment=small) == 1
    assert choose_jobs("auto", folds=5, cores=4, device=CPU, distributed=True, experiment=small) == 1
    assert choose_jobs("auto", folds=5, cores=4, device=CPU, distributed=False, experiment=full) == 1
    wide = get_experiment("small")
    wide["model"][1]["base_size"] = 32                                 # --set model.base_size=32
    assert choose_jobs("auto", folds=5, cores=4, device=CPU, distributed=False, experiment=wide) == 1


def test_an_explicit_number_is_kept_or_refused_where_it_cannot_work():
    decide = dict(device=CPU, distributed=False, experiment=get_experiment("corr_noisy_007"))
    assert choose_jobs(3, folds=5, **decide) == 3   # asked for: also for a full-size experiment
    assert choose_jobs(4, folds=2, **decide) == 2
    assert choose_jobs(1, folds=5, threads=4, workers=3, **decide) == 1
    with pytest.raises(BadSetting, match="on cuda use --jobs 1"):
        choose_jobs(2, folds=5, device=CUDA, distributed=False, experiment=get_experiment("small"))
    with pytest.raises(BadSetting, match="torchrun"):
        choose_jobs(2, folds=5, device=CPU, distributed=True, experiment=get_experiment("small"))
    with pytest.raises(BadSetting, match="leave --threads and --workers out"):
        choose_jobs(2, folds=5, threads=2, **decide)


def test_a_stop_that_python_swallows_is_raised_again_at_the_next_step(monkeypatch):
    """SIGINT's KeyboardInterrupt raised inside a __del__ (where the garbage collector may run one) is only
    printed as 'Exception ignored': a child would train on. Its stop check raises it at the next step."""
    from src.train import jobs

    monkeypatch.setattr(jobs.StopRequested, "requested", False)
    ignored = []  # what Python reports as "Exception ignored in ..."
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)

    class Collected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs in here
            for _ in range(1000):                 # (Python runs it between two bytecodes)
                pass

    previous = signal.signal(signal.SIGINT, jobs._stop)
    try:
        Collected()                              # collected at once: SIGINT inside __del__, swallowed
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [type(report.exc_value) for report in ignored] == [KeyboardInterrupt]
    with pytest.raises(KeyboardInterrupt):
        jobs.StopRequested().iteration_complete(None)


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_a_fold_trained_in_a_job_equals_the_fold_trained_alone(dataset, tmp_path, capsys):
    parallel, alone = copy_data(dataset, tmp_path / "parallel"), copy_data(dataset, tmp_path / "alone")
    results = train_folds.main([*TINY, "--data-dir", str(parallel), "--folds", "0", "1", "--jobs", "2"])
    out = capsys.readouterr().out
    assert "2 single-threaded processes" in out
    # Each child's lines come whole, prefixed with its fold; the epoch lines are there.
    epoch_lines = [line for line in out.splitlines() if "val_lwlrap:" in line]
    assert epoch_lines and all(line.startswith(("[fold 0] ", "[fold 1] ")) for line in epoch_lines), out
    for fold in (0, 1):
        assert sum(line.startswith(f"[fold {fold}] ") and "val - epoch: 1," in line for line in epoch_lines) == 1
    assert sorted(results) == [0, 1]
    assert results[1] == json.loads((parallel / "experiments/demo/fold_1/done.json").read_text())
    assert_locks_released(parallel / "experiments" / "demo")

    with torch_threads(1):
        train_folds.main([*TINY, "--data-dir", str(alone), "--folds", "1", "--threads", "1", "--workers", "0"])
    assert_same_fold(fold_files(parallel, 1), fold_files(alone, 1))


@pytest.mark.slow
def test_a_failing_child_is_reported_with_its_fold_and_stops_the_run(dataset, tmp_path, capsys):
    data = copy_data(dataset, tmp_path / "data")
    broken = data / "experiments" / "demo" / "fold_1" / LAST_STATE
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a torch file")  # --resume keeps the fold; its child fails loading the state
    argv = [*TINY, "--data-dir", str(data), "--folds", "0", "1", "--jobs", "2", "--resume"]
    with pytest.raises(SystemExit) as stopped:  # the script's exit: status 2 and one line naming the fold
        run(train_folds.main, argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("[fold 1] train_folds.py: error: ") for line in err), err  # the child's own line
    assert re.search(rf"error: fold 1 failed: {re.escape(str(broken))}: cannot load this training state safely "
                     rf"\(.*\); .* Move it away to train this fold from epoch 0, or use --overwrite$", err[-1]), err[-1]
    # Fold 0 was stopped or had finished: either way, nothing of it is lost and the locks are released.
    fold_0 = data / "experiments" / "demo" / "fold_0"
    assert (fold_0 / "done.json").is_file() or (fold_0 / LAST_STATE).is_file() or not fold_0.exists()
    assert_locks_released(data / "experiments" / "demo")


def test_a_fold_another_run_is_training_is_refused(dataset, tmp_path):
    data = copy_data(dataset, tmp_path / "data")
    exp_dir = data / "experiments" / "demo"
    with exclusive_lock(exp_dir / ".fold_0.lock", "fold 0 of experiment demo"):  # the other run
        with torch_threads(1):
            with pytest.raises(UserError, match=rf"^fold 0 of experiment demo\b.*\bpid {os.getpid()}\b"):
                train_folds.main([*TINY, "--data-dir", str(data), "--folds", "0", "--threads", "1",
                                  "--workers", "0"])
    assert not (exp_dir / "config.json").exists() and not (exp_dir / "fold_0").exists()  # nothing touched


@pytest.mark.slow
def test_ctrl_c_in_the_parent_stops_every_child_resumably(dataset, tmp_path):
    data = copy_data(dataset, tmp_path / "data")
    # The parent as a user runs it, with Python's own Ctrl-C handling (a test runner's shell may ignore SIGINT).
    script = ("import signal, sys\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "import train_folds\n"
              "from src.cli import run\n"
              "run(train_folds.main, sys.argv[1:])\n")
    argv = [*TINY, "--data-dir", str(data), "--folds", "0", "1", "--jobs", "2", "--set", "early_stopping=50",
            "--epochs", "50"]
    parent = subprocess.Popen([sys.executable, "-c", script, *argv], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines, training = [], set()
    for line in parent.stdout:  # until both children have validated their 2nd epoch (the 1st one's state is saved)
        lines.append(line)
        if "val - epoch: 1," in line:
            training.add(line[:len("[fold 0]")])
        if len(training) == 2:
            break
    assert training == {"[fold 0]", "[fold 1]"}, "".join(lines)
    parent.send_signal(signal.SIGINT)
    lines += parent.stdout.readlines()
    assert parent.wait() != 0
    out = "".join(lines)
    for fold in (0, 1):
        assert f"[fold {fold}] fold {fold}: stopped; --resume continues from its last finished epoch" in out, out
        folder = data / "experiments" / "demo" / f"fold_{fold}"
        assert (folder / LAST_STATE).is_file() and not (folder / "done.json").exists()
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and f"--fold-job\0{parent.pid}\0".encode() in _cmdline(p)]
    assert children == []  # none left training
    assert_locks_released(data / "experiments" / "demo")


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def assert_locks_released(exp_dir):
    """Every fold lock file the run took can be taken again: no process holds it (the files stay, by design)."""
    locks = sorted(exp_dir.glob(".fold_*.lock"))
    assert locks, "the run took no fold lock"
    for path in locks:
        with exclusive_lock(path, path.name):
            pass
