"""Every full-size experiment of the original ensemble runs one (tiny) epoch on CPU.

The networks, losses, transforms and sampling are the real ones (128 x 256 inputs,
base 64, 80-class-sized heads replaced by the demo's 12 classes); only the epoch is
cut to a few samples so the suite stays fast.
"""
import hashlib
import json

import pytest
import torch

import train_folds
from src.train.checkpoints import load_checkpoint
from src.data.corrections import SHIPPED_DIR
from src.experiments import EXPERIMENTS
from tests.helpers import FULL_SIZE, demo_dataset



@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return demo_dataset(tmp_path_factory.mktemp("full") / "data", seed=11, n_curated=15, n_noisy=10, n_test=3)


def test_the_seven_ensemble_members_are_named():
    assert set(FULL_SIZE) <= set(EXPERIMENTS)
    for name in FULL_SIZE:
        assert EXPERIMENTS[name]["crop_size"] == 256 and EXPERIMENTS[name]["batch_size"] == 128
        assert EXPERIMENTS[name]["epoch_size"] == 32768 and EXPERIMENTS[name]["model"][1]["base_size"] == 64


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_experiment_runs_an_epoch_on_cpu(tiny_data, name):
    # The shipped 2019 noisy corrections name Kaggle clips: on generated data the corr_noisy_*
    # experiments take the data's own file instead (their curated versions match nothing and are kept).
    own_noisy = ["--set", "noisy_corrections=auto"] if EXPERIMENTS[name]["noisy_corrections"] else []
    results = train_folds.main(["--experiment", name, "--data-dir", str(tiny_data), "--folds", "0",
                                "--epochs", "1", "--workers", "0", "--threads", "2", "--no-progress",
                                "--set", "epoch_size=4", "--set", "batch_size=2", "--set", "val_batch_size=4",
                                *own_noisy])  # --threads: restored after the test (tests/conftest.py)
    assert results[0]["epochs_run"] == 1
    fold_dir = tiny_data / "experiments" / name / "fold_0"
    model = load_checkpoint(next(fold_dir.glob("model-*.pth")), device="cpu")
    config = json.loads((tiny_data / "experiments" / name / "config.json").read_text())
    assert model.params["nn_module"][0] == EXPERIMENTS[name]["model"][0]
    assert config["experiment"]["noisy_prob"] == EXPERIMENTS[name]["noisy_prob"]
    # config.json records the files applied: the shipped curated version (no clip of this data
    # matches it) and, for the corr_noisy_* experiments, the data's own noisy corrections.
    curated, noisy = config["corrections"]["curated"], config["corrections"]["noisy"]
    shipped = SHIPPED_DIR / f"{EXPERIMENTS[name]['curated_corrections']}.json"
    assert (curated["name"], curated["matched"]) == (shipped.name, 0)
    assert curated["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    if own_noisy:
        own = tiny_data / "noisy_corrections.json"
        assert noisy["path"] == str(own) and noisy["sha256"] == hashlib.sha256(own.read_bytes()).hexdigest()
    else:
        assert noisy is None
    probs = model.predict(torch.zeros(1, 3, 128, 256))
    assert probs.shape == (1, 12) and torch.all((probs >= 0) & (probs <= 1))
