"""Score a submission CSV against true labels with lwlrap (the competition metric).

    python score.py data/demo/predictions/blend/submission.csv data/demo/test_labels.csv

SUBMISSION: fname + one probability column per class (Kaggle format).
LABELS: fname,labels with comma-separated labels (train_curated.csv layout).
Prints overall lwlrap and, with --per-class, each class's lwlrap.
"""
import argparse
import sys

import pandas as pd

from src.labels import check_labels, read_train_csv, targets_matrix
from src.metrics import lwlrap, per_class_lwlrap


def score(submission_path, labels_path) -> tuple:
    submission = pd.read_csv(submission_path)
    if submission.columns[0] != "fname":
        raise SystemExit(f"{submission_path}: first column must be 'fname'")
    classes = list(submission.columns[1:])
    labels = read_train_csv(labels_path)
    check_labels(labels, classes, source=str(labels_path))
    missing = sorted(set(labels["fname"]) - set(submission["fname"]))
    if missing:
        raise SystemExit(f"{submission_path}: no prediction for {len(missing)} labelled file(s), e.g. {missing[:5]}")
    probs = submission.set_index("fname").loc[labels["fname"], classes].to_numpy()
    truth = targets_matrix(labels["labels"].tolist(), classes)
    per_class, _ = per_class_lwlrap(truth, probs)
    return lwlrap(truth, probs), dict(zip(classes, per_class.tolist()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submission", help="submission CSV (fname + class probabilities)")
    parser.add_argument("labels", help="true labels CSV (fname,labels)")
    parser.add_argument("--per-class", action="store_true", help="also print each class's lwlrap")
    args = parser.parse_args(argv)
    overall, per_class = score(args.submission, args.labels)
    if args.per_class:
        for name, value in sorted(per_class.items(), key=lambda kv: kv[1]):
            print(f"  {name:30s} {value:.4f}")
    print(f"test lwlrap {overall:.4f} ({args.submission} vs {args.labels})")
    return overall


if __name__ == "__main__":
    main()
    sys.exit(0)
