"""The stacking data layer: what a stacking run reads before it trains (`load_stacking_data`).

The curated clips' labels and folds (with the experiment's label corrections), the input experiments'
out-of-fold tiles stacked side by side (`StackedTiles`), and their test clip probabilities side by
side (the features the fold MLPs predict at test time). Missing or mismatched inputs are refused
here, before anything is written.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from src.data.corrections import read_curated
from src.data.labels import targets_matrix
from src.data.layout import read_classes
from src.errors import BadInput, InputFileNotFound
from src.metrics import lwlrap
from src.predict.blending import aligned_probs, load_experiments
from src.predict.prediction_sets import PredictionSet, predictions_dir, read_prediction_set
from src.stacking.datasets import StackedTiles, select_clips


def load_input(data_dir, name, split, classes) -> PredictionSet:
    """One first-level experiment's `split` predictions, with tiles; clear errors when they are missing."""
    folder = predictions_dir(data_dir, name) / split
    hint = f"run `python predict_folds.py --experiment {name} --data-dir {data_dir}` first"
    if not (folder / "probs.csv").is_file():
        raise InputFileNotFound(f"{folder}: no {split} predictions of input experiment {name!r} ({hint})")
    pred = read_prediction_set(folder, with_tiles=True)
    if pred.tiles is None:
        raise InputFileNotFound(f"{folder}: predictions of {name!r} have no tiles.npy/offsets.npy, which stacking "
                         f"needs ({hint})")
    if list(pred.classes) != list(classes):
        raise BadInput(f"{folder}: classes of {name!r} differ from {data_dir}'s class list")
    return pred


def load_inputs(data_dir, names, split, classes, fnames=None) -> StackedTiles:
    """Stack the inputs' tiles, rows in `fnames` order (default: the first input's clip order)."""
    sets = {name: load_input(data_dir, name, split, classes) for name in names}
    if fnames is None:
        fnames = next(iter(sets.values())).fnames
        for name, pred in sets.items():
            if set(pred.fnames) != set(fnames):
                raise BadInput(f"{split} predictions of {name!r} and {names[0]!r} cover different clips")
    sets = {name: select_clips(pred, fnames, f"{split} predictions of {name!r}") for name, pred in sets.items()}
    return StackedTiles.from_predictions(sets)


def load_test_inputs(data_dir, names, classes) -> tuple:
    """(fnames, features (n_clips, n_inputs * C) float32): the inputs' test clip probabilities side by side.

    An input's test/probs.csv is what the original fed its stacking models at test
    time: each fold model's mean over a clip's tiles, then the geometric mean over
    the fold models (not the tile mean of fold-combined tiles, which differs).
    Rows follow the first input's clip order; every input must cover the same clips.
    """
    try:
        sets = load_experiments(data_dir, names, "test")
        probs = aligned_probs(sets, classes=classes, what="test predictions (stacking inputs)",
                              reference=f"{data_dir}'s class list")
    except FileNotFoundError as exc:
        raise InputFileNotFound(str(exc)) from exc
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    fnames = sets[names[0]].fnames
    return list(fnames), np.concatenate([probs[name] for name in names], axis=1).astype(np.float32)


@dataclass
class StackingData:
    """Everything a stacking run reads before it trains: the curated clips' labels and folds (with the
    first level's label corrections), the inputs' stacked out-of-fold tiles, and their test clip features."""
    classes: list
    fnames: list                        # curated clips kept by the corrections, in train_folds.csv order
    targets: np.ndarray                 # (n_clips, n_classes) multi-hot
    folds: np.ndarray                   # fold of each clip
    corrections: Optional[dict]         # the corrections record (config.json)
    stacked: StackedTiles               # the inputs' out-of-fold tiles, rows in `fnames` order
    input_scores: dict                  # input experiment -> its own out-of-fold lwlrap on these clips
    test: Optional[tuple] = None        # (fnames, features (n_test, n_features)); None with --no-test


def load_stacking_data(data_dir, experiment, with_test=True) -> StackingData:
    """Read the labels and every input's predictions first, so a missing input stops the run before anything
    is written. Labels use the experiment's `curated_corrections` (src/data/corrections.py)."""
    classes = read_classes(data_dir)
    curated = read_curated(data_dir, classes, experiment["curated_corrections"])
    fnames = curated.kept["fname"].tolist()
    targets = targets_matrix(curated.kept["labels"].tolist(), classes)
    names = list(experiment["inputs"])
    stacked = load_inputs(data_dir, names, "oof", classes, fnames)
    means, n_classes = stacked.clip_means(), len(classes)  # an input's clip mean = its own OOF prediction
    input_scores = {name: lwlrap(targets, means[:, k * n_classes:(k + 1) * n_classes])
                    for k, name in enumerate(names)}
    return StackingData(classes, fnames, targets, curated.kept["fold"].to_numpy(), curated.record(), stacked,
                        input_scores, load_test_inputs(data_dir, names, classes) if with_test else None)
