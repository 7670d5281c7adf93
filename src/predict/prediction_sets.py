"""Prediction sets on disk: clip probabilities (CSV) plus per-tile probabilities (npy).

A prediction set is a folder:

    probs.csv     fname + one column per class (Kaggle submission layout), one row per clip
    tiles.npy     float32 (n_tiles_total, n_classes): every sliding-window tile of every clip
    offsets.npy   int64 (n_clips + 1): clip i's tiles are tiles[offsets[i]:offsets[i+1]]

`probs.csv` alone is enough for blending; the tiles feed the second level
(stacking). The tree written by `predict_folds.py` for an experiment NAME:

    data/predictions/NAME/oof/          out-of-fold predictions of every curated clip
    data/predictions/NAME/test/         test predictions, geometric mean over fold models
    data/predictions/NAME/test/fold_K/  test predictions of fold K's model
    data/predictions/NAME/val_lwlrap.json, per_class_lwlrap.png
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from src.errors import BadInput, InputFileNotFound
from src.files import atomic_path, write_csv_atomic, write_json_atomic


def clip_means(tiles: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mean of each clip's tile rows: clip k's tiles are rows offsets[k]:offsets[k + 1]."""
    sums = np.add.reduceat(tiles, offsets[:-1], axis=0)
    return (sums / np.diff(offsets)[:, None]).astype(np.float32)


@dataclass
class PredictionSet:
    fnames: list
    classes: list
    probs: np.ndarray                      # (n_clips, n_classes)
    tiles: Optional[np.ndarray] = None     # (n_tiles_total, n_classes)
    offsets: Optional[np.ndarray] = None   # (n_clips + 1,)

    def clip_tiles(self, i) -> np.ndarray:
        return self.tiles[self.offsets[i]:self.offsets[i + 1]]

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.probs, columns=self.classes)
        frame.insert(0, "fname", self.fnames)
        return frame


def check_finite(values, fnames, path, what="probabilities"):
    """Refuse to write NaN/infinity: no output file of this repo ever holds one (it would poison every
    later step silently). Names the file and the first rows concerned."""
    values = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1)) if values.size else []
    if len(bad):
        rows = [fnames[i] if fnames is not None and i < len(fnames) else i for i in bad[:5]]
        raise ValueError(f"{path}: refusing to write {what} with NaN or infinity in {len(bad)} row(s), "
                         f"e.g. {rows} (a model or input with non-finite values?)")


def write_prediction_set(folder, pred: PredictionSet):
    folder = Path(folder)
    check_finite(pred.probs, pred.fnames, folder / "probs.csv")
    if pred.tiles is not None:
        check_finite(pred.tiles, None, folder / "tiles.npy", what="tile probabilities")
    folder.mkdir(parents=True, exist_ok=True)
    if pred.tiles is not None:
        for name, array in (("tiles.npy", pred.tiles.astype(np.float32)),
                            ("offsets.npy", pred.offsets.astype(np.int64))):
            with atomic_path(folder / name) as tmp:
                np.save(tmp, array)
    # probs.csv last: its presence marks a complete set.
    write_csv_atomic(pred.to_frame(), folder / "probs.csv", index=False, float_format="%.7g")


def write_prediction_tree(out_dir, sets: dict, report: dict, title: str, records=None):
    """Write `out_dir` whole or not at all: each named PredictionSet in its subfolder, the CV report
    (`val_lwlrap.json`), its per-class plot and `records` ({file name: JSON-able}, e.g. thresholds.json). Everything goes into a hidden folder that is swapped
    in at the end, so a failure (a full disk, a kill) leaves the previous predictions as they were."""
    from src.plots import plot_per_class  # matplotlib: only needed here

    with atomic_path(out_dir) as staging:
        staging.mkdir()
        for name, pred in sets.items():
            write_prediction_set(staging / name, pred)
        write_json_atomic(report, staging / "val_lwlrap.json")
        for name, record in (records or {}).items():
            write_json_atomic(record, staging / name)
        plot_per_class(report["per_class_lwlrap"], staging / "per_class_lwlrap.png", title=title)


def read_prediction_set(folder, with_tiles=True) -> PredictionSet:
    """A prediction set as `write_prediction_set` wrote it, every file checked: a damaged probs.csv
    (truncated, wrong or repeated columns, values that are not probabilities) or tiles.npy/offsets.npy
    (truncated, wrong shape, not matching probs.csv) is refused naming the file, never blended."""
    # Imported here: the Kaggle kernel embeds this module (for clip_means / geometric_mean) but no CSV reader.
    from src.data.labels import check_fnames, read_csv_columns, read_header

    folder = Path(folder)
    path = folder / "probs.csv"
    if not path.is_file():
        raise InputFileNotFound(f"{path}: no predictions here (run predict_folds.py first?)")
    frame = read_csv_columns(path, ("fname",), what="prediction file")
    header = read_header(path)
    if not header or header[0] != "fname":
        raise BadInput(f"{path}: first column must be 'fname', got {header[:1]}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated or len(header) < 2:
        raise BadInput(f"{path}: expected 'fname' and one column per class without repeats, got {header[:6]}")
    check_fnames(frame["fname"], path)
    classes = list(frame.columns[1:])
    probs = _probabilities(frame, classes, path)
    tiles = offsets = None
    if with_tiles and (folder / "tiles.npy").is_file():
        tiles = _load_array(folder / "tiles.npy", np.floating, 2)
        offsets = _load_array(folder / "offsets.npy", np.integer, 1)
        if tiles.shape[1] != len(classes):
            raise BadInput(f"{folder / 'tiles.npy'}: {tiles.shape[1]} columns, probs.csv has {len(classes)} classes")
        if (len(offsets) != len(frame) + 1 or offsets[0] != 0 or offsets[-1] != len(tiles)
                or (np.diff(offsets) <= 0).any()):
            raise BadInput(f"{folder}: tiles.npy/offsets.npy do not match probs.csv (offsets must rise from 0 to "
                           f"the {len(tiles)} tiles, one or more tiles for each of its {len(frame)} clips)")
        check_readable_probabilities(tiles, folder / "tiles.npy")
    return PredictionSet(frame["fname"].tolist(), classes, probs, tiles, offsets)


def _probabilities(frame, classes, path) -> np.ndarray:
    """The class columns of a probs.csv as float32, each cell a number in [0, 1] (else the first bad cells)."""
    if not len(frame):
        raise BadInput(f"{path}: no clips in it (truncated?)")
    cells = frame[classes].to_numpy(dtype=object).reshape(len(frame), len(classes))
    try:
        values = cells.astype(np.float64)
    except ValueError:  # some cell is not a number: parse cell by cell, so the message can name it
        values = np.full(cells.shape, np.nan)
        for index, cell in np.ndenumerate(cells):
            try:
                values[index] = float(cell)
            except ValueError:
                pass
    bad = np.argwhere(~np.isfinite(values) | (values < 0) | (values > 1))
    if len(bad):
        shown = ", ".join(f"line {i + 2} column {classes[j]!r}: {str(cells[i, j])[:20]!r}" for i, j in bad[:5])
        raise BadInput(f"{path}: {len(bad)} cell(s) are not probabilities in [0, 1] (empty, NaN, text?), "
                       f"e.g. {shown}")
    return values.astype(np.float32)


def _load_array(path, kind, ndim) -> np.ndarray:
    """An .npy file of a prediction set (no pickles), of numeric `kind` and `ndim` dimensions."""
    if not path.is_file():
        raise InputFileNotFound(f"{path}: missing (the prediction set has tiles.npy and offsets.npy)")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # truncated, garbage header, pickled object
        raise BadInput(f"{path}: cannot be read as an .npy array ({exc}); damaged or truncated?") from exc
    if not np.issubdtype(array.dtype, kind) or array.ndim != ndim:
        raise BadInput(f"{path}: holds {array.dtype} {array.shape}, expected a {ndim}-d {kind.__name__} array")
    return array


def check_readable_probabilities(values, path):
    """Refuse tile probabilities outside [0, 1] (NaN included) read from `path`."""
    if values.size and not ((values >= 0) & (values <= 1)).all():
        raise BadInput(f"{path}: holds values that are not probabilities in [0, 1] (NaN?); damaged?")


def geometric_mean(arrays, weights=None, eps=1e-7) -> np.ndarray:
    """Weighted geometric mean of probability arrays of the same shape (how folds and models are combined)."""
    arrays = np.stack([np.clip(np.asarray(a, np.float64), eps, 1.0) for a in arrays])
    weights = np.ones(len(arrays)) if weights is None else np.asarray(weights, np.float64)
    if weights.shape != (len(arrays),) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"weights must be {len(arrays)} non-negative numbers with a positive sum, got {weights}")
    weights = weights / weights.sum()
    return np.exp(np.tensordot(weights, np.log(arrays), axes=1)).astype(np.float32)


def predictions_dir(data_dir, name) -> Path:
    return Path(data_dir) / "predictions" / name
