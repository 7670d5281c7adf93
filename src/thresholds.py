"""Yes/no tags from probabilities: one threshold per class, chosen on out-of-fold predictions.

The rule (`choose_thresholds`):

- a class with at least `MIN_POSITIVES` (5) positive clips gets the threshold of its best F1 on the
  out-of-fold predictions: every cut between two neighbouring distinct scores is tried (the threshold
  is the midpoint of the two scores), and of equally good cuts the highest threshold wins;
- a class with fewer positives gets the one threshold that is best for all classes together (the best
  micro F1 over every (clip, class) pair, the same cut rule): a handful of positives would pick a cut
  that fits those few clips and no others.

A clip has a tag when its probability is >= the class's threshold (`tags`). The thresholds are
recorded as `thresholds.json` beside an experiment's predictions (predict_folds.py), in bundles and in
named ensembles (chosen on the blended out-of-fold predictions), as {"classes", "thresholds", "rule",
"oof_f1"}.
"""
from pathlib import Path

import numpy as np

from src.errors import BadInput, InputFileNotFound
from src.files import read_json

MIN_POSITIVES = 5
DEFAULT_THRESHOLD = 0.5  # models without recorded thresholds
THRESHOLDS_FILE = "thresholds.json"
RULE = (f"per class the threshold of its best out-of-fold F1 (midpoint between neighbouring scores, the "
        f"highest of equal F1s); classes with fewer than {MIN_POSITIVES} positives: the best micro-F1 "
        f"threshold over all classes")


def best_f1_threshold(truth, scores) -> tuple:
    """(threshold, F1) of the best cut of `scores` (any shape) against the 0/1 `truth` (same shape).

    Cutting the scores sorted in descending order after the k-th one predicts the top k as positive:
    tp = positives among them, and F1 = 2 tp / (k + P) with P the number of positives. Only cuts
    between distinct scores are possible; the threshold is the midpoint of the two scores (half the
    lowest score when every item is predicted positive). No positives: (1.0, 0.0).
    """
    truth = np.asarray(truth, bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    positives = int(truth.sum())
    if positives == 0:
        return 1.0, 0.0
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], np.cumsum(truth[order])
    k = np.arange(1, len(scores) + 1)
    f1 = 2 * hits / (k + positives)
    below = np.append(sorted_scores[1:], 0.0)  # the next score down (0 below the last)
    valid = sorted_scores > below  # a cut after item k separates it from the next one
    valid[-1] = True
    f1 = np.where(valid, f1, -1.0)
    best = np.flatnonzero(f1 == f1.max())[0]  # the smallest k = the highest threshold among ties
    return float((sorted_scores[best] + below[best]) / 2), float(f1[best])


def choose_thresholds(truth, probs, min_positives: int = MIN_POSITIVES) -> np.ndarray:
    """(C,) thresholds for (n_clips, C) probabilities against (n_clips, C) 0/1 labels (the module's rule)."""
    truth, probs = np.asarray(truth, bool), np.asarray(probs, np.float64)
    if truth.ndim != 2 or truth.shape != probs.shape:
        raise ValueError(f"truth {truth.shape} and probs {probs.shape} must be (n_clips, n_classes) alike")
    shared, _ = best_f1_threshold(truth, probs)
    thresholds = np.full(truth.shape[1], shared)
    for j in np.flatnonzero(truth.sum(axis=0) >= min_positives):
        thresholds[j] = best_f1_threshold(truth[:, j], probs[:, j])[0]
    return thresholds


def tags(probs, thresholds) -> np.ndarray:
    """(n_clips, C) bool: which classes each clip has (probability >= its class's threshold)."""
    return np.asarray(probs) >= np.asarray(thresholds, np.float64)


def labels_of(probs, classes, thresholds) -> list:
    """For each clip, its tags' class names, most probable first."""
    probs = np.asarray(probs)
    if probs.size == 0:
        return []
    probs = np.atleast_2d(probs)
    out = []
    for row, yes in zip(probs, tags(probs, thresholds)):
        order = np.argsort(-row, kind="stable")
        out.append([classes[j] for j in order if yes[j]])
    return out


def f1_scores(truth, predicted) -> dict:
    """{"micro", "macro"} F1 of 0/1 predictions (scikit-learn). Micro counts every class; the macro mean is
    over the classes with at least one true positive label (as mAP, which is undefined without one): a
    class list with classes the data never has (a dataset using 13 of Kaggle's 80) would otherwise pull
    the macro mean towards 0 with classes nobody could tag. NaN when no class has a positive."""
    from sklearn.metrics import f1_score

    truth, predicted = np.asarray(truth, int), np.asarray(predicted, int)
    present = np.flatnonzero(truth.any(axis=0))
    macro = f1_score(truth, predicted, average="macro", labels=present, zero_division=0) if len(present) else np.nan
    return {"micro": float(f1_score(truth, predicted, average="micro", zero_division=0)), "macro": float(macro)}


def thresholds_record(classes, thresholds, truth=None, probs=None) -> dict:
    """What thresholds.json (and a bundle's "thresholds") holds; with truth and probs, the F1 they give."""
    record = {"classes": list(classes), "thresholds": [float(t) for t in thresholds], "rule": RULE}
    if truth is not None:
        record["oof_f1"] = f1_scores(truth, tags(probs, thresholds))
    return record


def thresholds_from_record(record, classes, source) -> np.ndarray:
    """(C,) thresholds in `classes` order from a record, checking its class list."""
    try:
        found = dict(zip(record["classes"], record["thresholds"]))
        if len(record["classes"]) != len(record["thresholds"]):
            raise ValueError
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"{source}: not a thresholds record (classes, thresholds)") from exc
    missing = [c for c in classes if c not in found]
    if missing:
        raise BadInput(f"{source}: no threshold for class(es) {missing[:5]}")
    try:
        values = np.array([float(found[c]) for c in classes])
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{source}: thresholds must be numbers ({exc})") from exc
    if not np.all(np.isfinite(values)):
        raise BadInput(f"{source}: thresholds must be finite numbers, found NaN or infinity")
    return values


def read_thresholds(path, classes) -> np.ndarray:
    """(C,) thresholds of a thresholds.json file, in `classes` order."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFound(f"{path}: no such thresholds file (predict_folds.py writes one)")
    record = read_json(path, what="thresholds file")
    return thresholds_from_record(record, classes, path)
