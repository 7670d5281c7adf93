"""The `small` experiment (users' own data on a CPU) on generated demo data: it uses the noisy and
corrected-noisy streams only when their files exist, and it learns."""
import json
import shutil

import pandas as pd
import pytest

import make_folds
import train_folds
from src.data.demo_data import generate_demo_dataset
from src.experiments import get_experiment, use_available_sources

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A few short epochs of the real `small` network and recipe (mixers, SpecAugment, aux heads).
SHORT = ["--workers", "0", "--no-progress", "--folds", "0", "--set", "epoch_size=64", "--set", "batch_size=16"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("small") / "demo"
    generate_demo_dataset(root, seed=7, n_curated=30, n_noisy=10, n_test=2, progress=False)
    (root / "noisy_corrections.json").unlink()   # a user's folder: no hand-corrected noisy labels
    make_folds.main(["--data-dir", str(root)])
    return root


def _resolved(data_dir) -> dict:
    return json.loads((data_dir / "experiments" / "small" / "config.json").read_text())["experiment"]


def test_sources_follow_the_files_of_the_data_dir(tmp_path):
    small = get_experiment("small")
    assert small["noisy_prob"] > 0 and small["corr_noisy_prob"] > 0
    assert use_available_sources(small, tmp_path)["noisy_prob"] == 0          # no train_noisy.csv
    assert use_available_sources(small, tmp_path)["corr_noisy_prob"] == 0
    (tmp_path / "train_noisy.csv").write_text("fname,labels\n")
    only_noisy = use_available_sources(small, tmp_path)
    assert only_noisy["noisy_prob"] == small["noisy_prob"] and only_noisy["corr_noisy_prob"] == 0
    (tmp_path / "noisy_corrections.json").write_text("{}")
    assert use_available_sources(small, tmp_path) == small
    # the full-size recipes are left alone: they ask for their files
    assert use_available_sources(get_experiment("corr_noisy_007"), tmp_path / "empty") == \
        get_experiment("corr_noisy_007")


@pytest.mark.slow
def test_trains_with_noisy_clips_and_no_corrections(demo_dir):
    results = train_folds.main(["--experiment", "small", "--data-dir", str(demo_dir), "--epochs", "1", *SHORT])
    assert 0 < results[0]["best_val_lwlrap"] <= 1
    experiment = _resolved(demo_dir)
    assert experiment["noisy_prob"] == get_experiment("small")["noisy_prob"]
    assert experiment["corr_noisy_prob"] == 0


@pytest.mark.slow
def test_trains_without_a_noisy_set_and_learns(demo_dir, tmp_path):
    curated_only = tmp_path / "curated_only"
    shutil.copytree(demo_dir, curated_only, ignore=shutil.ignore_patterns("train_noisy*", "experiments"))
    results = train_folds.main(["--experiment", "small", "--data-dir", str(curated_only), "--epochs", "5",
                                *SHORT])
    assert _resolved(curated_only)["noisy_prob"] == 0
    log = pd.read_csv(curated_only / "experiments" / "small" / "fold_0" / "log.csv")
    # the training loss falls and the validation score rises above its first epoch's
    assert log["train_loss"].iloc[-2:].mean() < log["train_loss"].iloc[:2].mean()
    assert results[0]["best_val_lwlrap"] > log["val_lwlrap"].iloc[0]
