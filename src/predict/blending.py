"""Blend experiments' predictions: load, check, align, geometric mean, score.

The original's final submission is a geometric mean of ten prediction sets
(seven first-level experiments and three stacking models, each already the
geometric mean of its five folds). Blending is only meaningful when every set
covers the same clips and the same classes, so this module refuses to combine
sets that differ, naming the experiment and the missing / extra classes or
files, and aligns rows and columns by name (never by position) before
averaging.

The same pieces serve `blend.py` (test submission + blended CV score) and
`review_labels.py` (blended out-of-fold predictions against the given labels).
"""
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from src.data.corrections import CuratedLabels, read_curated
from src.metrics import lwlrap
from src.files import read_json
from src.predict.prediction_sets import PredictionSet, geometric_mean, predictions_dir, read_prediction_set

SPLITS = ("oof", "test")
SHOW = 5  # how many missing / extra names an error message lists


# ----------------------------------------------------------------------------- loading

def split_dir(data_dir, name, split) -> Path:
    """`<data>/predictions/NAME/{oof,test}`: where predict_folds.py puts an experiment's predictions."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return predictions_dir(data_dir, name) / split


def has_split(data_dir, name, split) -> bool:
    return (split_dir(data_dir, name, split) / "probs.csv").is_file()


def load_experiment(data_dir, name, split) -> PredictionSet:
    """Clip probabilities of one experiment (tiles are not needed to blend)."""
    folder = predictions_dir(data_dir, name)
    hint = (f"run `python predict_folds.py --experiment {name} --data-dir {data_dir}` first, "
            f"or stacking_train.py for a stacking model")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no predictions for experiment {name!r} ({hint})")
    path = split_dir(data_dir, name, split) / "probs.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: experiment {name!r} has no {split} predictions ({hint})")
    return read_prediction_set(path.parent, with_tiles=False)


def load_experiments(data_dir, names, split) -> dict:
    """{name: PredictionSet} in the given order; refuses repeated names (use weights instead)."""
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ValueError(f"experiment(s) listed more than once: {repeated} (give a larger weight instead)")
    if not names:
        raise ValueError("no experiments to blend")
    return {name: load_experiment(data_dir, name, split) for name in names}


# ----------------------------------------------------------------------------- checking and aligning

def describe_difference(expected, actual, noun) -> Optional[str]:
    """'2 classes missing (e.g. [...]), 1 extra class (e.g. [...])', or None when the sets agree."""
    expected_set, actual_set = set(expected), set(actual)
    missing = [x for x in expected if x not in actual_set]
    extra = [x for x in actual if x not in expected_set]
    parts = []
    if missing:
        parts.append(f"{len(missing)} {noun} missing (e.g. {missing[:SHOW]})")
    if extra:
        parts.append(f"{len(extra)} extra {noun} (e.g. {extra[:SHOW]})")
    return ", ".join(parts) or None


def _duplicates(items) -> list:
    seen, dup = set(), []
    for item in items:
        if item in seen and item not in dup:
            dup.append(item)
        seen.add(item)
    return dup


def check_consistent(sets: dict, what="predictions"):
    """Raise unless every set has the same class set and the same file set as the first one.

    Every disagreement is reported (experiment, missing / extra classes or files),
    not just the first, so one run shows everything to fix.
    """
    names = list(sets)
    ref_name, ref = names[0], sets[names[0]]
    problems = []
    for name, pred in sets.items():
        dup = _duplicates(pred.fnames)
        if dup:
            problems.append(f"{name!r}: {len(dup)} file(s) listed twice (e.g. {dup[:SHOW]})")
    for name in names[1:]:
        pred = sets[name]
        diff = describe_difference(ref.classes, pred.classes, "class(es)")
        if diff:
            problems.append(f"{name!r} vs {ref_name!r}: {diff}")
        diff = describe_difference(ref.fnames, pred.fnames, "file(s)")
        if diff:
            problems.append(f"{name!r} vs {ref_name!r}: {diff}")
    if problems:
        raise ValueError(f"cannot blend {what} of {names}:\n  " + "\n  ".join(problems))


def align(pred: PredictionSet, fnames, classes, name="predictions", reference="the expected lists") -> np.ndarray:
    """`pred.probs` reordered to (fnames, classes) by name; refuses other sets or bad values."""
    for noun, expected, actual in (("class(es)", classes, pred.classes), ("file(s)", fnames, pred.fnames)):
        diff = describe_difference(expected, actual, noun)
        if diff:
            raise ValueError(f"{name} do not match {reference}: {diff}")
    dup = _duplicates(pred.fnames)
    if dup:
        raise ValueError(f"{name}: {len(dup)} file(s) listed twice (e.g. {dup[:SHOW]})")
    probs = np.asarray(pred.probs, np.float64)
    bad = ~(np.isfinite(probs) & (probs >= 0) & (probs <= 1))
    if bad.any():
        rows = [pred.fnames[i] for i in np.flatnonzero(bad.any(axis=1))[:SHOW]]
        raise ValueError(f"{name}: {int(bad.sum())} value(s) are not probabilities in [0, 1] (e.g. in {rows})")
    frame = pd.DataFrame(probs, index=pd.Index(pred.fnames), columns=pred.classes)
    return frame.loc[list(fnames), list(classes)].to_numpy()


def aligned_probs(sets: dict, fnames=None, classes=None, what="predictions", reference="the expected lists") -> dict:
    """{name: probs (n_files, n_classes)}, every set in the same (fnames, classes) order.

    The order defaults to the first set's; pass the sample submission's to get
    Kaggle's row and column order; `reference` names where that order came from in errors.
    """
    check_consistent(sets, what)
    fnames, classes = _order(sets, fnames, classes)
    return {name: align(pred, fnames, classes, f"{name!r} {what}", reference) for name, pred in sets.items()}


def _order(sets, fnames=None, classes=None) -> tuple:
    first = next(iter(sets.values()))
    return list(first.fnames if fnames is None else fnames), list(first.classes if classes is None else classes)


def _check_weights(weights, sets):
    if weights is not None and len(weights) != len(sets):
        raise ValueError(f"got {len(weights)} weight(s) for {len(sets)} experiment(s) {list(sets)}")


def blend(sets: dict, weights=None, fnames=None, classes=None, what="predictions",
          reference="the expected lists") -> PredictionSet:
    """Weighted geometric mean of prediction sets, rows/columns in (fnames, classes) order."""
    _check_weights(weights, sets)
    probs = aligned_probs(sets, fnames, classes, what, reference)
    fnames, classes = _order(sets, fnames, classes)
    return PredictionSet(fnames, classes, geometric_mean(list(probs.values()), weights))


# ----------------------------------------------------------------------------- curated labels and CV

def cv_scores(sets: dict, labels: CuratedLabels, weights=None, classes=None) -> tuple:
    """Blend out-of-fold sets and score the blend and every experiment on the same clips.

    Returns (blended PredictionSet, scores) where scores is
    {"blend": lwlrap, "experiments": {name: lwlrap}, "n_clips": scored clips, "n_skipped": removed clips}.
    """
    _check_weights(weights, sets)
    probs = aligned_probs(sets, classes=classes, what="out-of-fold predictions", reference="the class list")
    fnames, classes = _order(sets, None, classes)
    blended = PredictionSet(fnames, classes, geometric_mean(list(probs.values()), weights))
    keep, y_true = labels.targets(fnames, classes)
    scores = {
        "blend": lwlrap(y_true, blended.probs[keep]),
        "experiments": {name: lwlrap(y_true, p[keep]) for name, p in probs.items()},
        "n_clips": int(keep.sum()),
        "n_skipped": int((~keep).sum()),
    }
    return blended, scores


# ----------------------------------------------------------------------------- yes/no thresholds

def blend_thresholds(data_dir, names, classes, weights=None) -> Optional[dict]:
    """The yes/no thresholds record (src/thresholds.py) of a blend of experiments, or None without one.

    One experiment: its predictions' thresholds.json (predict_folds.py). Several (or one without that
    file): chosen by the same rule on their blended out-of-fold predictions against the curated labels
    (the data dir's corrections, as blend.py scores its CV); None when any of them has no out-of-fold
    predictions or the data dir has no curated labels.
    """
    from src.thresholds import THRESHOLDS_FILE, choose_thresholds, thresholds_record

    names = list(names)
    path = predictions_dir(data_dir, names[0]) / THRESHOLDS_FILE
    if len(names) == 1 and path.is_file():
        record = read_json(path, what="thresholds file")
        return record if record.get("classes") == list(classes) else None
    if not all(has_split(data_dir, n, "oof") for n in names):
        return None
    try:
        labels = read_curated(data_dir, classes, need_folds=False)
    except FileNotFoundError:
        return None
    blended, _ = cv_scores(load_experiments(data_dir, names, "oof"), labels, weights, classes)
    keep, truth = labels.targets(blended.fnames, classes)
    probs = blended.probs[keep]
    return thresholds_record(classes, choose_thresholds(truth, probs), truth, probs)
