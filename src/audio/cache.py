"""On-disk cache of log-mel spectrograms for a whole CSV of clips.

Features are computed once in parallel and stored without pickle, in a format
that cannot run code when loaded:

    <cache_root>/<name>-<key>/frames.npy   float32 (n_mels, total_frames): all clips side by side
    <cache_root>/<name>-<key>/offsets.npy  int64 (n_clips + 1): clip i is frames[:, offsets[i]:offsets[i+1]]
    <cache_root>/<name>-<key>/index.json   file names, audio settings and the key's parts

`key` hashes the audio settings, the label corrections and the list of files, so
a change to any of them computes a new cache instead of reusing a stale one.

The folder is written under a temporary name and renamed when complete: an
interrupted run never leaves a cache that looks finished. A build never holds
the log-mels in memory: each one goes to a spool file beside the folder as the
pool returns it, and frames.npy is then filled clip by clip from the spool
(through a memory map), so its memory does not grow with the set (the 2019
noisy set's ~9 GB of log-mels) but its disk briefly doubles until the spool is
deleted (bench/scale.py measures both). The spool of a killed build
(`.<folder>.spool-PID`) is deleted by the next build of the same cache. The second load maps
`frames.npy` into memory (no copy, no parse).

Safe to share between processes (the README runs one process per fold, in
parallel, on the same cache):
- a published cache folder is never modified or replaced, so a process reading
  it can never see it change underneath;
- builders of the same cache take a lock file (`.<folder>.lock` beside it,
  removed when done): one computes, the others wait and then read its result.
  Without the lock (no fcntl) two builders both compute, and whoever publishes
  second finds the folder complete and uses it;
- every read validates the cache (`read_feature_cache`): the structure against
  the .npy headers, `offsets.npy` and `index.json`, and the bytes of both arrays
  against CRC-32 checksums recorded at build time. The structural checks take
  ~2 ms; the checksum reads every byte, at 1.3-4 GB/s on a 2-core machine
  (0.06-0.19 s for a 240 MB cache), so 2-6 s for the ~8 GB Kaggle noisy set,
  seconds against hours of training on it (which reads every page anyway).
  It runs on every load rather than once with a "verified" marker, because a
  marker would go stale if the files were damaged later, and writing it would
  modify a published folder. A corrupt cache raises FeatureCacheError naming
  the folder, the problem and how to rebuild it; it is never repaired or
  replaced automatically. NaN or inf cannot be in a cache that passes: the
  features are checked finite before the checksum is taken.

Two front ends compute the same features: 'fast' (`src.audio.fast_frontend`, the
default; 2-6x less CPU per clip) and 'librosa' (`src.audio.frontend`, the reference). The
key deliberately does NOT include which one ran: both give the same trim
indices and log-mels equal within 0.01 dB (measured max ~2e-5 dB; tested in
tests/test_fast_frontend.py), far below anything training can see, so a cache
made by either is valid for both. `index.json` records which one made it.
"""
import contextlib
import json
import os
import shlex
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from src.audio.frontend import AudioReadError
from src.audio.workers import check_frontend, extract, process_pool
from src.config import AUDIO, AudioConfig, stable_hash
from src.errors import BadInput
from src.progress import progress as progress_bar
from src.files import atomic_new_dir, write_error_naming

try:
    import fcntl
except ImportError:  # not on Windows: builders then race, which is still safe (see above)
    fcntl = None

# Written to index.json; caches of other formats are refused with a rebuild hint.
CACHE_FORMAT = 2
CACHE_FILES = ("frames.npy", "offsets.npy", "index.json")


class FeatureCacheError(BadInput):
    """A feature-cache folder is missing files, inconsistent or corrupt."""

    def __init__(self, folder, problem: str):
        self.folder = Path(folder)
        super().__init__(f"{folder}: corrupt feature cache: {problem}. It is never repaired automatically: "
                         f"delete the folder (rm -r {shlex.quote(str(folder))}) and rerun to rebuild it")


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


def _log_mel_results(paths, config: AudioConfig, workers, desc, frontend, progress):
    """(log-mel, None) or (None, error) for each path, in order, computed in a process pool.

    A consumer that stops early must close this generator (`contextlib.closing`): closing it shuts the pool down
    there and then, where an abandoned one would keep its workers until garbage collection."""
    jobs = [(p, config, check_frontend(frontend)) for p in paths]
    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(jobs), desc=desc, unit="clip", enabled=progress)
    if workers == 1 or len(paths) < 2:
        yield from (extract(job) for job in progress_bar(jobs, **bar))
        return
    pool = process_pool(workers, frontend, config)
    try:
        yield from progress_bar(pool.map(extract, jobs, chunksize=4), **bar)
    finally:  # also when the consumer stops early, or on Ctrl-C: the clips not started are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def _read_errors(errors, n_paths) -> AudioReadError:
    shown = "\n  ".join(errors[:20])
    more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
    return AudioReadError(f"{len(errors)} of {n_paths} file(s) could not be read:\n  {shown}{more}")


def compute_log_mels(paths, config: AudioConfig = AUDIO, workers=None, desc="log-mel", frontend="fast",
                     progress=True) -> list:
    """Log-mels of many files in a process pool, with a progress bar.

    `workers`: the pool's size; None or 0: one per core.
    `frontend`: 'fast' (default) or 'librosa' (the reference); see the module docstring.
    Every file is tried; if any fails, one AudioReadError lists them all.
    """
    paths = [Path(p) for p in paths]
    results = list(_log_mel_results(paths, config, workers, desc, frontend, progress))
    errors = [err for _, err in results if err is not None]
    if errors:
        raise _read_errors(errors, len(paths))
    return [spec for spec, _ in results]


def _check_spec(fname, spec, config: AudioConfig):
    if spec.ndim != 2 or spec.shape[0] != config.n_mels or not np.isfinite(spec).all():
        raise ValueError(f"{fname}: log-mel of shape {spec.shape} is not ({config.n_mels}, frames) "
                         "and finite; nothing was cached")


def _spooled_log_mels(paths, fnames, spool: Path, config: AudioConfig, workers, desc, frontend, progress) -> list:
    """compute_log_mels, but each log-mel is appended to the file `spool` as it arrives instead of being kept:
    returns read-only views of the spool, one (n_mels, frames) array per path. Only the clips the pool has
    in flight are ever in memory, so building the cache of a large set (the 2019 noisy set: ~9 GB of
    log-mels) needs no more memory than a small one; the spool costs that much disk until the cache is
    written (`load_features` deletes it)."""
    frames, errors = [], []
    results = _log_mel_results(paths, config, workers, desc, frontend, progress)
    with open(spool, "wb") as out, contextlib.closing(results):
        for fname, (spec, err) in zip(fnames, results):
            if err is not None:
                errors.append(err)
                continue
            _check_spec(fname, spec, config)
            out.write(np.ascontiguousarray(spec, dtype=np.float32).tobytes())
            frames.append(spec.shape[1])
    if errors:
        raise _read_errors(errors, len(paths))
    ends = np.cumsum([0] + frames) * config.n_mels
    data = np.memmap(spool, dtype=np.float32, mode="r") if ends[-1] else np.zeros(0, np.float32)
    return [data[a:b].reshape(config.n_mels, -1) for a, b in zip(ends[:-1], ends[1:])]


def cache_key(fnames, config: AudioConfig, corrections=None) -> str:
    return "-".join([config.short_hash(), stable_hash(corrections or {}, 8), stable_hash(list(fnames), 8)])


def load_features(fnames, audio_dir, cache_root, name: str, config: AudioConfig = AUDIO,
                  corrections=None, workers=None, frontend="fast", progress=True) -> FeatureSet:
    """Log-mels of `audio_dir/fname` for each fname, from the cache or computed and cached.

    `frontend` only chooses how missing features are computed; a cache made by either
    front end is reused (see the module docstring). Several processes may call this
    at once for the same cache: one computes it, the others wait for it.
    """
    fnames = list(fnames)
    check_frontend(frontend)
    folder = Path(cache_root) / f"{name}-{cache_key(fnames, config, corrections)}"
    if not folder.exists():
        with _build_lock(folder):
            if not folder.exists():  # else another process built it while we waited
                spool = folder.with_name(f".{folder.name}.spool-{os.getpid()}")
                spool.parent.mkdir(parents=True, exist_ok=True)
                if fcntl is not None:  # we hold the lock: any other spool of this folder is a killed build's
                    for stale in spool.parent.glob(f".{folder.name}.spool-*"):
                        with contextlib.suppress(FileNotFoundError):
                            stale.unlink()
                try:
                    specs = _spooled_log_mels([Path(audio_dir) / f for f in fnames], fnames, spool, config,
                                              workers, desc=name, frontend=frontend, progress=progress)
                    write_feature_cache(folder, fnames, specs, config, corrections, frontend)
                    del specs
                except OSError as exc:  # a full disk while spooling: name the cache, not the spool (deleted)
                    named = write_error_naming(exc, spool, folder)
                    if named is None:
                        raise
                    raise named from exc
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(spool)
    return read_feature_cache(folder, fnames=fnames, config=config)


@contextlib.contextmanager
def _build_lock(folder: Path):
    """Hold an exclusive lock on `.<folder>.lock` beside the cache folder, saying so if we must wait.

    The lock file is removed afterwards (and the kernel drops the lock of a killed
    process). Removing it is safe here because the holder's only work is "build the
    folder if it does not exist": a process that then locks the removed file, or a
    new one, finds the folder published and builds nothing. Only after a failed
    build can two processes both retry, and publishing never replaces, so that
    costs time, not correctness.
    """
    if fcntl is None:
        yield
        return
    lock_path = folder.with_name(f".{folder.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{folder}: another process is building this feature cache; waiting for it "
                  f"(lock file {lock_path})", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
                    os.unlink(lock_path)
            # Unlock explicitly: processes forked meanwhile share this open file, and closing our copy
            # alone would leave it locked for as long as any of them lives.
            fcntl.flock(handle, fcntl.LOCK_UN)


def checksum(array: np.ndarray, chunk_bytes: int = 1 << 24) -> int:
    """CRC-32 of an array's bytes, read in chunks (a memory-mapped array is never copied whole).

    zlib.crc32 ran at 1.3-4 GB/s here, 4-5x faster than hashlib's fastest digest (blake2b),
    and catches every burst of damage up to 32 bits and all but ~1 in 4e9 of the rest;
    it guards against accidents (truncation, overwrites, bit rot), not against tampering.
    """
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    crc = 0
    for start in range(0, len(data), chunk_bytes):
        crc = zlib.crc32(memoryview(data[start:start + chunk_bytes]), crc)
    return crc


def write_feature_cache(folder, fnames, specs, config: AudioConfig, corrections=None, frontend="fast"):
    """Publish a new cache folder. If a complete one appears first (another process), that one is kept."""
    folder = Path(folder)
    fnames = list(fnames)
    if len(fnames) != len(specs):
        raise ValueError(f"{folder}: {len(fnames)} file names but {len(specs)} spectrograms")
    for fname, spec in zip(fnames, specs):
        _check_spec(fname, spec, config)
    offsets = np.cumsum([0] + [s.shape[1] for s in specs]).astype(np.int64)
    shape = (config.n_mels, int(offsets[-1]))
    try:
        with atomic_new_dir(folder) as tmp:
            if shape[1]:
                # Clip by clip into the file (byte for byte what np.save of the clips side by side writes),
                # never the whole array in memory: its pages are the file's, written back as they fill.
                frames = np.lib.format.open_memmap(tmp / "frames.npy", mode="w+", dtype=np.float32, shape=shape)
                for start, end, spec in zip(offsets[:-1], offsets[1:], specs):
                    frames[:, start:end] = spec
                frames.flush()
            else:
                frames = np.zeros(shape, np.float32)
                np.save(tmp / "frames.npy", frames)
            index = {"format": CACHE_FORMAT, "fnames": fnames, "audio_config": config.to_dict(),
                     "audio_hash": config.short_hash(), "corrections_hash": stable_hash(corrections or {}, 8),
                     "frontend": frontend, "frames_shape": list(shape),
                     "frames_crc32": checksum(frames), "offsets_crc32": checksum(offsets)}
            del frames
            np.save(tmp / "offsets.npy", offsets)
            (tmp / "index.json").write_text(json.dumps(index))
    except FileExistsError:
        # Someone published this cache first. Same key, same content: use theirs, never rename over it.
        if not (folder / "index.json").is_file():
            raise FeatureCacheError(folder, "the folder exists but has no index.json") from None


def read_feature_cache(folder, fnames=None, config: AudioConfig = None) -> FeatureSet:
    """Map a cache folder into memory, after checking it (see the module docstring).

    `fnames` / `config`, when given, must match the ones the cache was built for.
    Raises FeatureCacheError (a ValueError) naming the folder for any problem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FeatureCacheError(folder, "no such folder")
    missing = [name for name in CACHE_FILES if not (folder / name).is_file()]
    if missing:
        raise FeatureCacheError(folder, f"missing {', '.join(missing)}")
    index = _read_index(folder)
    n_mels = index["audio_config"].get("n_mels")
    if config is not None and (n_mels != config.n_mels or index["audio_hash"] != config.short_hash()):
        raise FeatureCacheError(folder, f"made with audio settings {index['audio_hash']} ({n_mels} mel bands), "
                                        f"expected {config.short_hash()} ({config.n_mels} mel bands)")
    if fnames is not None and list(fnames) != index["fnames"]:
        raise FeatureCacheError(folder, f"index.json lists {len(index['fnames'])} file names, not the "
                                        f"{len(list(fnames))} asked for in that order")

    frames = _load_npy(folder, "frames.npy", mmap_mode="r")
    offsets = _load_npy(folder, "offsets.npy")
    recorded = tuple(index["frames_shape"])
    if frames.dtype != np.float32 or frames.shape != recorded or recorded[0] != n_mels:
        raise FeatureCacheError(folder, f"frames.npy holds {frames.dtype} {frames.shape}, index.json says "
                                        f"float32 {recorded} with {n_mels} mel bands")
    n_clips = len(index["fnames"])
    if offsets.dtype != np.int64 or offsets.shape != (n_clips + 1,):
        raise FeatureCacheError(folder, f"offsets.npy holds {offsets.dtype} {offsets.shape}, "
                                        f"expected int64 ({n_clips + 1},) for {n_clips} clips")
    if offsets[0] != 0 or offsets[-1] != frames.shape[1] or (np.diff(offsets) < 0).any():
        raise FeatureCacheError(folder, f"offsets.npy must rise from 0 to the {frames.shape[1]} frames "
                                        "without decreasing")
    for name, array in (("offsets.npy", offsets), ("frames.npy", frames)):
        if checksum(array) != index[f"{name[:-4]}_crc32"]:
            raise FeatureCacheError(folder, f"{name} does not match its checksum in index.json "
                                            "(changed or damaged since it was built)")
    specs = [frames[:, offsets[i]:offsets[i + 1]] for i in range(n_clips)]
    return FeatureSet(index["fnames"], specs)


def _read_index(folder: Path) -> dict:
    try:
        index = json.loads((folder / "index.json").read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeatureCacheError(folder, f"index.json is not valid JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
        found = index.get("format", "none") if isinstance(index, dict) else "none"
        raise FeatureCacheError(folder, f"index.json has cache format {found}, this code reads {CACHE_FORMAT} "
                                        "(an older version made it, or it is damaged)")
    keys = ("fnames", "audio_config", "audio_hash", "frames_shape", "frames_crc32", "offsets_crc32")
    absent = [key for key in keys if key not in index]
    if absent:
        raise FeatureCacheError(folder, f"index.json lacks {', '.join(absent)}")
    shape, names = index["frames_shape"], index["fnames"]
    wrong = [key for key, ok in (
        ("fnames", isinstance(names, list) and all(isinstance(f, str) for f in names)),
        ("audio_config", isinstance(index["audio_config"], dict)),
        ("audio_hash", isinstance(index["audio_hash"], str)),
        ("frames_shape", isinstance(shape, list) and len(shape) == 2 and all(type(n) is int for n in shape)),
        ("frames_crc32", type(index["frames_crc32"]) is int),
        ("offsets_crc32", type(index["offsets_crc32"]) is int)) if not ok]
    if wrong:
        raise FeatureCacheError(folder, f"index.json has values of the wrong type for {', '.join(wrong)}")
    return index


def _load_npy(folder: Path, name: str, mmap_mode=None) -> np.ndarray:
    try:
        return np.load(folder / name, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # truncated, garbage header, pickled object...
        raise FeatureCacheError(folder, f"{name} cannot be read ({exc})") from None
