"""Load what training needs from a Kaggle-layout data folder.

    <data>/train_folds.csv            curated clips with a fold column (make_folds.py)
    <data>/train_noisy.csv            noisy clips (only read when an experiment samples them)
    <data>/corrections.json           optional curated label corrections (fname -> "A,B" | "remove")
    <data>/noisy_corrections.json     hand-corrected noisy labels: the corrected-noisy source

Noisy clips that have a correction form the corrected-noisy source (flag 0, the
corrected labels) and are left out of the noisy source (flag 1), so no clip is
seen under both its web label and its corrected one.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from src.config import AUDIO, read_classes
from src.features import load_features
from src.labels import (REMOVE, apply_corrections, check_files, check_labels, load_corrections, read_train_csv,
                        targets_matrix)

CURATED_CORRECTIONS = "corrections.json"
NOISY_CORRECTIONS = "noisy_corrections.json"


@dataclass
class Source:
    """Spectrograms and multi-hot targets of one group of clips."""
    fnames: list
    specs: list
    targets: np.ndarray

    def __len__(self):
        return len(self.fnames)

    def subset(self, index) -> "Source":
        index = np.asarray(index, dtype=int)
        return Source([self.fnames[i] for i in index], [self.specs[i] for i in index], self.targets[index])


def specs_and_targets(source: Optional[Source]):
    """(specs, targets) of a source, None for no source: what build_train_dataset takes."""
    return None if source is None else (source.specs, source.targets)


@dataclass
class TrainingData:
    classes: list
    curated: Source
    folds: np.ndarray                 # fold number of each curated clip
    noisy: Optional[Source] = None
    corrected: Optional[Source] = None


def read_folds(data_dir) -> pd.DataFrame:
    path = Path(data_dir) / "train_folds.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python make_folds.py --data-dir {data_dir}` first")
    df = read_train_csv(path)
    if "fold" not in df.columns:
        raise ValueError(f"{path}: missing column 'fold' (made by make_folds.py)")
    df["fold"] = df["fold"].astype(int)
    return df


def _load_source(df, audio_dir, data_dir, name, classes, corrections, workers) -> Source:
    features = load_features(df["fname"], audio_dir, Path(data_dir) / "features", name=name, config=AUDIO,
                             corrections=corrections, workers=workers)
    return Source(list(df["fname"]), features.specs, targets_matrix(df["labels"].tolist(), classes))


def load_training_data(data_dir, use_corrections=True, need_noisy=False, need_corrected=False,
                       workers=None) -> TrainingData:
    """Curated folds (+ noisy and corrected-noisy sources when asked), features from the cache."""
    data_dir = Path(data_dir)
    classes = read_classes(data_dir)
    folds = read_folds(data_dir)
    check_labels(folds, classes, source=str(data_dir / "train_folds.csv"))
    check_files(folds, data_dir / "train_curated", source=str(data_dir / "train_folds.csv"))
    curated_corr = load_corrections(data_dir / CURATED_CORRECTIONS) \
        if use_corrections and (data_dir / CURATED_CORRECTIONS).is_file() else {}
    folds = apply_corrections(folds, curated_corr, classes)
    curated = _load_source(folds, data_dir / "train_curated", data_dir, "train_curated", classes, curated_corr,
                           workers)
    data = TrainingData(classes, curated, folds["fold"].to_numpy())
    if not (need_noisy or need_corrected):
        return data

    noisy_csv = data_dir / "train_noisy.csv"
    noisy_df = read_train_csv(noisy_csv)
    check_labels(noisy_df, classes, source=str(noisy_csv))
    noisy_corr = {}
    if need_corrected:
        path = data_dir / NOISY_CORRECTIONS
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: this experiment samples corrected-noisy clips (corr_noisy_prob > 0), which "
                f"needs hand-corrected noisy labels. Make one with review_labels.py (see README), or train with "
                f"--set corr_noisy_prob=0")
        noisy_corr = load_corrections(path)
    check_files(noisy_df, data_dir / "train_noisy", source=str(noisy_csv))
    noisy_df = apply_corrections(noisy_df, noisy_corr, classes)
    all_noisy = _load_source(noisy_df, data_dir / "train_noisy", data_dir, "train_noisy", classes, noisy_corr,
                             workers)
    is_corrected = noisy_df["fname"].isin([f for f, v in noisy_corr.items() if v != REMOVE]).to_numpy()
    if need_noisy:
        data.noisy = all_noisy.subset(np.flatnonzero(~is_corrected))
    if need_corrected:
        data.corrected = all_noisy.subset(np.flatnonzero(is_corrected))
        if len(data.corrected) == 0:
            raise ValueError(f"{data_dir / NOISY_CORRECTIONS}: no noisy clip of train_noisy.csv is corrected")
    return data
