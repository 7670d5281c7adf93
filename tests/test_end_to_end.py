"""The whole chain on generated data: folds -> train -> predict -> stack -> blend -> score.

Shortened settings (tiny networks, a few short epochs) so it runs in CI; `make demo`
runs the same chain with the full demo settings.
"""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

import blend
import predict_folds
import score
import stacking_train
import train_folds
from src.audio.cache import load_features
from src.data.labels import read_train_csv, targets_matrix
from src.metrics import lwlrap
from src.predict.prediction_sets import read_prediction_set
from src.predict.predictor import count_tiles
from src.data.layout import read_test_fnames
from tests.helpers import demo_dataset, torch_threads

pytestmark = pytest.mark.slow  # minutes on 2 cores: `pytest -m "not slow"` leaves it out

# --jobs 1: the folds train in this process (--jobs auto would start a process per fold, whose start-up
# outweighs 2 tiny epochs; tests/test_jobs.py and tests/test_own_data.py run the --jobs path).
TINY = ["--workers", "0", "--jobs", "1", "--no-progress", "--set", "epoch_size=96", "--set", "batch_size=16"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    with torch_threads(1):
        yield demo_dataset(tmp_path_factory.mktemp("e2e") / "demo", seed=3, n_curated=60, n_noisy=30, n_test=20)


def test_chain_writes_every_output(demo_dir):
    d = str(demo_dir)
    # demo: the experiment's own steps (tile_step = test_tile_step = 32); demo_skip: test tiles every 64
    # frames (stacking's test input is clip probabilities, so the inputs' test steps may differ).
    for name, extra in (("demo", []), ("demo_skip", ["--test-step", "64"])):
        results = train_folds.main(["--experiment", name, "--data-dir", d, "--epochs", "2", *TINY])
        assert sorted(results) == [0, 1, 2, 3, 4]
        report = predict_folds.main(["--experiment", name, "--data-dir", d, *extra])
        assert report["folds"] == [0, 1, 2, 3, 4] and 0 < report["lwlrap"] <= 1
        assert json.loads((demo_dir / "predictions" / name / "val_lwlrap.json").read_text())["oof_step"] == 32
    stacking_train.main(["--experiment", "stacking_demo", "--data-dir", d, "--threads", "1", "--workers", "0",
                         "--no-progress", "--set", "epochs=2", "--set", "epoch_size=256"])
    blend.main(["--experiments", "demo", "demo_skip", "stacking_demo", "--data-dir", d])

    # Test predictions: tiles every test step; clip probabilities = per fold model the mean over tiles,
    # then the geometric mean over the fold models.
    test_specs = load_features(read_test_fnames(demo_dir), demo_dir / "test", demo_dir / "features", name="test",
                               workers=0).specs
    assert any(count_tiles(s.shape[1], 64, 32) != count_tiles(s.shape[1], 64, 64) for s in test_specs)
    for name, test_step in (("demo", 32), ("demo_skip", 64)):
        out = demo_dir / "predictions" / name
        assert json.loads((out / "val_lwlrap.json").read_text())["test_step"] == test_step
        folds = [read_prediction_set(out / "test" / f"fold_{k}") for k in range(5)]
        assert np.diff(folds[0].offsets).tolist() == [count_tiles(s.shape[1], 64, test_step) for s in test_specs]
        fold_means = [[f.clip_tiles(i).mean(0) for i in range(len(test_specs))] for f in folds]
        expected = np.exp(np.mean(np.log(np.clip(fold_means, 1e-7, 1)), axis=0))
        np.testing.assert_allclose(read_prediction_set(out / "test").probs, expected, rtol=1e-5)

    exp = demo_dir / "experiments" / "demo"
    config = json.loads((exp / "config.json").read_text())
    assert config["experiment"]["epoch_size"] == 96 and config["classes"][0] == "Sine_tone"
    # The demo data's own corrections: no curated file, the simulated review of the noisy clips.
    noisy_fix = (demo_dir / "noisy_corrections.json").read_bytes()
    assert config["corrections"]["curated"] is None
    assert config["corrections"]["noisy"]["sha256"] == hashlib.sha256(noisy_fix).hexdigest()
    stacking = json.loads((demo_dir / "experiments" / "stacking_demo" / "config.json").read_text())
    assert stacking["corrections"] == {"curated": None}
    for fold in range(5):
        assert len(list((exp / f"fold_{fold}").glob("model-*.pth"))) == 1
        assert (exp / f"fold_{fold}" / "curves.png").stat().st_size > 0
        assert len(pd.read_csv(exp / f"fold_{fold}" / "log.csv")) == 2

    # Kaggle-format submission: header, every test file once, probabilities in [0, 1].
    submission = pd.read_csv(demo_dir / "predictions" / "blend" / "submission.csv")
    sample = pd.read_csv(demo_dir / "sample_submission.csv")
    assert list(submission.columns) == list(sample.columns)
    assert submission["fname"].tolist() == sample["fname"].tolist()
    values = submission.iloc[:, 1:].to_numpy()
    assert values.min() >= 0 and values.max() <= 1

    # The blended submission is the geometric mean of the three experiments' test predictions.
    parts = [pd.read_csv(demo_dir / "predictions" / n / "test" / "probs.csv").set_index("fname")
             .loc[sample["fname"], sample.columns[1:]].to_numpy() for n in ("demo", "demo_skip", "stacking_demo")]
    expected = np.exp(np.mean([np.log(np.clip(p, 1e-7, 1)) for p in parts], axis=0))
    assert np.allclose(values, expected, atol=1e-5)

    overall, _ = score.score(demo_dir / "predictions" / "blend" / "submission.csv", demo_dir / "test_labels.csv")
    labels = read_train_csv(demo_dir / "test_labels.csv")
    truth = targets_matrix(labels["labels"].tolist(), list(sample.columns[1:]))
    ordered = submission.set_index("fname").loc[labels["fname"]].to_numpy()
    assert overall == pytest.approx(lwlrap(truth, ordered))


def test_shortened_training_learns_well_above_chance(tmp_path, one_torch_thread):
    root = demo_dataset(tmp_path / "learn", seed=5, n_curated=120, n_noisy=12, n_test=12)
    results = train_folds.main(["--experiment", "demo", "--data-dir", str(root), "--folds", "0", "--epochs", "6",
                                "--workers", "0", "--no-progress", "--set", "noisy_prob=0", "--set",
                                "corr_noisy_prob=0", "--set", "epoch_size=512"])
    best = results[0]["best_val_lwlrap"]

    folds = pd.read_csv(root / "train_folds.csv")
    classes = list(pd.read_csv(root / "sample_submission.csv", nrows=0).columns[1:])
    truth = targets_matrix(folds.loc[folds["fold"] == 0, "labels"].tolist(), classes)
    rng = np.random.default_rng(0)
    chance = np.mean([lwlrap(truth, rng.random(truth.shape)) for _ in range(50)])
    assert best > chance + 0.3, (best, chance)
