"""--resume continues an interrupted fold from its saved training state, and never deletes results.

The end-to-end tests train fold 0 of the demo experiment for 5 tiny epochs (seconds on
one thread) and compare a run that was SIGKILLed after its second epoch and resumed
with an uninterrupted one: same log, same best checkpoint, same final weights.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import train_folds
from src.errors import BadSetting, ResultsExist
from src.experiments import get_experiment
from src.train.resume import LAST_STATE, load_training_state, rng_state, set_rng_state, trim_log_csv
from src.train.fit import prepare_experiment_dir
from tests.helpers import demo_dataset, demo_fold0_args, torch_threads, tree_bytes

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 5


def train_args(data_dir, *extra, workers=0, epochs=EPOCHS):
    # CPU: bitwise equal results (GPU kernels need not be deterministic). Plateau patience 1: the
    # learning rate changes within 5 epochs, so the scheduler state matters.
    return demo_fold0_args(data_dir, "--set", "plateau.patience=1", "--set", "early_stopping=4", *extra,
                           epochs=epochs, epoch_size=64, workers=workers)


def copy_data(src, dst):
    """The dataset and its feature cache, without experiments."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("experiments", "predictions"))
    return dst


def fold_dir(data_dir):
    return Path(data_dir) / "experiments" / "demo" / "fold_0"


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A dataset and an uninterrupted 5-epoch run of fold 0 on it (in workers=0 and workers=1 flavours)."""
    with torch_threads(1):
        root = demo_dataset(tmp_path_factory.mktemp("resume") / "data", seed=3, n_curated=40, n_noisy=10, n_test=10)
        train_folds.main(train_args(root))
        yield root


@pytest.mark.slow
def test_killed_run_resumes_at_the_next_epoch_and_matches_an_uninterrupted_one(reference, tmp_path, capsys):
    data = copy_data(reference, tmp_path / "data")
    # A real training process, SIGKILLed right after the training state of its 2nd epoch (epoch 1) is saved.
    killer = ("import os, signal, sys\n"
              "import src.train.resume as resume\n"
              "save = resume.TrainingState.epoch_complete\n"
              "def save_then_die(self, state):\n"
              "    save(self, state)\n"
              "    if state.epoch == 1:\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n"
              "resume.TrainingState.epoch_complete = save_then_die\n"
              "import train_folds\n"
              "train_folds.main(sys.argv[1:])\n")
    run = subprocess.run([sys.executable, "-c", killer, *train_args(data)], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    folder = fold_dir(data)
    assert not (folder / "done.json").exists()
    assert pd.read_csv(folder / "log.csv")["epoch"].tolist() == [0, 1]
    [best_before] = folder.glob("model-*.pth")
    best_bytes = best_before.read_bytes()
    torch.load(best_before, weights_only=True)  # the best checkpoint is intact and safe to load

    results = train_folds.main(train_args(data, "--resume"))
    assert "demo fold 0: resuming at epoch 2, best" in capsys.readouterr().out
    done = json.loads((folder / "done.json").read_text())
    assert done["provenance"]["resumed_at_epochs"] == [2] and done["provenance"]["seed"] == 42
    assert results[0]["best_epoch"] == done["best_epoch"]

    # Nothing lost: the checkpoint of before the kill is still there unless a better one replaced it.
    expected = fold_dir(reference)
    if best_before.exists():
        assert best_before.read_bytes() == best_bytes
    # The resumed run is the uninterrupted run: same log (but times), same best and final weights.
    resumed_log, reference_log = pd.read_csv(folder / "log.csv"), pd.read_csv(expected / "log.csv")
    pd.testing.assert_frame_equal(resumed_log.drop(columns="time"), reference_log.drop(columns="time"))
    [best], [reference_best] = folder.glob("model-*.pth"), expected.glob("model-*.pth")
    assert best.name == reference_best.name
    assert_same_weights(torch.load(best, weights_only=True)["nn_state_dict"],
                        torch.load(reference_best, weights_only=True)["nn_state_dict"])
    final, reference_final = load_training_state(folder / LAST_STATE), load_training_state(expected / LAST_STATE)
    assert final["epoch"] == reference_final["epoch"] == EPOCHS - 1
    assert_same_weights(final["model"], reference_final["model"])
    assert final["optimizer"]["param_groups"][0]["lr"] == reference_final["optimizer"]["param_groups"][0]["lr"]


@pytest.mark.slow
def test_resume_with_loader_workers_matches_too(reference, tmp_path):
    """Fresh workers each epoch are seeded from the loader's saved generator, so workers=1 resumes exactly
    (3 epochs, stopped after the 2nd: each epoch starts a worker process)."""
    interrupted, uninterrupted = copy_data(reference, tmp_path / "a"), copy_data(reference, tmp_path / "b")
    train_folds.main(train_args(uninterrupted, workers=1, epochs=3))

    import src.train.resume as resume
    save = resume.TrainingState.epoch_complete

    def save_then_stop(self, state):
        save(self, state)
        if state.epoch == 1:
            raise KeyboardInterrupt

    resume.TrainingState.epoch_complete = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            train_folds.main(train_args(interrupted, workers=1, epochs=3))
    finally:
        resume.TrainingState.epoch_complete = save
    train_folds.main(train_args(interrupted, "--resume", workers=1, epochs=3))
    resumed = load_training_state(fold_dir(interrupted) / LAST_STATE)
    assert resumed["epoch"] == 2
    assert_same_weights(resumed["model"], load_training_state(fold_dir(uninterrupted) / LAST_STATE)["model"])


def test_resume_of_a_finished_experiment_changes_no_byte(reference, capsys):
    experiment = reference / "experiments" / "demo"
    before = tree_bytes(experiment)
    assert train_folds.main(train_args(reference, "--resume")) == {}
    assert "fold 0: already finished, skipped" in capsys.readouterr().out
    assert tree_bytes(experiment) == before  # config.json keeps its seed and start time


def test_done_json_records_provenance(reference):
    provenance = json.loads((fold_dir(reference) / "done.json").read_text())["provenance"]
    assert provenance["seed"] == 42 and provenance["torch"] == torch.__version__
    assert provenance["numpy"] == np.__version__ and provenance["resumed_at_epochs"] == []
    assert {"argus", "started", "finished", "git_commit"} <= provenance.keys()


def make_experiment(tmp_path, seed=42):
    exp = tmp_path / "experiments" / "x"
    record = {"experiment": {"lr": 1}, "seed": seed, "started": "then"}
    (exp / "fold_0").mkdir(parents=True)
    (exp / "fold_0" / "model-003-0.500000.pth").write_bytes(b"weights")
    (exp / "fold_0" / "log.csv").write_text("time,epoch\n")
    (exp / "config.json").write_text(json.dumps(record))
    return exp, record


def test_a_fold_without_training_state_is_moved_aside_not_deleted(tmp_path, capsys):
    exp, record = make_experiment(tmp_path)
    config = (exp / "config.json").read_bytes()
    todo = prepare_experiment_dir(exp, {**record, "started": "now"}, [0], resume=True, overwrite=False)
    assert todo == [0] and "moved to" in capsys.readouterr().out
    [aside] = (exp / "fold_0").glob("replaced-*")
    assert (aside / "model-003-0.500000.pth").read_bytes() == b"weights"
    assert not list((exp / "fold_0").glob("model-*.pth"))
    assert (exp / "config.json").read_bytes() == config  # resumed: not rewritten


def test_a_fold_with_training_state_is_kept_for_fit_fold(tmp_path):
    exp, record = make_experiment(tmp_path)
    (exp / "fold_0" / LAST_STATE).write_bytes(b"state")
    assert prepare_experiment_dir(exp, record, [0], resume=True, overwrite=False) == [0]
    assert sorted(p.name for p in (exp / "fold_0").iterdir()) == ["last_state.pth", "log.csv", "model-003-0.500000.pth"]


def test_only_overwrite_discards(tmp_path):
    exp, record = make_experiment(tmp_path)
    with pytest.raises(ResultsExist, match="--resume"):
        prepare_experiment_dir(exp, record, [0], resume=False, overwrite=False)
    with pytest.raises(BadSetting, match="--seed 42"):
        prepare_experiment_dir(exp, {**record, "seed": 7}, [0], resume=True, overwrite=False)
    assert prepare_experiment_dir(exp, {**record, "started": "now"}, [0], resume=False, overwrite=True) == [0]
    assert not (exp / "fold_0").exists()
    assert json.loads((exp / "config.json").read_text())["started"] == "now"


def test_log_rows_after_the_saved_epoch_are_dropped(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("time,epoch,val_lwlrap\nt0,0,0.1\nt1,1,0.2\nt2,2,0.3\nt3,3,0.")
    trim_log_csv(log, 1)
    assert log.read_text() == "time,epoch,val_lwlrap\nt0,0,0.1\nt1,1,0.2\n"


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(1), np.random.seed(1)
    np.random.normal()  # a cached gaussian is part of numpy's state
    path = tmp_path / "rng.pth"
    torch.save(rng_state(generator), path)
    first = (np.random.random(3), torch.rand(3), torch.rand(3, generator=generator), random.random())
    set_rng_state(torch.load(path, weights_only=True), generator)
    again = (np.random.random(3), torch.rand(3), torch.rand(3, generator=generator), random.random())
    assert np.array_equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert torch.equal(first[2], again[2]) and first[3] == again[3]


def test_resume_completes_a_config_of_an_older_version_before_comparing(tmp_path):
    exp, record = make_experiment(tmp_path)
    current = json.loads(json.dumps(get_experiment("corr_noisy_007")))  # as config.json holds it
    old = json.loads(json.dumps(current))
    for key in ("optional_sources", "channels_last"):  # settings that did not exist yet: BASE's values
        del old[key]
    del old["plateau"]["min_lr"]

    def resume_over(old_experiment):
        (exp / "config.json").write_text(json.dumps({**record, "experiment": old_experiment}))
        return prepare_experiment_dir(exp, {**record, "experiment": current}, [0], resume=True, overwrite=False)

    assert resume_over(old) == [0]
    with pytest.raises(BadSetting, match="settings changed since training: "):
        resume_over({**old, "optional_sources": True})
    del old["test_tile_step"]  # an older run predicted test clips every tile_step (64) frames, not 128
    with pytest.raises(BadSetting, match="settings changed since training: "):
        resume_over(old)
