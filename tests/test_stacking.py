"""Tests for the second level: FCNet, tile-subset augmentation, stacked datasets, stacking_train.py."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import stacking_train
from src.errors import InputFileNotFound, ResultsExist, UserError
from src.metrics import lwlrap
from src.models import MODELS, create_model
from src.predict.prediction_sets import PredictionSet, clip_means, geometric_mean, read_prediction_set, write_prediction_set
from src.stacking import datasets as stacking_datasets
from src.stacking.datasets import StackedTiles, StackingDataset, TileSubsetMean, select_clips
from src.stacking.inputs import load_test_inputs
from src.stacking.experiments import FIRST_LEVEL, STACKING_EXPERIMENTS
from src.models.fcnet import FCNet


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- FCNet

def test_fcnet_parameter_count_matches_original():
    model = create_model("FCNet", in_features=560, num_classes=80, base_size=512, reduction=1)
    assert MODELS["FCNet"] is FCNet
    assert n_params(model) == 1_768_626


@pytest.mark.parametrize("reduction", [1, 2, 16])
def test_fcnet_parameter_count_formula(reduction):
    """Every Linear has a bias, each PReLU one slope: the count follows from the layer sizes."""
    n_in, n_cls, base = 560, 80, 512
    hidden = n_in // reduction
    expected = 2 * n_in * hidden + hidden + n_in + (n_in + 1) * 2 * base + (2 * base + 1) * base \
        + (base + 1) * n_cls + 2
    assert n_params(FCNet(n_in, n_cls, base, reduction)) == expected


def test_fcnet_output_shape_and_gate():
    torch.manual_seed(0)
    model = FCNet(in_features=24, num_classes=6, base_size=16, reduction=4, dropout=0.3).eval()
    x = torch.rand(5, 24)
    with torch.no_grad():
        out = model(x)
        gated = model.se(x)
    assert out.shape == (5, 6) and torch.isfinite(out).all()
    # The gate multiplies each input by a sigmoid in (0, 1).
    assert torch.all(gated.abs() <= x.abs()) and torch.all(gated > 0)


def test_fcnet_refuses_reduction_without_hidden_units():
    with pytest.raises(ValueError, match="reduction"):
        FCNet(in_features=8, num_classes=2, reduction=16)


# ----------------------------------------------------------------------------- augmentation

def kept_tiles(augment, n, draws=300):
    """Run `augment` on one-hot tiles: the non-zero columns of the result are the kept tiles."""
    results = []
    for _ in range(draws):
        out = augment(np.eye(n, dtype=np.float32))
        kept = np.flatnonzero(out)
        # The mean of k one-hot rows is 1/k on each kept column.
        np.testing.assert_allclose(out[kept], 1.0 / len(kept), rtol=1e-6)
        results.append(kept)
    return results


def is_run(kept) -> bool:
    return np.array_equal(kept, np.arange(kept[0], kept[-1] + 1))


def test_run_step_alone_keeps_contiguous_runs_of_every_length_and_start():
    np.random.seed(0)
    runs = kept_tiles(TileSubsetMean(run_prob=1.0, subset_prob=0.0), n=6)
    assert all(is_run(kept) for kept in runs)
    assert {len(k) for k in runs} == set(range(1, 7))
    assert {k[0] for k in runs} == set(range(6))  # every start position occurs


def test_subset_step_alone_keeps_subsets_that_are_not_only_runs():
    np.random.seed(1)
    subsets = kept_tiles(TileSubsetMean(run_prob=0.0, subset_prob=1.0), n=6)
    assert all(len(set(k)) == len(k) and set(k) <= set(range(6)) for k in subsets)
    assert {len(k) for k in subsets} == set(range(1, 7))
    assert any(not is_run(k) for k in subsets)


def test_no_step_keeps_every_tile():
    np.random.seed(2)
    assert all(len(k) == 5 for k in kept_tiles(TileSubsetMean(run_prob=0.0, subset_prob=0.0), n=5, draws=20))


def test_the_two_steps_are_independent_coin_flips(monkeypatch):
    """Each of the four outcomes (neither, run only, subset only, both) is a quarter of the samples.

    The steps are wrapped to record which ran (and to check that the subset step
    only draws from the tiles the run step left); 20,000 seeded draws put each
    frequency within 0.02 of 0.25, about 6.5 standard deviations.
    """
    calls = []

    def recording(step, name):
        def wrapped(tiles, rng):
            out = step(tiles, rng)
            assert set(out) <= set(tiles)
            calls.append(name)
            return out
        return wrapped

    monkeypatch.setattr(stacking_datasets, "random_run", recording(stacking_datasets.random_run, "run"))
    monkeypatch.setattr(stacking_datasets, "random_subset", recording(stacking_datasets.random_subset, "subset"))
    augment, rng, n, draws = TileSubsetMean(), np.random.RandomState(0), 40, 20_000
    counts, full = {}, 0
    for _ in range(draws):
        calls.clear()
        kept = augment.keep(n, rng)
        counts[tuple(calls)] = counts.get(tuple(calls), 0) + 1
        full += len(kept) == n
    assert set(counts) == {(), ("run",), ("subset",), ("run", "subset")}  # the run step always comes first
    for outcome, count in counts.items():
        assert abs(count / draws - 0.25) < 0.02, (outcome, count)
    # The plain mean over all tiles: the quarter with no step, plus the draws whose single run or
    # subset happened to keep everything (1 / n each).
    assert counts[()] <= full and abs(full / draws - (0.25 + 0.5 / n)) < 0.02, full


def test_augmented_features_are_the_mean_of_the_kept_tiles():
    augment = TileSubsetMean()
    tiles = np.random.default_rng(0).random((9, 5)).astype(np.float32)
    for seed in range(20):
        np.random.seed(seed)
        kept = augment.keep(len(tiles))
        np.random.seed(seed)
        out = augment(tiles)
        assert out.dtype == np.float32 and out.shape == (5,)
        np.testing.assert_allclose(out, tiles[kept].mean(axis=0), rtol=1e-6)


def test_single_tile_clip_gives_its_tile():
    tile = np.array([[0.2, 0.9]], np.float32)
    np.testing.assert_array_equal(TileSubsetMean()(tile), tile[0])


# ----------------------------------------------------------------------------- stacked tiles and dataset

def make_set(fnames, counts, classes, rng):
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    tiles = rng.random((offsets[-1], len(classes))).astype(np.float32)
    probs = np.stack([tiles[offsets[i]:offsets[i + 1]].mean(0) for i in range(len(fnames))])
    return PredictionSet(list(fnames), list(classes), probs, tiles, offsets)


def test_stacked_tiles_and_validation_features():
    rng = np.random.default_rng(0)
    fnames, classes, counts = ["a.wav", "b.wav", "c.wav"], ["x", "y", "z"], [2, 1, 4]
    first, second = make_set(fnames, counts, classes, rng), make_set(fnames, counts, classes, rng)
    stacked = StackedTiles.from_predictions({"first": first, "second": second})
    assert stacked.tiles.shape == (7, 6) and stacked.n_features == 6 and stacked.names == ["first", "second"]
    targets = np.eye(3, dtype=np.float32)
    dataset = StackingDataset(stacked, targets, clips=[2, 0])
    assert len(dataset) == 2
    features, target, flag = dataset[0]  # clip 2
    # Validation features: mean over all tiles; experiment-major columns.
    np.testing.assert_allclose(features[:3].numpy(), first.clip_tiles(2).mean(0), rtol=1e-6)
    np.testing.assert_allclose(features[3:].numpy(), second.clip_tiles(2).mean(0), rtol=1e-6)
    np.testing.assert_allclose(stacked.clip_means()[2], features.numpy(), rtol=1e-6)
    assert features.dtype == torch.float32 and target.tolist() == [0, 0, 1] and float(flag) == 0.0
    with pytest.raises(IndexError):
        dataset[2]


def test_training_dataset_uses_the_augmentation():
    rng = np.random.default_rng(1)
    pred = make_set(["a", "b"], [5, 3], ["x", "y"], rng)
    stacked = StackedTiles.from_predictions({"only": pred})
    dataset = StackingDataset(stacked, np.ones((2, 2)), augment=TileSubsetMean())
    np.random.seed(3)
    kept = TileSubsetMean().keep(5)
    np.random.seed(3)
    features, _, _ = dataset[0]
    np.testing.assert_allclose(features.numpy(), pred.clip_tiles(0)[kept].mean(0), rtol=1e-6)


def test_misaligned_experiments_are_refused_by_name():
    rng = np.random.default_rng(2)
    classes = ["x", "y"]
    good = make_set(["a", "b"], [2, 3], classes, rng)
    other_step = make_set(["a", "b"], [2, 4], classes, rng)
    other_clips = make_set(["a", "c"], [2, 3], classes, rng)
    no_tiles = PredictionSet(["a", "b"], classes, good.probs)
    with pytest.raises(ValueError, match="'coarse'.*tile counts"):
        StackedTiles.from_predictions({"fine": good, "coarse": other_step})
    with pytest.raises(ValueError, match="'elsewhere'.*clips"):
        StackedTiles.from_predictions({"fine": good, "elsewhere": other_clips})
    with pytest.raises(ValueError, match="'bare'.*tiles"):
        StackedTiles.from_predictions({"fine": good, "bare": no_tiles})


def test_select_clips_reorders_tiles_and_refuses_missing():
    rng = np.random.default_rng(3)
    pred = make_set(["a", "b", "c"], [1, 3, 2], ["x"], rng)
    picked = select_clips(pred, ["c", "a"])
    assert picked.fnames == ["c", "a"] and picked.offsets.tolist() == [0, 2, 3]
    np.testing.assert_array_equal(picked.clip_tiles(0), pred.clip_tiles(2))
    np.testing.assert_array_equal(picked.clip_tiles(1), pred.clip_tiles(0))
    np.testing.assert_array_equal(picked.probs, pred.probs[[2, 0]])
    with pytest.raises(ValueError, match="'zzz'"):
        select_clips(pred, ["a", "zzz"])


def test_named_configs():
    for name in ("stacking_008_fcnet_43040", "stacking_008_fcnet_45041", "stacking_008_fcnet_50013"):
        config = STACKING_EXPERIMENTS[name]
        assert config["inputs"] == FIRST_LEVEL and len(FIRST_LEVEL) == 7
        assert config["model"][0] == "FCNet" and config["model"][1]["base_size"] == 512
        assert (config["batch_size"], config["epoch_size"], config["early_stopping"]) == (128, 32768, 30)
    assert STACKING_EXPERIMENTS["stacking_008_fcnet_50013"]["model"][1]["reduction"] == 1
    assert STACKING_EXPERIMENTS["stacking_008_fcnet_45041"]["plateau"]["patience"] == 9
    assert STACKING_EXPERIMENTS["stacking_demo"]["inputs"] == ["demo", "demo_skip"]


REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ORIGINAL.md"


@pytest.mark.skipif(not REFERENCE.exists(), reason="the reference sheet (../shared/reference) is not beside the repo")
def test_named_configs_have_the_2019_values_to_full_precision():
    # The stacking table of the reference sheet: | name | reduction | dropout | lr | patience / factor |
    rows = [line.split("|")[1:-1] for line in REFERENCE.read_text().splitlines()
            if line.startswith("| stacking_008_fcnet_")]
    assert len(rows) == 3
    for name, reduction, dropout, lr, plateau in (map(str.strip, row) for row in rows):
        patience, factor = (part.strip() for part in plateau.split("/"))
        config = STACKING_EXPERIMENTS[name]
        assert config["model"][1]["reduction"] == int(reduction)
        assert config["model"][1]["dropout"] == float(dropout)   # exact, not to 4 figures
        assert config["optimizer"][1]["lr"] == float(lr)
        assert config["plateau"]["patience"] == int(patience)
        assert config["plateau"]["factor"] == float(factor)


# ----------------------------------------------------------------------------- end to end

CLASSES = [f"class_{i}" for i in range(6)]
INPUTS = ["demo", "demo_skip"]


def fake_tiles(targets, counts, rng, noise=3.0):
    """Tile probabilities that are noisy versions of the labels: sigmoid(+-2 + noise * N(0, 1))."""
    per_tile = np.repeat(targets, counts, axis=0)
    logits = 2.0 * (2 * per_tile - 1) + noise * rng.standard_normal(per_tile.shape)
    return (1 / (1 + np.exp(-logits))).astype(np.float32)


def write_fake_data(data_dir, rng):
    """train_folds.csv, sample_submission.csv and oof/test tile predictions of the two demo inputs."""
    n_clips, n_test = 80, 12
    fnames = [f"clip_{i:03d}.wav" for i in range(n_clips)]
    labels = [",".join(CLASSES[c] for c in rng.choice(len(CLASSES), size=1 + (i % 4 == 0), replace=False))
              for i in range(n_clips)]
    pd.DataFrame({"fname": fnames, "labels": labels, "fold": np.arange(n_clips) % 5}) \
        .to_csv(data_dir / "train_folds.csv", index=False)
    test_names = [f"test_{i:03d}.wav" for i in range(n_test)]
    submission = pd.DataFrame(0, index=range(n_test), columns=CLASSES)
    submission.insert(0, "fname", test_names)
    submission.to_csv(data_dir / "sample_submission.csv", index=False)
    targets = np.array([[c in lab.split(",") for c in CLASSES] for lab in labels], np.float32)
    test_targets = np.eye(len(CLASSES), dtype=np.float32)[np.arange(n_test) % len(CLASSES)]
    for split, names, truth in (("oof", fnames, targets), ("test", test_names, test_targets)):
        # predict_folds.py writes the OOF set fold by fold, so its rows are not in train_folds.csv order.
        order = rng.permutation(len(names)) if split == "oof" else np.arange(len(names))
        counts = rng.integers(1, 5, size=len(names))  # the same tile step -> the same counts for both inputs
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        for name in INPUTS:
            tiles = fake_tiles(truth[order], counts, rng)
            probs = np.stack([tiles[offsets[i]:offsets[i + 1]].mean(0) for i in range(len(names))])
            write_prediction_set(data_dir / "predictions" / name / split,
                                 PredictionSet([names[i] for i in order], CLASSES, probs, tiles, offsets))
    return fnames, targets, test_names


def run_args(data_dir, *extra):
    # One thread: the tiny net's matmuls only lose from splitting, badly so on a busy machine.
    return ["--experiment", "stacking_demo", "--data-dir", str(data_dir), "--device", "cpu", "--no-progress",
            "--threads", "1", "--set", "epochs=3", "--set", "epoch_size=2048", "--set", "batch_size=64",
            "--set", "optimizer.lr=3e-3", *extra]


@pytest.mark.slow
def test_stacking_train_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    fnames, targets, test_names = write_fake_data(tmp_path, rng)
    report = stacking_train.main(run_args(tmp_path))

    exp_dir = tmp_path / "experiments" / "stacking_demo"
    assert json.loads((exp_dir / "config.json").read_text())["experiment"]["epochs"] == 3
    for fold in range(5):
        assert (exp_dir / f"fold_{fold}" / "done.json").is_file()
        assert list((exp_dir / f"fold_{fold}").glob("model-*.pth"))

    out = tmp_path / "predictions" / "stacking_demo"
    oof = read_prediction_set(out / "oof")
    assert sorted(oof.fnames) == sorted(fnames) and oof.classes == CLASSES and oof.tiles is None
    test = read_prediction_set(out / "test")
    assert test.fnames == test_names and test.probs.shape == (len(test_names), len(CLASSES))
    folds = [read_prediction_set(out / "test" / f"fold_{k}").probs for k in range(5)]
    np.testing.assert_allclose(test.probs, np.exp(np.mean(np.log(np.clip(folds, 1e-7, 1)), axis=0)), rtol=1e-4)

    scores = json.loads((out / "val_lwlrap.json").read_text())
    truth = targets[[fnames.index(f) for f in oof.fnames]]
    assert scores["lwlrap"] == pytest.approx(lwlrap(truth, oof.probs), abs=1e-6)
    assert set(scores["fold_lwlrap"]) == {str(k) for k in range(5)} and set(scores["per_class_lwlrap"]) == set(CLASSES)
    assert report["lwlrap"] == scores["lwlrap"]
    # Chance level: lwlrap of random scores against the same labels.
    chance_rng = np.random.default_rng(1)
    chance = np.mean([lwlrap(truth, chance_rng.random(truth.shape)) for _ in range(20)])
    assert scores["lwlrap"] > chance + 0.25, (scores["lwlrap"], chance)
    assert "stacking out-of-fold lwlrap" in capsys.readouterr().out

    # An existing experiment is never silently overwritten.
    with pytest.raises(ResultsExist, match="--resume"):
        stacking_train.main(run_args(tmp_path))
    # --resume with every fold done: trains nothing, predicts again.
    again = stacking_train.main(run_args(tmp_path, "--resume"))
    assert again["lwlrap"] == pytest.approx(scores["lwlrap"])


def write_fold_test_sets(folder, fnames, fold_tiles, offsets):
    """A test tree as predict_folds.py writes it: test/fold_K/ per fold model, test/ combined over folds."""
    fold_clips = [clip_means(tiles, offsets) for tiles in fold_tiles]
    for k, (tiles, clips) in enumerate(zip(fold_tiles, fold_clips)):
        write_prediction_set(folder / f"fold_{k}", PredictionSet(fnames, CLASSES, clips, tiles, offsets))
    write_prediction_set(folder, PredictionSet(fnames, CLASSES, geometric_mean(fold_clips),
                                               geometric_mean(fold_tiles), offsets))


def test_test_features_are_the_geometric_mean_over_folds_of_per_fold_tile_means(tmp_path):
    """Per input and clip: mean over the clip's tiles for each fold model, then the geometric mean over folds."""
    rng = np.random.default_rng(4)
    fnames = ["t0.wav", "t1.wav", "t2.wav"]
    counts = [1, 3, 2]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    hand = {}
    for name in INPUTS:
        # spread-out probabilities, so that mean-then-geometric-mean and its reverse differ clearly
        fold_tiles = [rng.uniform(0.01, 0.99, (offsets[-1], len(CLASSES))).astype(np.float32) for _ in range(5)]
        write_fold_test_sets(tmp_path / "predictions" / name / "test", fnames, fold_tiles, offsets)
        hand[name] = np.array([[np.prod([np.mean([fold_tiles[k][offsets[i] + t, c] for t in range(counts[i])])
                                         for k in range(5)]) ** (1 / 5)
                                for c in range(len(CLASSES))] for i in range(len(fnames))])
    got_fnames, features = load_test_inputs(tmp_path, INPUTS, CLASSES)
    assert got_fnames == fnames and features.shape == (3, 2 * len(CLASSES)) and features.dtype == np.float32
    np.testing.assert_allclose(features, np.concatenate([hand[n] for n in INPUTS], axis=1), rtol=1e-5)
    # not the clip mean of the fold-combined tiles (what a tile-level combination would give)
    combined = read_prediction_set(tmp_path / "predictions" / INPUTS[0] / "test")
    assert not np.allclose(clip_means(combined.tiles, combined.offsets)[1], hand[INPUTS[0]][1], rtol=1e-3)


def test_test_inputs_must_cover_the_same_clips(tmp_path):
    rng = np.random.default_rng(5)
    offsets = np.arange(3, dtype=np.int64)
    for name, fnames in zip(INPUTS, (["a.wav", "b.wav"], ["a.wav", "c.wav"])):
        tiles = [rng.random((2, len(CLASSES))).astype(np.float32) for _ in range(2)]
        write_fold_test_sets(tmp_path / "predictions" / name / "test", fnames, tiles, offsets)
    with pytest.raises(UserError, match=r"'demo_skip'.*c\.wav"):
        load_test_inputs(tmp_path, INPUTS, CLASSES)


def test_missing_input_predictions_name_the_path(tmp_path):
    write_fake_data(tmp_path, np.random.default_rng(0))
    (tmp_path / "predictions" / "demo_skip" / "test" / "probs.csv").unlink()
    with pytest.raises(InputFileNotFound) as err:
        stacking_train.main(run_args(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "predictions" / "demo_skip" / "test") in message and "predict_folds.py" in message
    assert not (tmp_path / "experiments" / "stacking_demo").exists()
