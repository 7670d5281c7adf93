"""A Kaggle-layout data folder: the one reader of its class list and of its test clips.

    <data>/sample_submission.csv   fname + one column per class: the test clips' order and the class order
    <data>/train_curated.csv       fname,labels (curated clips)      <data>/train_curated/*.wav
    <data>/train_noisy.csv         fname,labels (noisy clips)        <data>/train_noisy/*.wav
    <data>/train_folds.csv         train_curated.csv + a fold column (make_folds.py)
    <data>/test/*.wav

Kaggle's class order is the column order of `sample_submission.csv`, and its
row order is the submission's. A user's own data set may have neither: the
class list is then the sorted union of the train CSVs' labels, and the test
clips are the audio files of `test/`. It may also have no test clips at all (no
sample_submission.csv rows, and no test/ folder or no audio in it): the chain
then makes out-of-fold predictions only (`no_test_clips_note` says so).
"""
import re
from pathlib import Path

from src.audio.frontend import AUDIO_EXTENSIONS
from src.data.labels import check_fnames, parse_labels, read_csv_columns, read_header, read_train_csv
from src.errors import BadInput, BadSetting, InputFileNotFound

SAMPLE_SUBMISSION = "sample_submission.csv"
FOLD = re.compile(r"\s*[0-9]{1,6}\s*")  # a fold number as train_folds.csv writes it (ASCII digits only)


def read_sample_submission(path) -> tuple:
    """(fnames, classes) of a sample submission, in its row and column order.

    The header must be `fname,<class>,...` without repeats; the fnames are checked
    like every CSV's (plain file names, no duplicates).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFound(f"{path}: no such sample submission (it gives the submission's rows and columns)")
    frame = read_csv_columns(path, ("fname",), what="sample submission")
    # pandas renames a repeated header cell 'A' to 'A.1'; the raw header shows the repeat.
    header = read_header(path)
    if header[0] != "fname" or len(header) < 2 or len(set(header)) != len(header):
        raise BadInput(f"{path}: expected a header 'fname,<class>,...' without repeats, got {header[:6]}")
    check_fnames(frame["fname"], path)
    return frame["fname"].tolist(), list(frame.columns[1:])


def read_classes(data_dir) -> list:
    """Class vocabulary in the order submissions use: sample_submission.csv's, else the train CSVs' labels, sorted."""
    data_dir = Path(data_dir)
    sample = data_dir / SAMPLE_SUBMISSION
    if sample.exists():
        return read_sample_submission(sample)[1]
    labels = set()
    for name in ("train_curated.csv", "train_noisy.csv"):
        path = data_dir / name
        if path.exists():
            for value in read_csv_columns(path, ("labels",))["labels"]:
                labels.update(parse_labels(value))
    if not labels:
        raise InputFileNotFound(
            f"No class list found in {data_dir}: expected {SAMPLE_SUBMISSION} "
            f"or train_curated.csv / train_noisy.csv with a 'labels' column")
    return sorted(labels)


def read_test_fnames(data_dir) -> list:
    """Test clips in submission order: sample_submission.csv's rows, else the audio files of test/, sorted.

    [] when the data set has no test clips: a sample_submission.csv without rows, or none and no
    test/ folder (or one without audio files). Whether the files named exist is checked by their reader.
    """
    data_dir = Path(data_dir)
    sample = data_dir / SAMPLE_SUBMISSION
    if sample.is_file():
        return read_sample_submission(sample)[0]
    folder = data_dir / "test"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def no_test_clips_note(data_dir, outcome="out-of-fold predictions only") -> str:
    """The one line a script prints when `read_test_fnames` found no test clips: why, and what it does then."""
    data_dir = Path(data_dir)
    if (data_dir / SAMPLE_SUBMISSION).is_file():
        why = f"{SAMPLE_SUBMISSION} has no rows"
    elif (data_dir / "test").is_dir():
        why = f"no {SAMPLE_SUBMISSION} and no audio files in test/"
    else:
        why = f"no {SAMPLE_SUBMISSION} and no test/ folder"
    return f"no test clips in {data_dir} ({why}): {outcome}"


def read_folds(data_dir):
    """train_folds.csv (fname, labels, fold as int): the curated clips and the fold of each."""
    path = Path(data_dir) / "train_folds.csv"
    if not path.is_file():
        raise InputFileNotFound(f"{path} not found: run `python make_folds.py --data-dir {data_dir}` first")
    df = read_train_csv(path)
    if "fold" not in df.columns:
        raise BadInput(f"{path}: missing column 'fold' (made by make_folds.py)")
    # Folds are small non-negative integers; '', 'nan', '1.5' or '-1' would train on a wrong split.
    bad = [(i + 2, f, v) for i, (f, v) in enumerate(zip(df["fname"], df["fold"])) if not FOLD.fullmatch(v)]
    if bad:
        shown = "; ".join(f"line {line} {f!r}: {v!r}" for line, f, v in bad[:5])
        raise BadInput(f"{path}: {len(bad)} row(s) whose fold is not a non-negative integer, e.g. {shown} "
                       f"(remake the file with make_folds.py)")
    df["fold"] = df["fold"].astype(int)
    return df


def choose_folds(requested, available) -> list:
    """The folds a run works on: `requested` (a --folds option; None = all), each one of train_folds.csv's."""
    available = sorted(set(int(f) for f in available))
    if requested is None:
        return available
    unknown = sorted(set(requested) - set(available))
    if unknown:
        raise BadSetting(f"--folds {unknown}: train_folds.csv only has folds {available}")
    return list(requested)
