"""Strict inputs: fnames are plain file names, CSVs are UTF-8, score.py checks every cell, no NaN is written."""
import numpy as np
import pandas as pd
import pytest

import score
from src.data.layout import read_classes, read_sample_submission, read_test_fnames
from src.errors import BadInput, UserError
from src.data.labels import check_fnames, read_csv_columns, read_train_csv
from src.metrics import lwlrap
from src.predict.prediction_sets import PredictionSet, write_prediction_set
from src.tagging.files import write_results

CLASSES = ["Bark", "Chime", "Hum"]


def write_csv(path, rows, header="fname,labels"):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


# --- fnames ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../test/x.wav", "/etc/passwd", "sub/x.wav", "./a.wav", "..", "a\\b.wav",
                                 "C:x.wav", " "])
def test_train_csv_refuses_paths_as_fnames(tmp_path, bad):
    path = write_csv(tmp_path / "train_curated.csv", ["ok.wav,Bark", f'"{bad}",Hum'])
    with pytest.raises(BadInput, match=r"train_curated\.csv.*line 3") as info:
        read_train_csv(path)
    assert isinstance(info.value, ValueError)  # still a ValueError for callers that catch that


def test_duplicates_are_judged_after_normalisation(tmp_path):
    # 'é' composed (NFC) vs 'e' + combining accent (NFD): the same name on screen and on most file systems
    rows = ["caf\u00e9.wav,Bark", "b.wav,Hum", "cafe\u0301.wav,Chime"]
    with pytest.raises(BadInput, match=r"line 4.*repeats.*line 2"):
        read_train_csv(write_csv(tmp_path / "t.csv", rows))
    with pytest.raises(BadInput, match="duplicated"):
        read_train_csv(write_csv(tmp_path / "t2.csv", ["a.wav,Bark", '" a.wav ",Hum']))
    # './a.wav' beside 'a.wav' is caught as a path before it could train the same audio twice
    with pytest.raises(BadInput, match="'./a.wav'"):
        read_train_csv(write_csv(tmp_path / "t3.csv", ["a.wav,Bark", "./a.wav,Bark"]))


def test_plain_names_pass(tmp_path):
    names = ["a.wav", "b c.wav", "..hidden.wav", "x..y.flac", "caf\u00e9.wav"]
    check_fnames(names, "ok.csv")
    df = read_train_csv(write_csv(tmp_path / "t.csv", [f'"{n}",Bark' for n in names]))
    assert df["fname"].tolist() == names


def test_sample_submission_readers_check_names(tmp_path):
    write_csv(tmp_path / "sample_submission.csv", ["t1.wav,0,0,0", "../train_curated/c.wav,0,0,0"],
              header="fname," + ",".join(CLASSES))
    # One reader (src/data/layout.py) behind the test clips, the class list and the submission order.
    for read in (read_test_fnames, read_classes):
        with pytest.raises(BadInput, match=r"sample_submission\.csv.*line 3.*'\.\./train_curated/c\.wav'"):
            read(tmp_path)
    with pytest.raises(BadInput, match=r"sample_submission\.csv.*line 3"):
        read_sample_submission(tmp_path / "sample_submission.csv")


def test_non_utf8_csv_names_the_file(tmp_path):
    path = tmp_path / "train_curated.csv"
    path.write_bytes("fname,labels\nfa\u00e7ade.wav,Bark\n".encode("latin-1"))
    with pytest.raises(BadInput, match=r"train_curated\.csv: not UTF-8"):
        read_train_csv(path)
    with pytest.raises(BadInput, match="sheet.csv: not UTF-8"):
        path.rename(tmp_path / "sheet.csv")
        read_csv_columns(tmp_path / "sheet.csv", ("fname",))


# --- score.py -------------------------------------------------------------------------------------

@pytest.fixture
def scored(tmp_path):
    """labels + sample_submission + a valid submission; returns (folder, submission frame, labels path)."""
    rng = np.random.default_rng(0)
    fnames = [f"t{i}.wav" for i in range(12)]
    labels = [CLASSES[i % 3] + ("," + CLASSES[(i + 1) % 3] if i % 4 == 0 else "") for i in range(12)]
    labels_path = write_csv(tmp_path / "test_labels.csv", [f'{f},"{v}"' for f, v in zip(fnames, labels)])
    pd.DataFrame({"fname": fnames, **{c: 0.0 for c in CLASSES}}).to_csv(tmp_path / "sample_submission.csv",
                                                                      index=False)
    sub = pd.DataFrame(rng.random((12, 3)), columns=CLASSES)
    sub.insert(0, "fname", fnames)
    return tmp_path, sub, labels_path


def score_frame(folder, frame, labels_path, **kwargs):
    path = folder / "submission.csv"
    frame.to_csv(path, index=False)
    return score.score(path, labels_path, **kwargs)


def test_score_matches_lwlrap_and_ignores_column_order(scored):
    folder, sub, labels_path = scored
    overall, per_class = score_frame(folder, sub, labels_path)
    truth = np.array([[c in v.split(",") for c in CLASSES] for v in pd.read_csv(labels_path)["labels"]], float)
    assert overall == pytest.approx(lwlrap(truth, sub[CLASSES].to_numpy()))
    shuffled = sub[["fname", "Hum", "Bark", "Chime"]].iloc[::-1]
    assert score_frame(folder, shuffled, labels_path)[0] == pytest.approx(overall)
    assert set(per_class) == set(CLASSES)


def test_score_refuses_extra_and_missing_columns(scored):
    folder, sub, labels_path = scored
    with pytest.raises(BadInput, match=r"extra column\(s\) \['Meow'\]"):
        score_frame(folder, sub.assign(Meow=0.9), labels_path)
    with pytest.raises(BadInput, match=r"missing column\(s\) \['Hum'\]"):
        score_frame(folder, sub.drop(columns="Hum"), labels_path)
    # the class list came from sample_submission.csv beside the labels; without it, from the labels
    (folder / "sample_submission.csv").unlink()
    with pytest.raises(BadInput, match=r"class list of the labels of .*test_labels.csv: extra column.*Meow"):
        score_frame(folder, sub.assign(Meow=0.9), labels_path)
    # or from an explicit --sample-submission
    other = folder / "other.csv"
    pd.DataFrame(columns=["fname", *CLASSES, "Meow"]).to_csv(other, index=False)
    assert score_frame(folder, sub.assign(Meow=0.0), labels_path, sample_path=other)[0] > 0


def test_score_refuses_bad_rows_and_values(scored):
    folder, sub, labels_path = scored
    with pytest.raises(BadInput, match=r"duplicated.*'t0.wav'"):
        score_frame(folder, pd.concat([sub, sub.iloc[:1]]), labels_path)
    with pytest.raises(BadInput, match=r"no prediction for 1 labelled file.*t11.wav"):
        score_frame(folder, sub.iloc[:-1], labels_path)
    extra = pd.concat([sub, sub.iloc[:1].assign(fname="zz.wav")])
    with pytest.raises(BadInput, match=r"1 file\(s\) without labels.*zz.wav"):
        score_frame(folder, extra, labels_path)
    for value, shown in ((np.nan, "'nan'|''"), (np.inf, "'inf'"), (1.5, "'1.5'"), (-0.1, "'-0.1'")):
        bad = sub.copy()
        bad.loc[3, "Chime"] = value
        with pytest.raises(BadInput, match=rf"column 'Chime'.*line 5 \('t3.wav'\): ({shown})"):
            score_frame(folder, bad, labels_path)
    text = sub.astype({"Bark": object})
    text.loc[0, "Bark"] = "high"
    with pytest.raises(BadInput, match=r"column 'Bark'.*line 2.*'high'"):
        score_frame(folder, text, labels_path)


def test_score_refuses_repeated_header_cells(scored):
    folder, sub, labels_path = scored
    path = folder / "submission.csv"
    sub.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("Hum", "Bark")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match=r"\['Bark'\] appear more than once"):
        score.score(path, labels_path)


# --- no NaN in outputs ----------------------------------------------------------------------------

def test_writers_refuse_nan(tmp_path):
    probs = np.full((3, 3), 0.5, np.float32)
    probs[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"probs\.csv: refusing to write.*NaN.*'b.wav'"):
        write_prediction_set(tmp_path / "set", PredictionSet(["a.wav", "b.wav", "c.wav"], CLASSES, probs))
    assert not (tmp_path / "set" / "probs.csv").exists()
    with pytest.raises(ValueError, match=r"out\.csv: refusing to write"):
        write_results([("a.wav", probs[0]), ("b.wav", probs[1])], CLASSES, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    assert not issubclass(ValueError, UserError)  # a NaN output is a bug somewhere: it keeps its traceback


def test_folds_option_is_checked_against_train_folds(tmp_path):
    from src.data.layout import choose_folds
    from src.errors import BadSetting
    assert choose_folds(None, [2, 0, 1, 0]) == [0, 1, 2]
    assert choose_folds([1], [0, 1, 2]) == [1]
    with pytest.raises(BadSetting, match=r"--folds \[7\]: train_folds.csv only has folds \[0, 1, 2\]"):
        choose_folds([1, 7], [0, 1, 2])
