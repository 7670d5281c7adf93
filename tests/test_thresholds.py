"""Yes/no thresholds (src/thresholds.py): on generated predictions whose right threshold is known,
the chosen thresholds and their F1 are right; classes with few positives share the overall threshold."""
import numpy as np
import pytest
from sklearn.metrics import f1_score

from src.errors import BadInput
from src.thresholds import (best_f1_threshold, choose_thresholds, f1_scores, labels_of, read_thresholds, tags,
                            thresholds_record)


def brute_force_best_f1(truth, scores) -> float:
    """The best F1 of any threshold, trying every distinct score as the cut (scikit-learn's F1)."""
    return max(f1_score(truth, scores >= t, zero_division=0) for t in np.unique(scores))


def test_separable_class_gets_a_threshold_between_its_negatives_and_positives():
    rng = np.random.default_rng(0)
    positives, negatives = rng.uniform(0.6, 0.9, 30), rng.uniform(0.05, 0.35, 70)
    scores = np.concatenate([positives, negatives])
    truth = np.r_[np.ones(30), np.zeros(70)]
    threshold, f1 = best_f1_threshold(truth, scores)
    assert f1 == 1.0
    assert threshold == pytest.approx((positives.min() + negatives.max()) / 2)


def test_known_best_cut_with_overlap():
    """Scores 0.9 0.8 0.7 0.6 0.5 0.4 with truth 1 1 0 1 0 0: cutting at 0.65 gives F1 0.8 (tp 2, k 2),
    at 0.55 gives 6/7 (tp 3, k 4): the best, so the threshold is 0.55."""
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    truth = np.array([1, 1, 0, 1, 0, 0])
    threshold, f1 = best_f1_threshold(truth, scores)
    assert threshold == pytest.approx(0.55)
    assert f1 == pytest.approx(6 / 7)
    assert f1 == pytest.approx(f1_score(truth, scores >= threshold))


@pytest.mark.parametrize("seed", range(5))
def test_best_f1_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random(200) < 0.3
    scores = np.round(np.clip(truth * 0.3 + rng.normal(0.4, 0.2, 200), 0, 1), 2)  # rounded: many ties
    threshold, f1 = best_f1_threshold(truth, scores)
    assert f1 == pytest.approx(brute_force_best_f1(truth, scores))
    assert f1_score(truth, scores >= threshold) == pytest.approx(f1)  # the threshold gives that F1


def test_classes_with_few_positives_take_the_shared_threshold():
    rng = np.random.default_rng(1)
    n = 300
    truth = np.zeros((n, 3), bool)
    truth[:100, 0] = True  # separable at 0.7 (positives in [0.75, 1], negatives in [0, 0.65])
    truth[100:200, 1] = True  # separable at 0.3
    truth[[5, 250], 2] = True  # two positives: too few for a threshold of its own
    probs = np.where(truth, rng.uniform(0.75, 1.0, (n, 3)), rng.uniform(0.0, 0.65, (n, 3)))
    probs[:, 1] = np.where(truth[:, 1], rng.uniform(0.35, 0.5, n), rng.uniform(0.0, 0.25, n))
    thresholds = choose_thresholds(truth, probs)
    assert 0.65 < thresholds[0] < 0.75 and 0.25 < thresholds[1] < 0.35
    shared, _ = best_f1_threshold(truth, probs)
    assert thresholds[2] == pytest.approx(shared)
    assert f1_scores(truth[:, :2], tags(probs, thresholds)[:, :2]) == {"micro": 1.0, "macro": 1.0}


def test_labels_most_probable_first_and_record_round_trip(tmp_path):
    classes = ["a", "b", "c"]
    probs = np.array([[0.2, 0.9, 0.6], [0.1, 0.1, 0.1]])
    assert labels_of(probs, classes, [0.5, 0.5, 0.5]) == [["b", "c"], []]
    assert labels_of(probs, classes, [0.1, 0.95, 0.5]) == [["c", "a"], ["a"]]
    record = thresholds_record(classes, [0.1, 0.95, 0.5], truth=[[0, 1, 1], [1, 0, 0]], probs=probs)
    assert record["oof_f1"]["micro"] == pytest.approx(f1_score([0, 1, 1, 1, 0, 0], [1, 0, 1, 1, 0, 0]))
    path = tmp_path / "thresholds.json"
    import json
    path.write_text(json.dumps(record))
    assert read_thresholds(path, ["c", "a", "b"]).tolist() == pytest.approx([0.5, 0.1, 0.95])
    with pytest.raises(BadInput, match="no threshold for class"):
        read_thresholds(path, ["a", "z"])


def test_macro_f1_leaves_out_classes_the_data_never_has():
    """A class list wider than the data (13 of Kaggle's 80 classes, say): classes without a true label are
    out of the macro mean (as mAP), not zeros in it; micro F1 still counts their false positives."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    truth = np.zeros((30, 8), bool)
    truth[:, :3] = rng.random((30, 3)) < 0.4
    truth[np.arange(30), np.arange(30) % 3] = True
    predicted = truth.copy()
    predicted[:5, 0] = ~predicted[:5, 0]
    predicted[0, 6] = True  # a false positive in a class the data never has
    scores = f1_scores(truth, predicted)
    assert scores["macro"] == pytest.approx(f1_score(truth[:, :3], predicted[:, :3], average="macro"))
    assert scores["micro"] == pytest.approx(f1_score(truth, predicted, average="micro"))
    assert scores["micro"] < f1_score(truth[:, :3], predicted[:, :3], average="micro")
