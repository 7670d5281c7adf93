"""Score a submission CSV against true labels with lwlrap (the competition metric).

    python score.py data/demo/predictions/blend/submission.csv data/demo/test_labels.csv

SUBMISSION: fname + one probability column per class (Kaggle format), or the
CSV of `tag.py --out x.csv` (fname, path, one column per class: its `path`
column is ignored).
LABELS: fname,labels with comma-separated labels (train_curated.csv layout).
Prints overall lwlrap, mAP (macro: the mean over classes of each class's
average precision, scikit-learn) and the micro and macro F1 of the yes/no tags;
with --per-class, each class's lwlrap, average precision and F1.

The yes/no tags are, in this order of preference: --threshold X for every class;
the per-class thresholds of --thresholds FILE (a thresholds.json of
predict_folds.py); the `labels` column of tag.py's CSV (the tags it wrote at
its recorded or given thresholds); else 0.5 for every class.

The check is strict, because lwlrap ranks every column of a row against the
others: one extra column changes the score. The class list comes from
--sample-submission, else sample_submission.csv beside the labels file, else
the labels file's own labels; the submission must have exactly those class
columns (any order; besides them only tag.py's `path`), one row per labelled
clip (no more, no fewer, no duplicates), and every probability must be a
number in [0, 1].
"""
import argparse
from pathlib import Path

import numpy as np

from src.cli import run
from src.errors import BadInput
from src.data.labels import (check_fnames, check_labels, parse_labels, read_csv_columns, read_header, read_train_csv,
                             targets_matrix)
from src.data.layout import read_sample_submission
from src.metrics import lwlrap, per_class_lwlrap
from src.thresholds import DEFAULT_THRESHOLD, f1_scores, read_thresholds
from src.thresholds import tags as tags_at

SHOW = 5  # names shown per problem
# Columns that are not classes and are skipped when present: tag.py's CSV has the file's path after fname.
IGNORED_COLUMNS = ("path", "labels")  # tag.py's `labels` (its yes/no tags) are read by `read_tag_labels`


def read_class_list(labels, labels_path, sample_path=None) -> tuple:
    """(classes, source): from `sample_path`, else sample_submission.csv beside the labels, else the labels."""
    if sample_path is None and (Path(labels_path).parent / "sample_submission.csv").is_file():
        sample_path = Path(labels_path).parent / "sample_submission.csv"
    if sample_path is not None:
        return read_sample_submission(sample_path)[1], str(sample_path)
    classes = sorted({label for value in labels["labels"] for label in parse_labels(value)})
    return classes, f"the labels of {labels_path}"


def read_submission(path, classes, source) -> tuple:
    """(fnames, probs) of a submission whose columns are exactly fname + `classes` (+ IGNORED_COLUMNS);
    probs in `classes` order."""
    frame = read_csv_columns(path, ("fname",), what="submission")
    header = list(frame.columns)
    if header[0] != "fname":
        raise BadInput(f"{path}: first column must be 'fname', got {header[0]!r}")
    # pandas renames a repeated header cell 'A' to 'A.1'; read the raw header to name the repeat.
    raw = read_header(path)
    repeated = sorted({c for c in raw if raw.count(c) > 1})
    if repeated:
        raise BadInput(f"{path}: column(s) {repeated} appear more than once")
    extra = [c for c in header[1:] if c not in set(classes) and c not in IGNORED_COLUMNS]
    missing = [c for c in classes if c not in set(header)]
    if extra or missing:
        raise BadInput(f"{path}: columns differ from the class list of {source}: "
                       + "; ".join(p for p in (f"extra column(s) {extra[:SHOW]}" if extra else "",
                                               f"missing column(s) {missing[:SHOW]}" if missing else "") if p))
    check_fnames(frame["fname"], path)
    probs = np.empty((len(frame), len(classes)), np.float64)
    for j, name in enumerate(classes):
        cells = frame[name].str.strip()
        try:
            values = cells.astype(np.float64).to_numpy()
        except ValueError:
            values = np.array([_number(c) for c in cells])
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values > 1))
        if len(bad):
            shown = ", ".join(f"line {i + 2} ({frame['fname'].iloc[i]!r}): {cells.iloc[i]!r}" for i in bad[:SHOW])
            raise BadInput(f"{path}: column {name!r} has {len(bad)} value(s) that are not probabilities "
                           f"in [0, 1]: {shown}")
        probs[:, j] = values
    return frame["fname"].tolist(), probs


def _number(text) -> float:
    try:
        return float(text)
    except ValueError:
        return np.nan


def read_tag_labels(path, fnames, classes):
    """(n, C) bool yes/no tags of tag.py's CSV `labels` column, rows in `fnames` order; None without one."""
    frame = read_csv_columns(path, ("fname",), what="submission")
    if "labels" not in frame.columns:
        return None
    tags = dict(zip(frame["fname"], frame["labels"].fillna("")))
    unknown = sorted({t for value in tags.values() for t in parse_labels(value)} - set(classes))
    if unknown:
        raise BadInput(f"{path}: `labels` column names unknown class(es) {unknown[:SHOW]}")
    return targets_matrix([tags[f] for f in fnames], classes).astype(bool)


def score(submission_path, labels_path, sample_path=None) -> tuple:
    """(overall lwlrap, {class: lwlrap}) of a submission against a labels CSV (see the module docstring)."""
    scores = score_all(submission_path, labels_path, sample_path)
    return scores["lwlrap"], scores["per_class"]["lwlrap"]


def score_all(submission_path, labels_path, sample_path=None, threshold=None, thresholds_path=None) -> dict:
    """lwlrap, mAP and F1 of a submission against a labels CSV: {"lwlrap", "map", "f1": {"micro",
    "macro"}, "tags": where the yes/no tags came from, "per_class": {"lwlrap", "ap", "f1": {class: value}}}."""
    from sklearn.metrics import average_precision_score, f1_score

    labels = read_train_csv(labels_path)
    classes, source = read_class_list(labels, labels_path, sample_path)
    check_labels(labels, classes, source=str(labels_path))
    fnames, probs = read_submission(submission_path, classes, source)
    row = {f: i for i, f in enumerate(fnames)}
    missing = [f for f in labels["fname"] if f not in row]
    extra = sorted(set(fnames) - set(labels["fname"]))
    if missing or extra:
        raise BadInput(f"{submission_path}: rows differ from {labels_path}: "
                       + "; ".join(p for p in (f"no prediction for {len(missing)} labelled file(s), e.g. "
                                               f"{missing[:SHOW]}" if missing else "",
                                               f"{len(extra)} file(s) without labels, e.g. {extra[:SHOW]}"
                                               if extra else "") if p))
    probs = probs[[row[f] for f in labels["fname"]]]
    truth = targets_matrix(labels["labels"].tolist(), classes)
    per_class, _ = per_class_lwlrap(truth, probs)
    tags, source = yes_no_tags(submission_path, probs, labels["fname"].tolist(), classes, threshold, thresholds_path)
    # average precision is undefined for a class without positives: those are left out of the mean (NaN)
    ap = np.array([average_precision_score(truth[:, j], probs[:, j]) if truth[:, j].any() else np.nan
                   for j in range(len(classes))])
    class_f1 = f1_score(truth, tags, average=None, zero_division=0)
    return {"lwlrap": lwlrap(truth, probs), "map": float(np.nanmean(ap)) if np.isfinite(ap).any() else np.nan,
            "f1": f1_scores(truth, tags),
            "tags": source, "per_class": {"lwlrap": dict(zip(classes, per_class.tolist())),
                                          "ap": dict(zip(classes, ap.tolist())),
                                          "f1": dict(zip(classes, class_f1.tolist()))}}


def yes_no_tags(submission_path, probs, fnames, classes, threshold=None, thresholds_path=None) -> tuple:
    """((n, C) bool tags, where they came from): see the module docstring for the order."""
    if threshold is not None:
        return probs >= threshold, f"--threshold {threshold:g}"
    if thresholds_path is not None:
        return tags_at(probs, read_thresholds(thresholds_path, classes)), f"the thresholds of {thresholds_path}"
    written = read_tag_labels(submission_path, fnames, classes)
    if written is not None:
        return written, f"the `labels` column of {submission_path}"
    return probs >= DEFAULT_THRESHOLD, f"{DEFAULT_THRESHOLD:g} for every class"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submission", help="submission CSV (fname + class probabilities), or tag.py's --out CSV")
    parser.add_argument("labels", help="true labels CSV (fname,labels)")
    parser.add_argument("--sample-submission", metavar="CSV",
                        help="class list (its header); default: sample_submission.csv beside LABELS if present, "
                             "else the labels found in LABELS")
    parser.add_argument("--per-class", action="store_true", help="also print each class's lwlrap, average "
                        "precision and F1")
    tags = parser.add_mutually_exclusive_group()
    tags.add_argument("--threshold", type=float, help="yes/no tags: this threshold for every class")
    tags.add_argument("--thresholds", metavar="JSON", help="yes/no tags: the per-class thresholds of this file "
                      "(predictions/NAME/thresholds.json of predict_folds.py)")
    args = parser.parse_args(argv)
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        parser.error("--threshold must be a probability in [0, 1]")
    scores = score_all(args.submission, args.labels, args.sample_submission, args.threshold, args.thresholds)
    if args.per_class:
        per_class = scores["per_class"]
        print(f"  {'class':30s} {'lwlrap':>7s} {'AP':>7s} {'F1':>7s}")
        for name, value in sorted(per_class["lwlrap"].items(), key=lambda kv: kv[1]):
            print(f"  {name:30s} {value:7.4f} {per_class['ap'][name]:7.4f} {per_class['f1'][name]:7.4f}")
    print(f"test lwlrap {scores['lwlrap']:.4f} ({args.submission} vs {args.labels})")
    print(f"mAP {scores['map']:.4f} (macro over classes)")
    print(f"F1 micro {scores['f1']['micro']:.4f}, macro {scores['f1']['macro']:.4f} (yes/no tags: {scores['tags']})")
    return 0


if __name__ == "__main__":
    run(main)
