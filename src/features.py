"""On-disk cache of log-mel spectrograms for a whole CSV of clips.

Features are computed once in parallel and stored without pickle, in a format
that cannot run code when loaded:

    <cache_root>/<name>-<key>/frames.npy   float32 (n_mels, total_frames): all clips side by side
    <cache_root>/<name>-<key>/offsets.npy  int64 (n_clips + 1): clip i is frames[:, offsets[i]:offsets[i+1]]
    <cache_root>/<name>-<key>/index.json   file names, audio settings and the key's parts

`key` hashes the audio settings, the label corrections and the list of files, so
a change to any of them computes a new cache instead of reusing a stale one.

The folder is written under a temporary name and renamed when complete: an
interrupted run never leaves a cache that looks finished. The second load maps
`frames.npy` into memory (no copy, no parse), which is instant.

Two front ends compute the same features: 'fast' (`src.fast_frontend`, the
default; 2-6x less CPU per clip) and 'librosa' (`src.audio`, the reference). The
key deliberately does NOT include which one ran: both give the same trim
indices and log-mels equal within 0.01 dB (measured max ~2e-5 dB; tested in
tests/test_fast_frontend.py), far below anything training can see, so a cache
made by either is valid for both. `index.json` records which one made it.
"""
import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from src import audio, fast_frontend
from src.audio import AudioReadError
from src.config import AUDIO, AudioConfig, stable_hash
from src.utils import atomic_path

# Modules with audio_to_log_mel(path, config) -> float32 (n_mels, frames), raising AudioReadError
# naming the file, and trim_to_min_length / log_mel on arrays.
FRONTENDS = {"fast": fast_frontend, "librosa": audio}


@dataclass
class FeatureSet:
    """Log-mels of a list of clips; `specs[i]` is a read-only (n_mels, frames) view."""
    fnames: list
    specs: list

    def __post_init__(self):
        self.position = {f: i for i, f in enumerate(self.fnames)}

    def __len__(self):
        return len(self.fnames)

    def __getitem__(self, fname) -> np.ndarray:
        return self.specs[self.position[fname]]

    @property
    def total_frames(self) -> int:
        return sum(s.shape[1] for s in self.specs)


def check_frontend(frontend: str) -> str:
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown front end {frontend!r}; choose one of {', '.join(FRONTENDS)}")
    return frontend


def _extract(args):
    path, config, frontend = args
    try:
        return FRONTENDS[frontend].audio_to_log_mel(path, config), None
    except AudioReadError as exc:
        return None, str(exc)


def warm_up(frontend: str, config: AudioConfig = AUDIO):
    """Run the front end once on silence, so forked workers inherit librosa's lazily loaded
    modules and the cached filterbank instead of each paying ~2 s for them."""
    module = FRONTENDS[check_frontend(frontend)]
    module.log_mel(module.trim_to_min_length(np.zeros(config.min_samples, np.float32), config), config)


def _one_blas_thread():
    """Pool initializer: one process per core, so each uses one BLAS thread (no oversubscription)."""
    threadpool_limits(1)


def compute_log_mels(paths, config: AudioConfig = AUDIO, workers=None, desc="log-mel", frontend="fast",
                     progress=True) -> list:
    """Log-mels of many files in a process pool, with a progress bar.

    `frontend`: 'fast' (default) or 'librosa' (the reference); see the module docstring.
    Every file is tried; if any fails, one AudioReadError lists them all.
    """
    paths = [Path(p) for p in paths]
    jobs = [(p, config, check_frontend(frontend)) for p in paths]
    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(jobs), desc=desc, unit="clip", disable=not progress)
    if workers == 1 or len(paths) < 2:
        results = [_extract(job) for job in tqdm(jobs, **bar)]
    else:
        warm_up(frontend, config)
        with multiprocessing.get_context("fork").Pool(workers, initializer=_one_blas_thread) as pool:
            results = list(tqdm(pool.imap(_extract, jobs, chunksize=4), **bar))
    errors = [err for _, err in results if err is not None]
    if errors:
        shown = "\n  ".join(errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise AudioReadError(f"{len(errors)} of {len(paths)} file(s) could not be read:\n  {shown}{more}")
    return [spec for spec, _ in results]


def cache_key(fnames, config: AudioConfig, corrections=None) -> str:
    return "-".join([config.short_hash(), stable_hash(corrections or {}, 8), stable_hash(list(fnames), 8)])


def load_features(fnames, audio_dir, cache_root, name: str, config: AudioConfig = AUDIO,
                  corrections=None, workers=None, frontend="fast", progress=True) -> FeatureSet:
    """Log-mels of `audio_dir/fname` for each fname, from the cache or computed and cached.

    `frontend` only chooses how missing features are computed; a cache made by either
    front end is reused (see the module docstring).
    """
    fnames = list(fnames)
    check_frontend(frontend)
    folder = Path(cache_root) / f"{name}-{cache_key(fnames, config, corrections)}"
    if not (folder / "index.json").is_file():
        specs = compute_log_mels([Path(audio_dir) / f for f in fnames], config, workers, desc=name,
                                 frontend=frontend, progress=progress)
        write_feature_cache(folder, fnames, specs, config, corrections, frontend)
    return read_feature_cache(folder)


def write_feature_cache(folder, fnames, specs, config: AudioConfig, corrections=None, frontend="fast"):
    offsets = np.cumsum([0] + [s.shape[1] for s in specs]).astype(np.int64)
    frames = np.concatenate(specs, axis=1) if specs else np.zeros((config.n_mels, 0), np.float32)
    index = {"fnames": list(fnames), "audio_config": config.to_dict(), "audio_hash": config.short_hash(),
             "corrections_hash": stable_hash(corrections or {}, 8), "frontend": frontend}
    with atomic_path(folder, suffix="") as tmp:
        tmp.mkdir()
        np.save(tmp / "frames.npy", frames.astype(np.float32, copy=False))
        np.save(tmp / "offsets.npy", offsets)
        (tmp / "index.json").write_text(json.dumps(index))  # written last: marks the cache complete


def read_feature_cache(folder) -> FeatureSet:
    folder = Path(folder)
    index = json.loads((folder / "index.json").read_text())
    frames = np.load(folder / "frames.npy", mmap_mode="r", allow_pickle=False)
    offsets = np.load(folder / "offsets.npy", allow_pickle=False)
    if len(offsets) != len(index["fnames"]) + 1 or offsets[-1] != frames.shape[1]:
        raise ValueError(f"{folder}: feature cache is inconsistent; delete the folder to rebuild it")
    specs = [frames[:, offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    return FeatureSet(index["fnames"], specs)
