import json

import numpy as np
import pandas as pd
import pytest

import review_labels
from src.data.labels import apply_corrections, load_corrections
from src.predict.prediction_sets import PredictionSet, predictions_dir, write_prediction_set

CLASSES = ["Walk", "Bark", "Zipper", "Applause"]  # Kaggle order, not alphabetical
TRUE = {f"c{i}.wav": labels for i, labels in enumerate(
    ["Bark", "Walk,Zipper", "Bark", "Applause", "Zipper", "Walk", "Bark,Applause", "Applause", "Zipper", "Walk"])}
# Deliberately wrong given labels for two clips; the predictions follow the true ones.
MISLABELED = {"c2.wav": "Walk", "c7.wav": "Zipper"}
GIVEN = {f: MISLABELED.get(f, labels) for f, labels in TRUE.items()}


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    pd.DataFrame(columns=["fname"] + CLASSES).to_csv(d / "sample_submission.csv", index=False)
    pd.DataFrame({"fname": list(GIVEN), "labels": list(GIVEN.values()),
                  "fold": [i % 2 for i in range(len(GIVEN))]}).to_csv(d / "train_folds.csv", index=False)
    # Two experiments' out-of-fold predictions: ~0.9 on the true labels, low noise elsewhere.
    rng = np.random.default_rng(0)
    for name in ("A", "B"):
        probs = rng.uniform(0.01, 0.1, (len(TRUE), len(CLASSES)))
        for i, labels in enumerate(TRUE.values()):
            for label in labels.split(","):
                probs[i, CLASSES.index(label)] = rng.uniform(0.88, 0.92)
        write_prediction_set(predictions_dir(d, name) / "oof",
                             PredictionSet(list(TRUE), CLASSES, probs.astype(np.float32)))
    return d


def make_sheet(data_dir, *extra):
    out = data_dir / "review.csv"
    review_labels.main(["--experiments", "A", "B", "--data-dir", str(data_dir), "--out", str(out), *extra])
    return pd.read_csv(out, dtype=str, keep_default_na=False)


def test_review_ranks_the_mislabeled_clips_first(data_dir):
    sheet = make_sheet(data_dir, "--top", "5")
    assert list(sheet.columns) == review_labels.COLUMNS and len(sheet) == 5
    assert set(sheet["fname"][:2]) == set(MISLABELED)
    scores = sheet["clip_lwlrap"].astype(float).to_numpy()
    assert (np.diff(scores) >= 0).all()                     # lowest first
    assert scores[:2].max() < 1.0 and (scores[2:] == 1.0).all()
    for row in sheet[:2].itertuples():
        assert row.given_labels == MISLABELED[row.fname]
        assert row.suggested_labels == TRUE[row.fname]      # the only class above 0.5
        top = row.predicted_top.split()
        assert len(top) == 3 and top[0].startswith(TRUE[row.fname] + ":0.9")
        assert row.decision == ""


def test_suggestions_threshold_and_top1_fallback():
    probs = np.array([0.3, 0.7, 0.55, 0.1])
    assert review_labels.suggest_labels(probs, CLASSES) == "Bark,Zipper"
    assert review_labels.suggest_labels(probs, CLASSES, threshold=0.8) == "Bark"
    assert review_labels.format_top(probs, CLASSES, k=2) == "Bark:0.70 Zipper:0.55"


def test_reviewed_sheet_round_trips_into_corrections(data_dir):
    sheet = make_sheet(data_dir, "--top", "4")
    decisions = {"c2.wav": "Bark", "c7.wav": "remove"}
    sheet["decision"] = sheet["fname"].map(decisions).fillna("")
    sheet.loc[2, "decision"] = "keep"
    extra = pd.DataFrame([{"fname": "c4.wav", "decision": " Zipper, Applause,Zipper "}])  # normalised
    reviewed = data_dir / "reviewed.csv"
    pd.concat([sheet, extra], ignore_index=True).to_csv(reviewed, index=False)

    out = data_dir / "corrections.json"
    review_labels.main(["--apply", str(reviewed), "--out", str(out), "--data-dir", str(data_dir)])
    expected = {"c2.wav": "Bark", "c7.wav": "remove", "c4.wav": "Zipper,Applause"}
    assert json.loads(out.read_text()) == expected

    # --merge keeps existing entries and lets the new decisions win.
    existing = data_dir / "old.json"
    existing.write_text(json.dumps({"c5.wav": "Bark", "c7.wav": "Walk"}))
    merged = data_dir / "merged.json"
    review_labels.main(["--apply", str(reviewed), "--out", str(merged), "--merge", str(existing),
                        "--data-dir", str(data_dir)])
    assert json.loads(merged.read_text()) == {"c5.wav": "Bark", **expected}

    # The JSON is what training reads; a second review against it no longer flags the fixed clips.
    corrected = apply_corrections(pd.read_csv(data_dir / "train_folds.csv"), load_corrections(out), CLASSES)
    assert "c7.wav" not in set(corrected["fname"])
    second = make_sheet(data_dir, "--top", "20", "--corrections", str(out))
    assert "c7.wav" not in set(second["fname"])
    c2 = second.set_index("fname").loc["c2.wav"]
    assert c2["given_labels"] == "Bark" and float(c2["clip_lwlrap"]) == 1.0


def test_unknown_labels_are_refused_naming_their_rows(data_dir):
    sheet = make_sheet(data_dir, "--top", "4")
    sheet["decision"] = ["", "Barkk", "", "Walk,Meow"]
    reviewed = data_dir / "reviewed.csv"
    sheet.to_csv(reviewed, index=False)
    out = data_dir / "corrections.json"
    with pytest.raises(SystemExit) as info:
        review_labels.main(["--apply", str(reviewed), "--out", str(out), "--data-dir", str(data_dir)])
    message = str(info.value)
    assert f"line 3 ({sheet['fname'][1]}): ['Barkk']" in message
    assert f"line 5 ({sheet['fname'][3]}): ['Meow']" in message
    assert not out.exists()


def test_help_explains_the_decision_column(capsys):
    with pytest.raises(SystemExit):
        review_labels.main(["--help"])
    text = capsys.readouterr().out
    for needle in ("decision", "remove", "keep", "--apply", "--merge", "comma-separated"):
        assert needle in text
    for needle in ("decision", "remove", "--apply", "--merge"):
        assert needle in review_labels.__doc__
