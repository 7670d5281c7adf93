"""Tests for src.metrics: lwlrap against scikit-learn and hand-worked cases."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from argus.metrics.metric import METRIC_REGISTRY
from sklearn.metrics import label_ranking_average_precision_score

from src.metrics import Lwlrap, clip_lwlrap, label_precisions, lwlrap, per_class_lwlrap


def sklearn_lwlrap(y_true, y_score):
    return label_ranking_average_precision_score(y_true, y_score, sample_weight=y_true.sum(axis=1))


def random_case(seed, n_samples=80, n_classes=12, decimals=None, empty_rows=0):
    """Random multi-hot targets with at least one label per row (except `empty_rows` rows)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n_samples, n_classes)) < 0.2).astype(np.float32)
    y[np.arange(n_samples), rng.integers(0, n_classes, n_samples)] = 1
    y[:empty_rows] = 0
    # scores correlated with the labels so lwlrap is away from both 0 and 1
    s = rng.random((n_samples, n_classes)) + 0.5 * y
    if decimals is not None:
        s = np.round(s, decimals)  # coarse rounding -> many ties
    return y, s


# --- hand-worked case: 2 clips, 3 classes --------------------------------------
# clip A: true {0, 2}, scores [0.9, 0.8, 0.1] -> ranking c0 > c1 > c2
#   c0: rank 1, true labels at/above = 1 -> precision 1/1
#   c2: rank 3, true labels at/above = 2 (c0, c2) -> precision 2/3
# clip B: true {1}, scores [0.5, 0.2, 0.7] -> ranking c2 > c0 > c1
#   c1: rank 3, true labels at/above = 1 -> precision 1/3
# lwlrap = mean over the 3 (clip, label) pairs = (1 + 2/3 + 1/3) / 3 = 2/3
# per class: c0 = 1, c1 = 1/3, c2 = 2/3, each weight 1/3 (one positive each)
# per clip: A = (1 + 2/3) / 2 = 5/6, B = 1/3
Y_HAND = np.array([[1, 0, 1], [0, 1, 0]])
S_HAND = np.array([[0.9, 0.8, 0.1], [0.5, 0.2, 0.7]])


def test_hand_worked_lwlrap():
    assert lwlrap(Y_HAND, S_HAND) == pytest.approx((1 + 2 / 3 + 1 / 3) / 3)
    assert lwlrap(Y_HAND, S_HAND) == pytest.approx(sklearn_lwlrap(Y_HAND, S_HAND))


def test_hand_worked_label_precisions():
    expected = np.array([[1, 0, 2 / 3], [0, 1 / 3, 0]])
    np.testing.assert_allclose(label_precisions(Y_HAND, S_HAND), expected)


def test_hand_worked_per_class():
    per_class, weight = per_class_lwlrap(Y_HAND, S_HAND)
    np.testing.assert_allclose(per_class, [1, 1 / 3, 2 / 3])
    np.testing.assert_allclose(weight, [1 / 3, 1 / 3, 1 / 3])


def test_hand_worked_clip_lwlrap():
    np.testing.assert_allclose(clip_lwlrap(Y_HAND, S_HAND), [5 / 6, 1 / 3])


def test_class_weights_follow_label_counts():
    # 3 clips, 2 classes: class 0 has 2 positives, class 1 has 1.
    # clip 1: true {0}, scores [0.9, 0.1] -> precision 1
    # clip 2: true {0}, scores [0.2, 0.8] -> c0 rank 2 -> precision 1/2
    # clip 3: true {1}, scores [0.3, 0.4] -> c1 rank 1 -> precision 1
    # per class: c0 = (1 + 1/2) / 2 = 3/4 (weight 2/3), c1 = 1 (weight 1/3)
    # lwlrap = 3/4 * 2/3 + 1 * 1/3 = 1/2 + 1/3 = 5/6 = mean of the 3 pair precisions
    y = np.array([[1, 0], [1, 0], [0, 1]])
    s = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.4]])
    per_class, weight = per_class_lwlrap(y, s)
    np.testing.assert_allclose(per_class, [3 / 4, 1])
    np.testing.assert_allclose(weight, [2 / 3, 1 / 3])
    assert lwlrap(y, s) == pytest.approx(5 / 6)


def test_ties_are_pessimistic():
    # 1 clip, 3 classes, true {0}, scores [0.5, 0.5, 0.1]:
    # the false c1 ties with c0, so c0's rank = #{score >= 0.5} = 2, hits = 1 -> 1/2
    # (an optimistic rule would give 1, an averaging rule 2/3)
    y = np.array([[1, 0, 0]])
    s = np.array([[0.5, 0.5, 0.1]])
    assert lwlrap(y, s) == pytest.approx(0.5)
    assert lwlrap(y, s) == pytest.approx(sklearn_lwlrap(y, s))
    # two true labels tied at the top: each has rank 2 and 2 hits -> precision 1
    y2 = np.array([[1, 1, 0]])
    assert lwlrap(y2, s) == pytest.approx(1.0)
    # all scores equal, true {2} of 4: rank 4, hits 1 -> 1/4
    assert lwlrap(np.array([[0, 0, 1, 0]]), np.zeros((1, 4))) == pytest.approx(0.25)


def test_perfect_and_worst_ranking():
    y = np.array([[1, 0, 0, 0], [0, 1, 1, 0]])
    assert lwlrap(y, y + 0.0) == pytest.approx(1.0)
    # clip 1: c0 ranked last (rank 4) -> 1/4
    # clip 2: c1, c2 ranked 3 and 4 (ascending scores below) -> 1/3 and 2/4
    # lwlrap = (1/4 + 1/3 + 1/2) / 3
    s = np.array([[0.0, 0.3, 0.2, 0.1], [0.9, 0.1, 0.0, 0.8]])
    assert lwlrap(y, s) == pytest.approx((1 / 4 + 1 / 3 + 1 / 2) / 3)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("decimals", [None, 1])
def test_matches_sklearn_random(seed, decimals):
    y, s = random_case(seed, decimals=decimals)
    if decimals is not None:
        # make sure the rounding really produced ties within rows
        assert any(len(np.unique(row)) < len(row) for row in s)
    assert lwlrap(y, s) == pytest.approx(sklearn_lwlrap(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_rows_without_labels_contribute_nothing(seed):
    y, s = random_case(seed, decimals=1, empty_rows=7)
    assert y[:7].sum() == 0
    expected = sklearn_lwlrap(y[7:], s[7:])
    assert lwlrap(y, s) == pytest.approx(expected, abs=1e-12)
    # sklearn with sample_weight=y.sum(1) gives the empty rows weight 0 too
    assert lwlrap(y, s) == pytest.approx(sklearn_lwlrap(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 5])
def test_per_class_sums_to_overall(seed):
    y, s = random_case(seed, n_classes=15, decimals=1, empty_rows=3)
    y[:, 4] = 0  # a class with no positives
    per_class, weight = per_class_lwlrap(y, s)
    assert per_class.shape == weight.shape == (15,)
    assert per_class[4] == 0 and weight[4] == 0
    assert weight.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weight, y.sum(0) / y.sum())
    assert (per_class * weight).sum() == pytest.approx(lwlrap(y, s), abs=1e-12)
    assert np.all((per_class >= 0) & (per_class <= 1))


@pytest.mark.parametrize("decimals", [None, 1])
def test_clip_lwlrap_matches_sklearn_per_sample(decimals):
    y, s = random_case(3, n_samples=30, decimals=decimals, empty_rows=2)
    y[5] = 1  # a clip with every label true: precision 1 everywhere
    clip = clip_lwlrap(y, s)
    assert clip.shape == (30,)
    assert np.isnan(clip[:2]).all()
    expected = [label_ranking_average_precision_score(y[i:i + 1], s[i:i + 1]) for i in range(2, 30)]
    np.testing.assert_allclose(clip[2:], expected, atol=1e-12)
    assert clip[5] == 1.0


def test_accepts_bool_and_float32_inputs():
    y, s = random_case(7)
    expected = sklearn_lwlrap(y, s)
    assert lwlrap(y.astype(bool), s.astype(np.float32)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("y, s, match", [
    (np.ones((2, 3)), np.ones((2, 4)), "same shape"),
    (np.ones(3), np.ones(3), "2-D"),
    (np.array([[0.5, 1.0]]), np.array([[0.1, 0.2]]), "binary"),
    (np.array([[0, 1]]), np.array([[np.nan, 0.2]]), "NaN"),
    (np.zeros((2, 3)), np.ones((2, 3)), "no positive labels"),
])
def test_invalid_inputs(y, s, match):
    with pytest.raises(ValueError, match=match):
        lwlrap(y, s)


# --- argus metric -----------------------------------------------------------------
def test_metric_registered():
    assert METRIC_REGISTRY["lwlrap"] is Lwlrap
    assert Lwlrap.better == "max"


def test_metric_accumulates_batches():
    y, s = random_case(11, n_samples=70, decimals=1)
    metric = Lwlrap()
    metric.reset()
    for start in range(0, 70, 32):  # batches of 32, 32, 6
        metric.update({"prediction": torch.from_numpy(s[start:start + 32]).float(),
                       "target": torch.from_numpy(y[start:start + 32]),
                       "loss": 0.0})
    assert metric.compute() == pytest.approx(lwlrap(y, s.astype(np.float32)), abs=1e-12)
    # the per-batch mean is a different number: the metric must not average batches
    batch_mean = np.mean([lwlrap(y[i:i + 32], s[i:i + 32]) for i in range(0, 70, 32)])
    assert not math.isclose(metric.compute(), batch_mean, abs_tol=1e-9)


def test_metric_epoch_hooks_reset_and_store_value():
    metric = Lwlrap()
    state = SimpleNamespace(phase="val", metrics={}, step_output=None)
    # epoch 1: garbage predictions, epoch 2: the hand-worked case; reset must drop epoch 1
    for scores in (np.ones_like(S_HAND), S_HAND):
        metric.epoch_start(state)
        state.step_output = {"prediction": torch.tensor(scores, dtype=torch.float32),
                             "target": torch.tensor(Y_HAND, dtype=torch.float32)}
        metric.iteration_complete(state)
        metric.epoch_complete(state)
    assert state.metrics["val_lwlrap"] == pytest.approx(2 / 3)


def test_metric_handles_low_precision_and_grad_tensors():
    pred = torch.tensor(S_HAND, dtype=torch.float32, requires_grad=True).to(torch.bfloat16)
    metric = Lwlrap()
    metric.update({"prediction": pred, "target": torch.tensor(Y_HAND, dtype=torch.bfloat16)})
    assert metric.compute() == pytest.approx(lwlrap(Y_HAND, pred.detach().float().numpy()))


def test_metric_compute_without_update_raises():
    with pytest.raises(RuntimeError, match="before any update"):
        Lwlrap().compute()


def test_oof_report_matches_sklearn_and_per_class_weights():
    from sklearn.metrics import label_ranking_average_precision_score
    from src.metrics import oof_report
    rng = np.random.default_rng(3)
    y_true = (rng.random((40, 5)) < 0.3).astype(np.float32)
    y_true[y_true.sum(1) == 0, 0] = 1
    y_score = rng.random((40, 5)).astype(np.float32)
    report = oof_report(y_true, y_score, list("abcde"), {0: 0.5, 1: 0.25})
    expected = label_ranking_average_precision_score(y_true, y_score, sample_weight=y_true.sum(1))
    assert abs(report["lwlrap"] - expected) < 1e-6
    assert report["fold_lwlrap"] == {"0": 0.5, "1": 0.25}
    assert list(report["per_class_lwlrap"]) == list("abcde")
    # the overall score is the class-weighted mean of the per-class scores
    weighted = sum(report["per_class_lwlrap"][c] * report["class_weight"][c] for c in "abcde")
    assert abs(weighted - report["lwlrap"]) < 1e-6


def test_class_mean_lwlrap_against_sklearn_per_class():
    """On single-label clips, a class's lwlrap is scikit-learn's LRAP over the clips of that class; the
    class-averaged score is their plain mean, over the classes that have clips (class 5 has none)."""
    from src.metrics import class_mean_lwlrap
    rng = np.random.default_rng(11)
    labels = rng.choice([0, 1, 2, 3, 4], size=60, p=[0.5, 0.3, 0.1, 0.07, 0.03])
    y = np.eye(6)[labels]
    s = rng.random(y.shape) + 0.6 * y
    expected = np.mean([label_ranking_average_precision_score(y[labels == c], s[labels == c])
                        for c in np.unique(labels)])
    assert class_mean_lwlrap(y, s) == pytest.approx(expected, abs=1e-12)


def test_class_mean_lwlrap_sees_a_rare_class_that_lwlrap_hides():
    """39 clips of a common class ranked first, one clip of a rare class ranked last of 4: lwlrap drops by
    (1 - 1/4) / 40, the class average by (1 - 1/4) / 2."""
    from src.metrics import class_mean_lwlrap
    y = np.zeros((40, 4))
    y[:39, 0] = 1
    y[39, 1] = 1
    s = np.tile([0.9, 0.1, 0.5, 0.4], (40, 1))
    assert lwlrap(y, s) == pytest.approx(1 - 0.75 / 40)
    assert class_mean_lwlrap(y, s) == pytest.approx(1 - 0.75 / 2)


def test_oof_report_records_the_class_mean():
    from src.metrics import class_mean_lwlrap, oof_report
    y, s = random_case(5, n_classes=6)
    report = oof_report(y, s, list("abcdef"), {0: 0.5})
    present = [c for c in "abcdef" if report["class_weight"][c] > 0]
    assert report["class_mean_lwlrap"] == pytest.approx(np.mean([report["per_class_lwlrap"][c] for c in present]))
    assert report["class_mean_lwlrap"] == class_mean_lwlrap(y, s)
