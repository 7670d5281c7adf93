"""Second-level samples: a clip's first-level tile predictions, stacked and averaged.

The first level keeps the probabilities of every sliding-window tile of every
clip (`PredictionSet.tiles`, `offsets`). For stacking, the tiles of all input
experiments are put side by side, so a clip becomes an (n_tiles, n_exp * C)
array (`StackedTiles`). A sample is that array averaged over tiles:

- training: `TileSubsetMean` averages only some of the tiles (maybe a contiguous
  run, maybe a random subset of it), so the second level sees the kind of
  partial evidence a shorter or differently cut clip would give - its only
  augmentation;
- validation / test: the mean of all tiles, the same numbers the first level
  averaged into its clip probabilities.

Samples are `(features, target, noisy_flag=0)` like the first level's, so the
same argus model, loss and Lwlrap metric serve both levels. The training epoch
(`epoch_size` random clips) is `src.data.datasets.RandomSourceDataset` over one source.
"""
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from src.predict.prediction_sets import PredictionSet, clip_means

SHOW = 5  # how many offending file names an error lists


def random_run(tiles: np.ndarray, rng) -> np.ndarray:
    """A contiguous run of the tile indices `tiles`: length uniform in 1..n, start uniform among valid ones."""
    size = rng.randint(1, len(tiles) + 1)
    start = rng.randint(0, len(tiles) - size + 1)
    return tiles[start:start + size]


def random_subset(tiles: np.ndarray, rng) -> np.ndarray:
    """A random subset of the tile indices `tiles`: size uniform in 1..n, drawn without replacement, in order."""
    size = rng.randint(1, len(tiles) + 1)
    return tiles[np.sort(rng.choice(len(tiles), size, replace=False))]


class TileSubsetMean:
    """Mean over a random part of a clip's tiles: (n_tiles, F) -> (F,) float32.

    Two independent steps, as in the original: with probability `run_prob` keep
    a random contiguous run of the tiles (`random_run`); then, independently,
    with probability `subset_prob` keep a random subset of the tiles left
    (`random_subset`). With both at 0.5 a quarter of the samples are the plain
    mean over all tiles, like the validation features. A one-tile clip always
    gives its single tile. Draws from numpy's global RNG (seeded per worker)
    unless `keep` is given an `np.random.RandomState`.
    """

    def __init__(self, run_prob: float = 0.5, subset_prob: float = 0.5):
        for name, value in (("run_prob", run_prob), ("subset_prob", subset_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"TileSubsetMean: {name} must be in [0, 1], got {value}")
        self.run_prob, self.subset_prob = float(run_prob), float(subset_prob)

    def keep(self, n_tiles: int, rng=None) -> np.ndarray:
        """Sorted indices of the tiles to keep."""
        if n_tiles < 1:
            raise ValueError(f"TileSubsetMean: a clip needs at least one tile, got {n_tiles}")
        rng = np.random if rng is None else rng
        tiles = np.arange(n_tiles)
        if rng.random_sample() < self.run_prob:
            tiles = random_run(tiles, rng)
        if rng.random_sample() < self.subset_prob:
            tiles = random_subset(tiles, rng)
        return tiles

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        return tiles[self.keep(len(tiles))].mean(axis=0, dtype=np.float64).astype(np.float32)

    def __repr__(self):
        return f"{self.__class__.__name__}(run_prob={self.run_prob}, subset_prob={self.subset_prob})"


@dataclass
class StackedTiles:
    """Tile predictions of several experiments side by side.

    fnames:  clip names, in row order
    tiles:   (n_tiles_total, n_exp * C) float32; columns are experiment-major
             (experiment e's class c is column e * C + c)
    offsets: (n_clips + 1,) clip i's tiles are tiles[offsets[i]:offsets[i + 1]]
    names:   the experiments, in column order
    """
    fnames: list
    tiles: np.ndarray
    offsets: np.ndarray
    names: list

    def __len__(self):
        return len(self.fnames)

    @property
    def n_features(self) -> int:
        return self.tiles.shape[1]

    def clip_tiles(self, i) -> np.ndarray:
        return self.tiles[self.offsets[i]:self.offsets[i + 1]]

    def clip_means(self) -> np.ndarray:
        """(n_clips, n_features): every clip's mean over all of its tiles."""
        return clip_means(self.tiles, self.offsets)

    @classmethod
    def from_predictions(cls, predictions: dict) -> "StackedTiles":
        """Stack {experiment name: PredictionSet with tiles}; refuse sets that do not align.

        Alignment means the same clips in the same order, the same classes, and the
        same number of tiles for every clip (the same tile step), so that row r of
        every experiment's tiles is the same piece of the same clip.
        """
        if not predictions:
            raise ValueError("StackedTiles: no experiments to stack")
        names = list(predictions)
        ref_name, ref = names[0], predictions[names[0]]
        for name, pred in predictions.items():
            if pred.tiles is None or pred.offsets is None:
                raise ValueError(f"experiment {name!r}: its predictions have no tiles.npy/offsets.npy "
                                 f"(stacking needs per-tile predictions; rerun predict_folds.py)")
            if name == ref_name:
                continue
            if list(pred.fnames) != list(ref.fnames):
                diff = [f"{a} vs {b}" for a, b in zip(ref.fnames, pred.fnames) if a != b][:SHOW]
                raise ValueError(f"experiment {name!r}: its clips differ from {ref_name!r}'s "
                                 f"({len(pred.fnames)} vs {len(ref.fnames)} clips; e.g. {diff})")
            if list(pred.classes) != list(ref.classes):
                raise ValueError(f"experiment {name!r}: its classes differ from {ref_name!r}'s")
            if not np.array_equal(pred.offsets, ref.offsets):
                bad = np.flatnonzero(np.diff(pred.offsets) != np.diff(ref.offsets))
                raise ValueError(f"experiment {name!r}: tile counts differ from {ref_name!r}'s for "
                                 f"{len(bad)} clip(s), e.g. {[ref.fnames[i] for i in bad[:SHOW]]} "
                                 f"(predicted with another tile step?)")
        tiles = np.concatenate([np.asarray(p.tiles, np.float32) for p in predictions.values()], axis=1)
        return cls(list(ref.fnames), tiles, np.asarray(ref.offsets, np.int64), names)


def select_clips(pred: PredictionSet, fnames, name="predictions") -> PredictionSet:
    """`pred` restricted and reordered to `fnames` (tiles too); refuses clips it lacks."""
    position = {f: i for i, f in enumerate(pred.fnames)}
    missing = [f for f in fnames if f not in position]
    if missing:
        raise ValueError(f"{name}: {len(missing)} clip(s) have no prediction, e.g. {missing[:SHOW]}")
    index = np.array([position[f] for f in fnames], dtype=np.int64)
    tiles = offsets = None
    if pred.tiles is not None:
        counts = np.diff(pred.offsets)[index]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        rows = np.concatenate([np.arange(pred.offsets[i], pred.offsets[i + 1]) for i in index]) \
            if len(index) else np.zeros(0, np.int64)
        tiles = pred.tiles[rows]
    return PredictionSet(list(fnames), pred.classes, pred.probs[index], tiles, offsets)


class StackingDataset(Dataset):
    """Clips of a `StackedTiles` -> (features (F,), target (C,), noisy_flag=0).

    clips:   indices into `stacked` that this dataset serves (e.g. one fold's clips);
             default all
    targets: (len(stacked), C) multi-hot targets of all clips of `stacked`
    augment: None -> mean of all tiles (validation); e.g. `TileSubsetMean()` for training
    """

    def __init__(self, stacked: StackedTiles, targets, clips=None, augment=None):
        self.stacked = stacked
        self.targets = np.asarray(targets, dtype=np.float32)
        if self.targets.ndim != 2 or len(self.targets) != len(stacked):
            raise ValueError(f"StackingDataset: targets must be ({len(stacked)}, n_classes), got "
                             f"{self.targets.shape}")
        self.clips = np.arange(len(stacked)) if clips is None else np.asarray(clips, dtype=np.int64)
        self.augment = augment

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"StackingDataset: index {index} out of range for {len(self)} clip(s)")
        clip = self.clips[index]
        tiles = self.stacked.clip_tiles(clip)
        if self.augment is None:
            features = tiles.mean(axis=0, dtype=np.float64).astype(np.float32)
        else:
            features = self.augment(tiles)
        return (torch.from_numpy(features), torch.from_numpy(self.targets[clip].copy()),
                torch.tensor(0.0, dtype=torch.float32))

    def __repr__(self):
        return (f"{self.__class__.__name__}(clips={len(self)}, features={self.stacked.n_features}, "
                f"experiments={self.stacked.names}, augment={self.augment!r})")
