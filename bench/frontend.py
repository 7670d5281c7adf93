"""Benchmark the feature front end: fast cached path vs. a plain librosa loop.

    python bench/frontend.py                          # data/demo (generated if missing)
    python bench/frontend.py --data-dir data --limit 2000 --repeats 3

On the train clips (train_curated + train_noisy) of a Kaggle-layout folder it
times, each --repeats times:

  (a) fast     the cached front end's compute path: load_features() into an
               empty cache (src.audio.fast_frontend in a process pool, then written)
  (b) librosa  the plain single-process loop users write: librosa.load(sr=44100)
               + trim (feature.rms, AUDIO.pad_mode) + feature.melspectrogram + power_to_db
  (c) librosa in the same pool: compute_log_mels(frontend='librosa')
  (d) cache    load_features() a second time: the cache is memory-mapped
  (e) fast, one process (no pool): the speed-up from the maths alone
  (f) (b) with its BLAS limited to one thread: librosa's mel product is a
      multi-threaded BLAS call that slows down badly when other processes
      keep the cores busy, so this is the steadier baseline on a shared machine

and prints clips/s, audio-seconds/s, CPU milliseconds per clip (all processes),
the speed-up of (a) over (b), and the largest dB difference between (a) and
(b). Wall-clock timings on a shared machine are noisy: the table gives
min / median / max over the repeats; CPU time per clip hardly depends on
what else runs.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from src.audio.frontend import extend_to_min_length, trim_bounds  # noqa: E402
from src.cli import run  # noqa: E402
from src.config import AUDIO  # noqa: E402
from src.data.labels import read_csv_columns  # noqa: E402
from src.errors import InputFileNotFound  # noqa: E402
from src.audio.cache import compute_log_mels, load_features  # noqa: E402
from src.audio.workers import warm_up  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/demo", help="Kaggle-layout folder (default data/demo; "
                        "generated with `python -m src.data.demo_data` when it does not exist)")
    parser.add_argument("--limit", type=int, help="use only the first N train clips")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool size (default: all cores)")
    parser.add_argument("--repeats", type=int, default=3, help="times each measurement is repeated (default 3)")
    return parser.parse_args(argv)


def train_files(data_dir: Path) -> list:
    paths = []
    for split in ("train_curated", "train_noisy"):
        csv = data_dir / f"{split}.csv"
        if csv.is_file():
            paths += [data_dir / split / f for f in read_csv_columns(csv, ("fname",))["fname"]]
    if not paths:
        raise InputFileNotFound(f"{data_dir}: no train_curated.csv / train_noisy.csv with clips in it")
    return paths


def ensure_demo_data(data_dir: Path):
    if data_dir.exists():
        return
    print(f"{data_dir} does not exist: generating the demo dataset there (python -m src.data.demo_data --out "
          f"{data_dir}; `make demo-data` does the same for data/demo)")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "src.data.demo_data", "--out", str(data_dir)], cwd=root, check=True)


def plain_librosa(path, config=AUDIO):
    """The loop a user would write, librosa calls only (single process, default threads).

    The trim is librosa's RMS framing with `config.pad_mode` (`src.audio.frontend.trim_bounds`; librosa's
    own effects.trim has no pad_mode) and the 0.5 s rule of `config.short_clip` is applied to its
    indices, so the outputs are comparable clip by clip (it costs microseconds).
    """
    y, _ = librosa.load(path, sr=config.sampling_rate, mono=True)
    start, end = trim_bounds(y, config)
    y = extend_to_min_length(y, start, end, config)
    mel = librosa.feature.melspectrogram(y=y, sr=config.sampling_rate, n_fft=config.n_fft,
                                         hop_length=config.hop_length, n_mels=config.n_mels,
                                         fmin=config.fmin, fmax=config.fmax, power=2.0, pad_mode=config.pad_mode)
    return librosa.power_to_db(mel, ref=config.ref, amin=config.amin, top_db=config.top_db).astype(np.float32)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn):
    """(wall seconds, CPU seconds, result)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu, result


def main(argv=None):
    args = parse_args(argv)
    data_dir = Path(args.data_dir)
    ensure_demo_data(data_dir)
    paths = train_files(data_dir)[:args.limit]
    audio_seconds = sum(sf.info(p).duration for p in paths)
    print(f"{len(paths)} clips, {audio_seconds:.0f} s of audio ({audio_seconds / len(paths):.2f} s a clip), "
          f"{args.workers} worker(s), {os.cpu_count()} core(s), {args.repeats} repeat(s)")

    # Pay one-off costs (librosa's lazy imports, filterbanks) before any clock starts, for both.
    plain_librosa(paths[0])
    warm_up("fast")
    warm_up("librosa")

    times = {key: [] for key in ("a", "b", "c", "d", "e", "f")}
    cpu = {key: [] for key in times}
    fast_specs = librosa_specs = None

    def measure(key, fn):
        wall, used, result = timed(fn)
        times[key].append(wall)
        cpu[key].append(used)
        return result

    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            fnames = [str(p.relative_to(data_dir)) for p in paths]
            fast_set = measure("a", lambda: load_features(fnames, data_dir, cache, name="bench",
                                                          workers=args.workers, progress=False))
            measure("d", lambda: load_features(fnames, data_dir, cache, name="bench", progress=False))
            fast_specs = [np.array(s) for s in fast_set.specs]
        librosa_specs = measure("b", lambda: [plain_librosa(p) for p in paths])
        measure("c", lambda: compute_log_mels(paths, workers=args.workers, frontend="librosa", progress=False))
        measure("e", lambda: compute_log_mels(paths, workers=1, frontend="fast", progress=False))
        with threadpool_limits(1):
            measure("f", lambda: [plain_librosa(p) for p in paths])
        print(f"  repeat {repeat + 1}: " + ", ".join(f"({k}) {v[-1]:.2f} s" for k, v in times.items()))

    labels = {"a": f"(a) fast front end, pool of {args.workers}, cached", "b": "(b) plain librosa loop, 1 process",
              "c": f"(c) librosa, same pool of {args.workers}", "d": "(d) cache load, second time",
              "e": "(e) fast front end, 1 process", "f": "(f) plain librosa loop, 1 BLAS thread"}
    print(f"\n{'':42s} {'clips/s (min / median / max)':>30s} {'audio-s/s':>10s} {'CPU ms/clip':>12s}")
    for key in ("a", "b", "f", "c", "e", "d"):
        rates = sorted(len(paths) / t for t in times[key])
        print(f"{labels[key]:42s} {rates[0]:8.1f} / {statistics.median(rates):7.1f} / {rates[-1]:8.1f} "
              f"{audio_seconds / statistics.median(times[key]):10.1f} "
              f"{1000 * statistics.median(cpu[key]) / len(paths):12.2f}")
    ratio = [b / a for a, b in zip(times["a"], times["b"])]
    maths = [c / e for c, e in zip(times["b"], times["e"])]
    print(f"\nspeed-up (a) over (b): {statistics.median(ratio):.1f}x (per repeat: "
          + ", ".join(f"{r:.1f}" for r in ratio) + f"); (a) over (f): "
          f"{statistics.median(f / a for a, f in zip(times['a'], times['f'])):.1f}x")
    print(f"speed-up (a) over (c), same pool: {statistics.median(c / a for a, c in zip(times['a'], times['c'])):.1f}x;"
          f" (e) over (b), one process each: {statistics.median(maths):.1f}x")
    worst = max(float(np.abs(f - r).max()) for f, r in zip(fast_specs, librosa_specs))
    shapes = all(f.shape == r.shape for f, r in zip(fast_specs, librosa_specs))
    cpu_ratio = statistics.median(cpu["b"]) / statistics.median(cpu["a"])
    print(f"CPU time per clip, (b) / (a): {cpu_ratio:.1f}x (independent of other load on the machine; on "
          f"{args.workers} otherwise idle cores (a) would reach at most ~{args.workers * len(paths) / statistics.median(cpu['a']):.0f}"
          f" clips/s)")
    print(f"max |dB difference| (a) vs (b): {worst:.2e} dB over {len(paths)} clips; frame counts equal: {shapes}")


if __name__ == "__main__":
    run(main)
