import json

import numpy as np
import pandas as pd
import pytest

import blend
from src.metrics import lwlrap
from src.predict.prediction_sets import PredictionSet, predictions_dir, read_prediction_set, write_prediction_set

# Kaggle order of the fake data dir: deliberately not alphabetical, rows not sorted either.
CLASSES = ["Walk", "Bark", "Zipper", "Applause"]
TEST = ["t3.wav", "t0.wav", "t4.wav", "t1.wav", "t2.wav"]
CURATED = {"c0.wav": "Bark", "c1.wav": "Walk,Zipper", "c2.wav": "Applause", "c3.wav": "Bark,Applause",
           "c4.wav": "Zipper", "c5.wav": "Walk", "c6.wav": "Bark", "c7.wav": "Applause,Walk"}


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    sample = pd.DataFrame(0.0, index=range(len(TEST)), columns=CLASSES)
    sample.insert(0, "fname", TEST)
    sample.to_csv(d / "sample_submission.csv", index=False)
    folds = pd.DataFrame({"fname": list(CURATED), "labels": list(CURATED.values()),
                          "fold": [i % 2 for i in range(len(CURATED))]})
    folds.to_csv(d / "train_folds.csv", index=False)
    return d


def random_probs(seed, fnames, classes):
    """A frame fname x class of probabilities, to be written in any row/column order."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.uniform(0.01, 0.99, (len(fnames), len(classes))), index=fnames, columns=classes)


def write_split(data_dir, name, split, frame, row_order=None, class_order=None):
    """Write `frame` (fname index x class columns) as a prediction set in the given orders."""
    frame = frame.loc[row_order or list(frame.index), class_order or list(frame.columns)]
    pred = PredictionSet(list(frame.index), list(frame.columns), frame.to_numpy(np.float32))
    write_prediction_set(predictions_dir(data_dir, name) / split, pred)


def read_back(data_dir, name, split) -> pd.DataFrame:
    """What blend.py reads (float32, 7 significant digits), as a fname x class frame."""
    pred = read_prediction_set(predictions_dir(data_dir, name) / split, with_tiles=False)
    return pd.DataFrame(pred.probs.astype(np.float64), index=pred.fnames, columns=pred.classes)


def test_blend_is_the_geometric_mean_plain_and_weighted(data_dir):
    a, b = random_probs(0, TEST, CLASSES), random_probs(1, TEST, CLASSES)
    write_split(data_dir, "A", "test", a)
    write_split(data_dir, "B", "test", b)

    blend.main(["--experiments", "A", "B", "--data-dir", str(data_dir)])
    out = data_dir / "predictions" / "blend" / "submission.csv"
    sub = pd.read_csv(out).set_index("fname")
    np.testing.assert_allclose(sub.to_numpy(), np.sqrt(a * b).to_numpy(), rtol=1e-5)

    weighted = data_dir / "weighted.csv"
    blend.main(["--experiments", "A", "B", "--weights", "1", "2", "--data-dir", str(data_dir), "--out", str(weighted)])
    sub = pd.read_csv(weighted).set_index("fname")
    np.testing.assert_allclose(sub.to_numpy(), np.cbrt(a * b * b).to_numpy(), rtol=1e-5)
    record = json.loads((data_dir / "blend.json").read_text())
    assert record["experiments"] == ["A", "B"] and record["weights"] == [1.0, 2.0]
    assert record["cv"] is None  # no out-of-fold predictions


def test_submission_follows_sample_order_whatever_the_experiment_order(data_dir):
    a, b = random_probs(0, TEST, CLASSES), random_probs(1, TEST, CLASSES)
    write_split(data_dir, "A", "test", a, row_order=sorted(TEST), class_order=sorted(CLASSES))
    write_split(data_dir, "B", "test", b, row_order=TEST[::-1], class_order=["Applause", "Walk", "Zipper", "Bark"])

    blend.main(["--experiments", "A", "B", "--data-dir", str(data_dir)])
    sub = pd.read_csv(data_dir / "predictions" / "blend" / "submission.csv")
    assert list(sub.columns) == ["fname"] + CLASSES
    assert sub["fname"].tolist() == TEST  # every test file once, in sample_submission's row order
    values = sub[CLASSES].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    for fname, cls in [("t3.wav", "Walk"), ("t2.wav", "Applause"), ("t0.wav", "Zipper")]:
        got = sub.set_index("fname").loc[fname, cls]
        assert got == pytest.approx(np.sqrt(a.loc[fname, cls] * b.loc[fname, cls]), rel=1e-5)


def test_refuses_different_classes_naming_them(data_dir):
    write_split(data_dir, "A", "test", random_probs(0, TEST, CLASSES))
    write_split(data_dir, "B", "test", random_probs(1, TEST, ["Walk", "Bark", "Meow", "Applause"]))
    with pytest.raises(SystemExit, match=r"(?s)'B' vs 'A'.*class\(es\) missing.*Zipper.*extra class\(es\).*Meow"):
        blend.main(["--experiments", "A", "B", "--data-dir", str(data_dir)])
    assert not (data_dir / "predictions" / "blend" / "submission.csv").exists()


def test_refuses_different_files_naming_them(data_dir):
    write_split(data_dir, "A", "test", random_probs(0, TEST, CLASSES))
    write_split(data_dir, "B", "test", random_probs(1, TEST[:-1] + ["x9.wav"], CLASSES))
    with pytest.raises(SystemExit, match=r"(?s)'B' vs 'A'.*1 file\(s\) missing.*t2.wav.*1 extra file\(s\).*x9.wav"):
        blend.main(["--experiments", "A", "B", "--data-dir", str(data_dir)])
    # Experiments that agree with each other but not with sample_submission.csv: named too.
    write_split(data_dir, "B", "test", random_probs(1, TEST[:-1], CLASSES))
    write_split(data_dir, "C", "test", random_probs(2, TEST[:-1], CLASSES))
    with pytest.raises(SystemExit, match=r"'B' test predictions do not match .*sample_submission.csv.*t2.wav"):
        blend.main(["--experiments", "B", "C", "--data-dir", str(data_dir)])


def test_missing_experiment_names_the_path_and_predict_folds(data_dir):
    write_split(data_dir, "A", "test", random_probs(0, TEST, CLASSES))
    missing = predictions_dir(data_dir, "nope")
    with pytest.raises(SystemExit, match=rf"{missing}.*'nope'.*predict_folds.py"):
        blend.main(["--experiments", "A", "nope", "--data-dir", str(data_dir)])


def test_weights_must_match_the_experiments(data_dir, capsys):
    with pytest.raises(SystemExit):
        blend.main(["--experiments", "A", "B", "--weights", "1", "--data-dir", str(data_dir)])
    assert "1 weight(s) for 2 experiment(s)" in capsys.readouterr().err


def printed_scores(text) -> dict:
    """{'A': 0.81, ..., 'blend': 0.85} from the CV lines `  NAME  SCORE`."""
    lines = text.split("CV lwlrap", 1)[1].splitlines()[1:]
    return {name: float(score) for name, score in (line.split() for line in lines if line.startswith("  "))}


def test_cv_lwlrap_of_the_blended_oof(data_dir, capsys):
    fnames = list(CURATED)
    write_split(data_dir, "A", "test", random_probs(0, TEST, CLASSES))
    write_split(data_dir, "B", "test", random_probs(1, TEST, CLASSES))
    write_split(data_dir, "A", "oof", random_probs(2, fnames, CLASSES), row_order=fnames[::-1])
    write_split(data_dir, "B", "oof", random_probs(3, fnames, CLASSES), class_order=CLASSES[::-1])

    # Directly: align by name, geometric mean, lwlrap against train_folds.csv's labels.
    a = read_back(data_dir, "A", "oof").loc[fnames, CLASSES].to_numpy()
    b = read_back(data_dir, "B", "oof").loc[fnames, CLASSES].to_numpy()
    y = np.array([[c in labels.split(",") for c in CLASSES] for labels in CURATED.values()], dtype=float)
    expected = {"A": lwlrap(y, a), "B": lwlrap(y, b), "blend": lwlrap(y, np.sqrt(a * b))}
    assert len(set(round(v, 6) for v in expected.values())) == 3  # the three scores are distinguishable

    blend.main(["--experiments", "A", "B", "--data-dir", str(data_dir)])
    printed = printed_scores(capsys.readouterr().out)
    assert printed == pytest.approx(expected, abs=1e-6)
    cv = json.loads((data_dir / "predictions" / "blend" / "blend.json").read_text())["cv"]
    assert cv["blend"] == pytest.approx(expected["blend"], abs=1e-9)
    assert cv["experiments"] == pytest.approx({"A": expected["A"], "B": expected["B"]}, abs=1e-9)
    assert cv["n_clips"] == len(fnames) and cv["labels"].endswith("train_folds.csv")

    # With corrections: c0 removed and c1 relabelled, scored like training would see them.
    corrections = data_dir / "corrections.json"
    corrections.write_text(json.dumps({"c0.wav": "remove", "c1.wav": "Applause"}))
    blend.main(["--experiments", "A", "B", "--data-dir", str(data_dir), "--corrections", str(corrections)])
    y_corr = y.copy()
    y_corr[1] = [0, 0, 0, 1]
    assert printed_scores(capsys.readouterr().out)["blend"] == pytest.approx(
        lwlrap(y_corr[1:], np.sqrt(a * b)[1:]), abs=1e-6)


def test_cv_refuses_different_oof_clip_sets(data_dir):
    fnames = list(CURATED)
    for i, name in enumerate("AB"):
        write_split(data_dir, name, "test", random_probs(i, TEST, CLASSES))
    write_split(data_dir, "A", "oof", random_probs(2, fnames, CLASSES))
    write_split(data_dir, "B", "oof", random_probs(3, fnames[1:], CLASSES))
    with pytest.raises(SystemExit, match=r"(?s)out-of-fold.*'B' vs 'A': 1 file\(s\) missing.*c0.wav"):
        blend.main(["--experiments", "A", "B", "--data-dir", str(data_dir)])
    # Refused before writing anything: only the hidden lock file of the run (src/locks.py) is there.
    assert [p.name for p in (data_dir / "predictions" / "blend").iterdir()] == [".submission.csv.lock"]
