"""Split the curated train set into cross-validation folds.

    python make_folds.py                       # data/train_curated.csv -> data/train_folds.csv
    python make_folds.py --data-dir data/demo  # the generated demo dataset
    python make_folds.py --stratified          # multilabel-stratified folds
    python make_folds.py --groups source       # clips of one source (column 'source') in one fold
    python make_folds.py --group-pattern '^([^_]+)_'   # the group is a part of the fname

By default, as in the original: KFold with shuffling and seed 42 over the rows of
train_curated.csv. When several clips come from one source (pieces of one
recording, one speaker, one drum kit), row folds put a source on both sides of
a fold and the CV score rewards recognising the source; --groups or
--group-pattern keep every group inside one fold, with the labels spread over
the folds as evenly as the groups allow (src/data/folds.py). train_folds.csv is
train_curated.csv's columns plus `fold` (plus `group` with --group-pattern), so
it shows what the folds were grouped by.

The CSV is checked first: every label must be in the class list
(sample_submission.csv columns) and every file must exist.
"""
import argparse

import numpy as np

from src.cli import run
from src.config import resolve_data_dir
from src.data.folds import fold_per_group, fold_per_row, groups_from_column, groups_from_pattern, label_imbalance
from src.data.layout import read_classes
from src.data.labels import check_files, check_labels, read_train_csv, targets_matrix
from src.errors import BadInput
from src.files import write_csv_atomic

PATTERN_COLUMN = "group"   # the column --group-pattern writes its groups into


def assign_folds(df, n_folds=5, seed=42, stratified=False, classes=None) -> np.ndarray:
    """Fold number of every row of `df` (row folds; kept under this name for callers of make_folds)."""
    return fold_per_row(df, n_folds, seed, stratified, classes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="data root with train_curated.csv and train_curated/ "
                        "(default: $FSAT_DATA_DIR or ./data)")
    parser.add_argument("--n-folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument("--seed", type=int, default=42, help="shuffle seed (default 42, as the original)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--stratified", action="store_true",
                     help="multilabel-stratified folds (iterative stratification) instead of plain KFold")
    how.add_argument("--groups", metavar="COLUMN",
                     help="keep the clips that share a value of this train_curated.csv column (e.g. 'source', "
                          "as make_dataset.py writes) in one fold, labels balanced across folds")
    how.add_argument("--group-pattern", metavar="REGEX",
                     help="as --groups, with the group taken from the fname: the regex's first capture group "
                          "if it has one, else its whole match (re.search); written to a 'group' column")
    parser.add_argument("--out", help="output CSV (default: <data-dir>/train_folds.csv)")
    args = parser.parse_args(argv)

    data_dir = resolve_data_dir(args.data_dir)
    csv_path = data_dir / "train_curated.csv"
    df = read_train_csv(csv_path)
    classes = read_classes(data_dir)
    check_labels(df, classes, source=str(csv_path))
    check_files(df, data_dir / "train_curated", source=str(csv_path))

    group_column = args.groups
    if args.group_pattern is not None:
        if PATTERN_COLUMN in df.columns:
            raise BadInput(f"{csv_path}: already has a {PATTERN_COLUMN!r} column, which --group-pattern would "
                           f"replace; group by it with --groups {PATTERN_COLUMN}, or rename it")
        df[PATTERN_COLUMN] = groups_from_pattern(df["fname"], args.group_pattern, source=str(csv_path))
        group_column = PATTERN_COLUMN
    if group_column is None:
        df["fold"] = fold_per_row(df, args.n_folds, args.seed, args.stratified, classes)
    else:
        groups = groups_from_column(df, group_column, source=str(csv_path))
        targets = targets_matrix(df["labels"].tolist(), classes)
        df["fold"] = fold_per_group(targets, groups, args.n_folds, args.seed)

    out = args.out or data_dir / "train_folds.csv"
    write_csv_atomic(df, out, index=False)
    sizes = df["fold"].value_counts().reindex(range(args.n_folds), fill_value=0).tolist()
    print(f"Wrote {out}: {len(df)} clips in {args.n_folds} folds of sizes {sizes}")
    if group_column is not None:
        per_fold = df.groupby("fold")[group_column].nunique().reindex(range(args.n_folds), fill_value=0).tolist()
        targets = targets_matrix(df["labels"].tolist(), classes)
        off = label_imbalance(targets, df["fold"], args.n_folds)
        worst = int(np.argmax(off))
        print(f"  grouped by {group_column!r}: {df[group_column].nunique()} groups, each inside one fold; "
              f"groups per fold {per_fold}; largest group {df[group_column].value_counts().max()} clips")
        # A class whose clips come from few groups cannot be spread evenly: say which one is worst.
        n_groups = df.loc[targets[:, worst] > 0, group_column].nunique()
        print(f"  label balance: the share of a class's clips in a fold is off 1/{args.n_folds} by at most "
              f"{off[worst]:.2f} ({classes[worst]!r}, {int(targets[:, worst].sum())} clips in "
              f"{n_groups} group{'' if n_groups == 1 else 's'})")


if __name__ == "__main__":
    run(main)
