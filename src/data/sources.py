"""Load what training needs from a Kaggle-layout data folder.

    <data>/train_folds.csv     curated clips with a fold column (make_folds.py)
    <data>/train_noisy.csv     noisy clips (only read when an experiment samples them)
    label corrections          the experiment's `curated_corrections` / `noisy_corrections`:
                               files shipped in corrections/ or in the data dir (src/data/corrections.py)

Curated corrections relabel curated clips or drop them ("remove") from training
and validation. Noisy corrections define the two noisy streams by the
experiment's `noisy_source` rule (src/experiments.py names the rule each 2019
experiment used):

    corrected-noisy source (flag 0)   the relabelled noisy clips, corrected labels
    noisy source (flag 1)    "all"         every noisy clip, web labels
                             "relabelled"  only the relabelled clips, corrected labels
                             "kept"        every clip not marked "remove"; relabelled
                                           ones carry their corrected labels

Features are cached for every clip of a CSV, before corrections (labels do not
change a spectrogram), so experiments with different corrections share one cache.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from src.config import AUDIO
from src.data.layout import read_classes
from src.data.corrections import AUTO, Corrections, load_experiment_corrections, read_curated
from src.audio.cache import load_features
from src.data.labels import check_files, check_labels, read_train_csv, targets_matrix
from src.errors import BadInput, InputFileNotFound

NOISY_SOURCES = ("all", "relabelled", "kept")


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
    # {"curated": record, "noisy": record}: the corrections files applied (src/data/corrections.py), for config.json
    corrections: dict = field(default_factory=dict)


def noisy_sources(noisy_df: pd.DataFrame, corrections: Corrections, rule: str, classes=None):
    """(noisy, corrected) rows (fname, labels) of train_noisy for a `noisy_source` rule (module docstring)."""
    if rule not in NOISY_SOURCES:
        raise ValueError(f"experiment setting noisy_source must be one of {NOISY_SOURCES}, got {rule!r}")
    relabelled = noisy_df[noisy_df["fname"].isin(corrections.relabels(noisy_df["fname"]))]
    corrected = corrections.apply(relabelled, classes)
    if rule == "all":
        noisy = noisy_df.copy()
    elif rule == "relabelled":
        noisy = corrected.copy()
    else:  # kept
        noisy = corrections.apply(noisy_df, classes)
    return noisy.reset_index(drop=True), corrected.reset_index(drop=True)


def _features(df, audio_dir, data_dir, name, workers) -> dict:
    """fname -> log-mel of every clip of `df`, from the feature cache (computed on a miss)."""
    features = load_features(df["fname"], audio_dir, Path(data_dir) / "features", name=name, config=AUDIO,
                             workers=workers)
    return dict(zip(features.fnames, features.specs))


def _source(df, specs: dict, classes) -> Source:
    return Source(list(df["fname"]), [specs[f] for f in df["fname"]], targets_matrix(df["labels"].tolist(), classes))


def load_training_data(data_dir, curated_corrections=AUTO, noisy_corrections=AUTO, noisy_source="all",
                       need_noisy=False, need_corrected=False, workers=None) -> TrainingData:
    """Curated folds (+ noisy and corrected-noisy sources when asked), features from the cache.

    The corrections and noisy_source arguments are the experiment settings of the same names
    (src/experiments.py `data_settings` gives them all).
    """
    if noisy_source not in NOISY_SOURCES:
        raise ValueError(f"experiment setting noisy_source must be one of {NOISY_SOURCES}, got {noisy_source!r}")
    data_dir = Path(data_dir)
    classes = read_classes(data_dir)
    curated = read_curated(data_dir, classes, curated_corrections)
    check_files(curated.rows, data_dir / "train_curated", source=str(curated.source))
    specs = _features(curated.rows, data_dir / "train_curated", data_dir, "train_curated", workers)
    data = TrainingData(classes, _source(curated.kept, specs, classes), curated.kept["fold"].to_numpy(),
                        corrections={"curated": curated.record(), "noisy": None})
    if not (need_noisy or need_corrected):
        return data

    noisy_csv = data_dir / "train_noisy.csv"
    noisy_df = read_train_csv(noisy_csv)
    check_labels(noisy_df, classes, source=str(noisy_csv))
    check_files(noisy_df, data_dir / "train_noisy", source=str(noisy_csv))
    uses_corrections = need_corrected or (need_noisy and noisy_source != "all")
    noisy_corr = Corrections("noisy")
    if uses_corrections:
        noisy_corr = load_experiment_corrections(noisy_corrections, "noisy", data_dir)
        why = "corrected-noisy clips (corr_noisy_prob > 0)" if need_corrected else f"noisy_source={noisy_source!r}"
        if noisy_corr.path is None:
            raise InputFileNotFound(
                f"this experiment samples {why}, which needs noisy label corrections, but noisy_corrections="
                f"{noisy_corrections!r} names none (with 'auto': no {data_dir / 'noisy_corrections.json'}). Name a "
                f"shipped version (corrections/README.md), make one with review_labels.py (see README), or train "
                f"with --set corr_noisy_prob=0 --set noisy_source=all")
        needs_relabels = need_corrected or noisy_source == "relabelled"
        if needs_relabels and not noisy_corr.relabels(noisy_df["fname"]):
            raise BadInput(f"{noisy_corr.path}: relabels no clip of {noisy_csv} ({len(noisy_corr.entries)} "
                             f"entries), so the source of {why} would be empty")
    noisy, corrected = noisy_sources(noisy_df, noisy_corr, noisy_source, classes)
    specs = _features(noisy_df, data_dir / "train_noisy", data_dir, "train_noisy", workers)
    data.corrections["noisy"] = noisy_corr.record(noisy_df["fname"])
    if need_noisy:
        data.noisy = _source(noisy, specs, classes)
    if need_corrected:
        data.corrected = _source(corrected, specs, classes)
    return data
