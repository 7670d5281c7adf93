"""lwlrap: label-weighted label-ranking average precision (the competition metric).

For every clip and every one of its true labels ``j`` we look at the clip's
classes ranked by score and ask: of the classes ranked at or above ``j``, what
fraction are true labels? That is the precision of the ranked list cut at
``j``. lwlrap averages these precisions over all (clip, true label) pairs,
which is the same as averaging per class and weighting each class by its share
of the true labels.

Ranking rule for ties (pessimistic, as scikit-learn does): a label's rank is the
number of labels whose score is ``>=`` its score, and the hit count is the
number of *true* labels whose score is ``>=`` its score. A false label tied with
a true one therefore counts as ranked above it. With this rule

    lwlrap(y, s) == sklearn.metrics.label_ranking_average_precision_score(
        y, s, sample_weight=y.sum(axis=1))

Clips without any true label contribute nothing (their sample weight is 0).

Everything is vectorised: ranks come from ``scipy.stats.rankdata`` along the
class axis, no Python loop over clips.
"""
import numpy as np
from scipy.stats import rankdata

from argus.metrics import Metric

__all__ = ["lwlrap", "class_mean_lwlrap", "class_mean", "per_class_lwlrap", "clip_lwlrap", "label_precisions", "Lwlrap"]


def _check_inputs(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to (bool truth, float64 scores), both (n_samples, n_classes)."""
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(f"lwlrap: y_true {y_true.shape} and y_score {y_score.shape} "
                         "must be 2-D arrays of the same shape (n_samples, n_classes)")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("lwlrap: y_true must be binary (0/1 or bool); "
                         "soft targets (e.g. from mixing) are not supported")
    if not np.isfinite(y_score).all():
        raise ValueError("lwlrap: y_score contains NaN or infinite values")
    return y_true.astype(bool), y_score


def label_precisions(y_true, y_score) -> np.ndarray:
    """Precision at each true label's rank, shape (n_samples, n_classes); 0 for false labels.

    Entry (i, j) for a true label j of clip i is
    ``#{true k: s_ik >= s_ij} / #{k: s_ik >= s_ij}`` (ties ranked pessimistically).
    """
    truth, scores = _check_inputs(y_true, y_score)
    if truth.size == 0:
        return np.zeros(truth.shape)
    # Rank from the top: rank 'max' of the negated scores counts labels with score >= s_ij.
    rank = rankdata(-scores, method="max", axis=1)
    # The same count restricted to true labels: push false labels to +inf in the
    # negated space so that they never count (scores are finite, checked above).
    hits = rankdata(np.where(truth, -scores, np.inf), method="max", axis=1)
    return np.where(truth, hits / rank, 0.0)


def clip_lwlrap(y_true, y_score) -> np.ndarray:
    """Per-clip label-ranking average precision, shape (n_samples,).

    The mean of :func:`label_precisions` over each clip's true labels (sklearn's
    per-sample LRAP). Clips without true labels get NaN (sklearn would say 1.0,
    which is meaningless for ranking clips by how well their labels fit).
    """
    precisions = label_precisions(y_true, y_score)
    n_true = np.asarray(y_true).astype(bool).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_true > 0, precisions.sum(axis=1) / n_true, np.nan)


def per_class_lwlrap(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """Per-class lwlrap and class weights, each shape (n_classes,).

    ``per_class[c]`` is the mean precision over the clips labelled ``c``;
    ``weight[c]`` is the share of all true labels that belong to ``c``, so
    ``lwlrap == (per_class * weight).sum()``. Classes without positives get
    per-class value 0 and weight 0 (0 rather than NaN keeps the sum well defined;
    check ``weight == 0`` to tell them apart).
    """
    precisions = label_precisions(y_true, y_score)
    n_pos = np.asarray(y_true).astype(bool).sum(axis=0)
    total = n_pos.sum()
    if total == 0:
        raise ValueError("lwlrap: y_true has no positive labels, lwlrap is undefined")
    per_class = precisions.sum(axis=0) / np.maximum(n_pos, 1)
    weight = n_pos / total
    return per_class, weight


def lwlrap(y_true, y_score) -> float:
    """Label-weighted label-ranking average precision (see module docstring)."""
    per_class, weight = per_class_lwlrap(y_true, y_score)
    return float((per_class * weight).sum())


def class_mean_lwlrap(y_true, y_score) -> float:
    """Per-class lwlrap averaged over the classes that have positives, each class counting once.

    lwlrap weights a class by its share of the true labels, so on an imbalanced set a class with two
    clips barely moves it; this average shows what the rare classes get (a drop that lwlrap hides).
    """
    return class_mean(*per_class_lwlrap(y_true, y_score))


def class_mean(per_class, weight) -> float:
    """The mean of per-class scores over the classes with positives (weight > 0), as `per_class_lwlrap` gives them."""
    per_class, weight = np.asarray(per_class, dtype=float), np.asarray(weight, dtype=float)
    return float(per_class[weight > 0].mean())


def oof_report(y_true, y_score, classes, fold_scores: dict) -> dict:
    """The out-of-fold scores of an experiment (val_lwlrap.json of predict_folds.py and stacking_train.py):
    overall lwlrap, its class-averaged twin, each fold's, and each class's with its weight."""
    per_class, weights = per_class_lwlrap(y_true, y_score)   # once: both averages come from it
    return {"lwlrap": float((per_class * weights).sum()),
            "class_mean_lwlrap": class_mean(per_class, weights),
            "fold_lwlrap": {str(fold): float(score) for fold, score in fold_scores.items()},
            "per_class_lwlrap": dict(zip(classes, per_class.tolist())),
            "class_weight": dict(zip(classes, weights.tolist()))}


class Lwlrap(Metric):
    """argus metric: lwlrap over a whole epoch (monitor key ``val_lwlrap``).

    ``step_output['prediction']`` must be per-class probabilities (or any
    monotone scores) of shape (B, C), ``step_output['target']`` the binary
    targets (B, C). Batches are collected on the CPU and scored at epoch end,
    since lwlrap does not decompose over batches.
    """
    name = "lwlrap"
    better = "max"

    def __init__(self):
        super().__init__()
        self.predictions: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def reset(self):
        self.predictions = []
        self.targets = []

    def update(self, step_output: dict):
        # .float() first: numpy has no bfloat16 (mixed-precision outputs).
        self.predictions.append(step_output["prediction"].detach().float().cpu().numpy())
        self.targets.append(step_output["target"].detach().float().cpu().numpy())

    def compute(self) -> float:
        if not self.predictions:
            raise RuntimeError("Lwlrap.compute() called before any update()")
        return lwlrap(np.concatenate(self.targets), np.concatenate(self.predictions))
