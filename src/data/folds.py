"""Cross-validation folds of the curated clips: per row (the 2019 default) or per group of related clips.

    fold_per_row      KFold(shuffle, seed) over the rows, as the original; or multilabel-stratified
    fold_per_group    every group (clips cut from one recording, one speaker, one drum kit) in one fold,
                      labels as balanced across folds as the groups allow
    split_groups      the same greedy for parts of any shares (make_dataset.py's held-out test sources)
    groups_from_column / groups_from_pattern   where the groups come from (make_folds.py --groups /
                      --group-pattern)

Row folds put clips of one source on both sides of a fold, so the CV score rewards
memorising sources (bench/realdev/README.md, trial t2); group folds do not.
"""
import re

import numpy as np
from sklearn.model_selection import KFold

from src.data.labels import targets_matrix
from src.errors import BadInput, BadSetting

# Weight of the fold-size term against the per-class label terms of the balance cost (one class's worth):
# labels decide, sizes break near-ties, so folds stay usable as validation sets of similar size.
SIZE_WEIGHT = 1.0


def fold_per_row(df, n_folds=5, seed=42, stratified=False, classes=None) -> np.ndarray:
    """Fold number of every row of `df`: KFold(n_folds, shuffle, seed) over the rows (the 2019 split), or
    multilabel-stratified folds (iterative stratification) with `stratified`."""
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


def groups_from_column(df, column, source="CSV") -> list:
    """The group of every row: the values of `column`, which must exist and have no empty cell."""
    if column not in df.columns:
        raise BadInput(f"{source}: no column {column!r} to group by; found {list(df.columns)}")
    values = [str(v).strip() for v in df[column]]
    empty = [(i + 2, f) for i, (f, v) in enumerate(zip(df["fname"], values)) if not v]
    if empty:
        raise BadInput(f"{source}: {len(empty)} row(s) with an empty {column!r}, e.g. "
                       + ", ".join(f"line {line} {f!r}" for line, f in empty[:5]))
    return values


def compile_pattern(pattern, option="--group-pattern"):
    """The compiled regex of a group pattern option, refused by name when it is not valid."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise BadSetting(f"{option} {pattern!r}: not a valid regular expression ({exc})") from exc


def group_of(regex, text):
    """The group `regex` finds in `text`: its first capture group if it has one, else the whole match
    (re.search); None when it does not match or the group comes out empty."""
    match = regex.search(text)
    if match is None:
        return None
    return (match.group(1) if regex.groups else match.group(0)) or None


def groups_from_pattern(fnames, pattern, source="CSV") -> list:
    """The group of every fname (`group_of`); an fname the pattern gives no group for is refused, named."""
    regex = compile_pattern(pattern)
    groups = [group_of(regex, fname) for fname in fnames]
    unmatched = [f"line {i + 2} {fname!r}" for i, (fname, g) in enumerate(zip(fnames, groups)) if g is None]
    if unmatched:
        raise BadInput(f"{source}: --group-pattern {pattern!r} gives no group for {len(unmatched)} fname(s), e.g. "
                       + ", ".join(unmatched[:5]))
    return groups


def fold_per_group(targets, groups, n_folds=5, seed=42) -> np.ndarray:
    """Fold number of every row, with every group (rows sharing a value of `groups`) in one fold and the
    labels as even across folds as the groups allow (`split_groups` with equal shares).

    targets: (rows, classes) multi-hot labels (multi-label rows count for each of their classes).
    With equal shares an empty fold is always the cheapest place for a group, so each of the first
    n_folds groups opens a fold: no fold is empty.
    """
    n_groups = len(set(map(str, groups)))
    if n_folds < 2:
        raise BadSetting(f"--n-folds {n_folds}: need at least 2 folds")
    if n_groups < n_folds:
        raise BadSetting(f"{n_groups} group(s) of clips for {n_folds} folds: every fold needs at least one "
                         f"group (use fewer folds or finer groups)")
    return split_groups(targets, groups, np.ones(n_folds), seed)


def split_groups(targets, groups, shares, seed=42, pinned=None) -> np.ndarray:
    """Part number of every row, with every group in one part; part k aims at the share
    shares[k] / sum(shares) of every class.

    Greedy: the groups, shuffled with `seed` and then sorted by size (largest first; the shuffle
    decides among equal sizes), each go to the part where they lower the imbalance most. The
    imbalance is the sum over parts and classes of ((count - goal) / goal)^2, the goal being the
    class's total times the part's share (so a rare class weighs as much as a common one), plus
    SIZE_WEIGHT times the same term on the parts' clip counts. Large groups first leaves the small
    ones to even out what they unbalanced.

    pinned: optional {group: part} placed before the others (their counts steer the rest).
    """
    targets = np.asarray(targets, dtype=np.float64)
    shares = np.asarray(shares, dtype=np.float64)
    names, group_of_row = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    # Per group: label counts, then a size column, so one cost covers classes and part sizes.
    counts = np.zeros((len(names), targets.shape[1] + 1))
    np.add.at(counts[:, :-1], group_of_row, targets)
    np.add.at(counts[:, -1], group_of_row, 1.0)
    # (parts, classes + 1); multiplied before dividing, so equal shares of 1 give total / n exactly
    goal = counts.sum(axis=0)[None, :] * shares[:, None] / shares.sum()
    weight = np.ones(counts.shape[1])
    weight[-1] = SIZE_WEIGHT
    weight = weight / np.maximum(goal, 1e-12) ** 2   # classes nobody has: goal 0, counts 0, no effect

    part_totals = np.zeros_like(goal)
    part_of_group = np.full(len(names), -1)
    index = {name: i for i, name in enumerate(names)}
    for name, part in sorted((pinned or {}).items()):
        part_of_group[index[str(name)]] = part
        part_totals[part] += counts[index[str(name)]]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    order = order[np.argsort(-counts[order, -1], kind="stable")]
    parts = np.arange(len(shares))
    for g in order:
        if part_of_group[g] >= 0:
            continue
        # Change of the cost when group g joins part k: sum_c w_kc ((x_kc + g_c - goal_kc)^2 - (x_kc - goal_kc)^2).
        delta = ((2 * (part_totals - goal) + counts[g]) * counts[g] * weight).sum(axis=1)
        # Ties (e.g. a group of a class that no part has yet): the smallest part, then the lowest number.
        best = np.lexsort((parts, part_totals[:, -1], np.round(delta, 12)))[0]
        part_of_group[g] = best
        part_totals[best] += counts[g]
    return part_of_group[group_of_row]


def label_imbalance(targets, folds, n_folds) -> np.ndarray:
    """Per class, the largest |share of the class's clips in a fold - 1/n_folds| (0 = perfectly even; also 0
    for a class without clips)."""
    targets = np.asarray(targets, dtype=np.float64)
    totals = targets.sum(axis=0)
    per_fold = np.stack([targets[np.asarray(folds) == f].sum(axis=0) for f in range(n_folds)])
    shares = per_fold / np.maximum(totals, 1e-12)
    return np.where(totals > 0, np.abs(shares - 1.0 / n_folds).max(axis=0), 0.0)
