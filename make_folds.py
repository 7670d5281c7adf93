"""Split the curated train set into cross-validation folds.

    python make_folds.py                       # data/train_curated.csv -> data/train_folds.csv
    python make_folds.py --data-dir data/demo  # the generated demo dataset
    python make_folds.py --stratified          # multilabel-stratified folds

As in the original: KFold with shuffling and seed 42 over the rows of
train_curated.csv. The CSV is checked first: every label must be in the class
list (sample_submission.csv columns) and every file must exist.
"""
import argparse

import numpy as np
from sklearn.model_selection import KFold

from src.cli import run
from src.config import resolve_data_dir
from src.data.layout import read_classes
from src.data.labels import check_files, check_labels, read_train_csv, targets_matrix
from src.utils import write_csv_atomic


def assign_folds(df, n_folds=5, seed=42, stratified=False, classes=None) -> np.ndarray:
    """Fold number of every row of `df`."""
    folds = np.zeros(len(df), dtype=int)
    if stratified:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
        splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(df, targets_matrix(df["labels"].tolist(), classes))
    else:
        splits = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(df)
    for fold, (_, val_index) in enumerate(splits):
        folds[val_index] = fold
    return folds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="data root with train_curated.csv and train_curated/ "
                        "(default: $FSAT_DATA_DIR or ./data)")
    parser.add_argument("--n-folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument("--seed", type=int, default=42, help="shuffle seed (default 42, as the original)")
    parser.add_argument("--stratified", action="store_true",
                        help="multilabel-stratified folds (iterative stratification) instead of plain KFold")
    parser.add_argument("--out", help="output CSV (default: <data-dir>/train_folds.csv)")
    args = parser.parse_args(argv)

    data_dir = resolve_data_dir(args.data_dir)
    csv_path = data_dir / "train_curated.csv"
    df = read_train_csv(csv_path)
    classes = read_classes(data_dir)
    check_labels(df, classes, source=str(csv_path))
    check_files(df, data_dir / "train_curated", source=str(csv_path))

    df["fold"] = assign_folds(df, args.n_folds, args.seed, args.stratified, classes)
    out = args.out or data_dir / "train_folds.csv"
    write_csv_atomic(df, out, index=False)
    sizes = df["fold"].value_counts().sort_index().tolist()
    print(f"Wrote {out}: {len(df)} clips in {args.n_folds} folds of sizes {sizes}")


if __name__ == "__main__":
    run(main)
