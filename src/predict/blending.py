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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from src.data.labels import (apply_corrections, check_fnames, check_labels, load_corrections, read_csv_columns,
                        read_train_csv, targets_matrix)
from src.metrics import lwlrap
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


# ----------------------------------------------------------------------------- submission

def read_sample_submission(data_dir) -> tuple:
    """(test fnames, classes) in Kaggle's row and column order."""
    path = Path(data_dir) / "sample_submission.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (the submission's row and column order come from it)")
    frame = read_csv_columns(path, ("fname",), what="sample submission")
    if len(frame.columns) < 2 or frame.columns[0] != "fname":
        raise ValueError(f"{path}: expected a header 'fname,<class>,...', got {list(frame.columns)[:5]}")
    check_fnames(frame["fname"], path)
    return frame["fname"].tolist(), list(frame.columns[1:])


# ----------------------------------------------------------------------------- curated labels and CV

@dataclass
class CuratedLabels:
    """The curated clips' labels (after corrections) that out-of-fold predictions are scored against."""
    source: Path
    labels: dict                                  # fname -> "A,B"
    removed: set = field(default_factory=set)     # fnames dropped by the corrections
    corrections: Optional[Path] = None

    def __len__(self):
        return len(self.labels)

    def targets(self, fnames, classes) -> tuple:
        """(keep, y_true): mask of the `fnames` that have labels, and their multi-hot targets.

        Clips removed by the corrections are skipped (training dropped them too);
        a clip that is not in the curated CSV at all means the predictions belong
        to another data set, so that is an error.
        """
        unknown = [f for f in fnames if f not in self.labels and f not in self.removed]
        if unknown:
            raise ValueError(f"{len(unknown)} out-of-fold clip(s) are not in {self.source}, "
                             f"e.g. {unknown[:SHOW]} (predictions of another data dir?)")
        keep = np.array([f in self.labels for f in fnames], dtype=bool)
        if not keep.any():
            raise ValueError(f"none of the {len(fnames)} out-of-fold clips has a label in {self.source}")
        kept = [self.labels[f] for f, k in zip(fnames, keep) if k]
        return keep, targets_matrix(kept, classes)


def read_curated_labels(data_dir, classes, corrections=None) -> CuratedLabels:
    """Curated labels from train_folds.csv (else train_curated.csv), label corrections applied.

    `corrections` is a path to a corrections JSON (fname -> "A,B" or "remove") or None.
    """
    data_dir = Path(data_dir)
    source = data_dir / "train_folds.csv"
    if not source.is_file():
        source = data_dir / "train_curated.csv"
    if not source.is_file():
        raise FileNotFoundError(f"{data_dir}: neither train_folds.csv nor train_curated.csv found "
                                "(the curated labels that out-of-fold predictions are scored against)")
    df = read_train_csv(source)
    check_labels(df, classes, source=str(source))
    corr = load_corrections(corrections)
    corrected = apply_corrections(df, corr, classes)
    removed = set(df["fname"]) - set(corrected["fname"])
    return CuratedLabels(source, dict(zip(corrected["fname"], corrected["labels"])), removed,
                         Path(corrections) if corrections else None)


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
