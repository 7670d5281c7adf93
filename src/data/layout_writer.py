"""Write a Kaggle-layout data folder (the layout src/data/layout.py reads) from checked recordings.

    <out>/train_curated/<fname>     the training recordings, hard-linked (else copied)
    <out>/train_curated.csv         fname,labels,source
    <out>/test/<fname>              held-out recordings (only with a test split)
    <out>/test_labels.csv           fname,labels,source of the test clips (only with a test split)
    <out>/sample_submission.csv     fname + one column per class; a row per test clip (none without)

The caller writes into a fresh temporary folder and publishes it whole (src.files.atomic_path).
"""
import os
import shutil
from pathlib import Path

import pandas as pd


def place_file(src: Path, dst: Path, copy=False) -> bool:
    """Hard-link `src` to `dst` (no disk space, same bytes), else copy it; True when it was linked.

    A link fails across file systems or where links are not allowed: copying then gives the same file.
    """
    if not copy:
        try:
            os.link(src, dst)
            return True
        except OSError:
            pass
    shutil.copyfile(src, dst)
    return False


def write_split(folder: Path, name: str, recordings, copy=False) -> int:
    """<folder>/<name>/ with the recordings' files under their fnames; returns how many were linked."""
    (folder / name).mkdir()
    return sum(place_file(rec.path, folder / name / rec.fname, copy) for rec in recordings)


def rows(recordings) -> pd.DataFrame:
    """fname,labels,source of `recordings`, sorted by fname (as Kaggle's CSVs)."""
    frame = pd.DataFrame([(rec.fname, ",".join(rec.labels), rec.source) for rec in recordings],
                         columns=["fname", "labels", "source"])
    return frame.sort_values("fname", ignore_index=True)


def write_layout(folder: Path, classes, train, test=(), copy=False) -> int:
    """Fill `folder` (empty) with the layout above; returns how many files were hard-linked."""
    folder = Path(folder)
    linked = write_split(folder, "train_curated", train, copy)
    rows(train).to_csv(folder / "train_curated.csv", index=False)
    test_rows = rows(test)
    if len(test):
        linked += write_split(folder, "test", test, copy)
        test_rows.to_csv(folder / "test_labels.csv", index=False)
    submission = pd.DataFrame(0, index=range(len(test_rows)), columns=list(classes))
    submission.insert(0, "fname", test_rows["fname"])
    submission.to_csv(folder / "sample_submission.csv", index=False)
    return linked
