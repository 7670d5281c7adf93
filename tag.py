"""Tag any audio files with trained models: top tags per file, all probabilities to CSV/JSON.

    python tag.py --experiment corr_noisy_007 my_recordings/ song.mp3
    python tag.py --experiment demo --data-dir data/demo clips/ --top-k 3 --out results.csv
    python tag.py --model model.pt clips/ --out results.json          # a bundle from export.py
    python tag.py --experiment auxiliary_016 --experiment corr_noisy_007 clips/   # blend
    python tag.py --model model.pt --timeline long_recording.flac --window 4 --hop 1 --out-dir timeline/
    python tag.py --ensemble ensemble_2019 clips/ --out results.csv   # the whole 2019 blend (src/ensembles.py)
    python tag.py --model ensemble.pt clips/                          # the same, from export.py --ensemble

PATHs are files or folders (searched recursively for .wav/.flac/.ogg/.mp3/...).
Any sampling rate and channel count libsndfile decodes is fine: audio is mixed
to mono and resampled to the models' rate. Each file is trimmed of leading and
trailing silence like the training clips, cut into tiles, and predicted by
every fold model (geometric mean; tiles of many files share batches, CUDA when
present). --ensemble NAME (or its bundle) predicts as the final submission did:
per experiment the geometric mean of its folds, the stacking MLPs on top, then
the geometric mean of the members (src/predict/ensemble.py); it reports clips/s.
Files longer than a minute are read in chunks, three passes (trim, dB range, tiles), so memory stays flat for any length and the probabilities
are the same as reading the whole file (src/tagging/chunked.py). Files that
fail to decode are listed with the reason at the end; the exit code is then 1.

Yes/no tags: a file has a class when its probability is at or above the class's
threshold, chosen on the models' out-of-fold predictions (best F1 per class,
src/thresholds.py; recorded by predict_folds.py, carried by bundles and named
ensembles; 0.5 for models without), or --threshold X for every class. The
table marks them `yes`; --out adds a `labels` column (CSV) or list (JSON).

--timeline is for long recordings: the file is streamed in chunks (memory does
not grow with its length, and silence is not trimmed so times match the file),
each window of --window seconds every --hop seconds gets all class
probabilities, and windows above --threshold are merged into segments. Per file
it writes <out-dir>/<name>.windows.csv, <name>.segments.csv and
<name>.timeline.png (log-mel overview above the labelled segments).
"""
import argparse
from pathlib import Path

import numpy as np

from src.cli import run
from src.thresholds import DEFAULT_THRESHOLD
from src.tagging import (add_model_args, find_audio_files, format_segments, format_table, load_tagger,
                         out_prefixes, print_failures, tag_files, tag_timeline, write_results)


# The timeline-only options and their defaults (filled in after parsing, so that giving one without
# --timeline is refused even when its value is the default).
TIMELINE_DEFAULTS = {"window": 4.0, "hop": 1.0, "out_dir": "timeline"}
TIMELINE_THRESHOLD = 0.5  # --threshold's default with --timeline (in clip mode: the recorded thresholds)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (recursive)")
    add_model_args(parser)
    parser.add_argument("--top-k", type=int, default=5, help="tags shown per file (default 5)")
    parser.add_argument("--out", help="write every class probability to this .csv or .json file")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (nor, when stderr is not a terminal, the line per stage)")
    timeline = parser.add_argument_group("timeline mode (long recordings)")
    timeline.add_argument("--timeline", action="store_true", help="per-window probabilities and segments")
    # None = not given: clip tagging refuses them, --timeline fills in TIMELINE_DEFAULTS
    timeline.add_argument("--window", type=float, help="window length in seconds (default 4.0 = 256 "
                          "frames, the full-size model's crop)")
    timeline.add_argument("--hop", type=float, help="seconds between window starts (default 1.0)")
    parser.add_argument("--threshold", type=float, help="one yes/no threshold for every class. Clip mode: "
                        "a file has the tags whose probability is >= it (default: each class's threshold "
                        "chosen on out-of-fold predictions, recorded by predict_folds.py, in bundles and "
                        "ensembles; 0.5 for models without). --timeline: probability above which windows "
                        "form segments (default 0.5)")
    timeline.add_argument("--out-dir", help="folder for the timeline CSVs/PNGs (default ./timeline)")
    timeline.add_argument("--chunk-seconds", type=float, default=10.0,
                          help="audio read per chunk, for --timeline and files over a minute (default 10 s)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be >= 1")
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        parser.error(f"--out {args.out}: the file name must end in .csv or .json")
    if args.timeline and args.out:
        parser.error("--out is for clip tagging; --timeline writes its CSVs and PNG to --out-dir")
    given = [f"--{name.replace('_', '-')}" for name in TIMELINE_DEFAULTS if getattr(args, name) is not None]
    if given and not args.timeline:
        one = len(given) == 1
        parser.error(f"{', '.join(given)} {'needs' if one else 'need'} --timeline "
                     f"(tagging whole clips does not use {'it' if one else 'them'})")
    for name, default in TIMELINE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        parser.error("--threshold must be a probability in [0, 1]")
    if args.timeline and args.threshold is None:
        args.threshold = TIMELINE_THRESHOLD
    if args.chunk_seconds <= 0:
        parser.error("--chunk-seconds must be positive")
    if args.timeline and (args.window <= 0 or args.hop <= 0):
        parser.error("--window and --hop must be positive")
    return args


def run_timeline(tagger, files, args, failures):
    prefixes = out_prefixes(files, args.out_dir)
    for path, prefix in zip(files, prefixes):
        try:
            result = tag_timeline(tagger, path, prefix, args.window, args.hop, args.threshold, args.batch_size,
                                  args.chunk_seconds, progress=not args.no_progress)
        except Exception as exc:  # a broken file must not stop the others
            failures.append((path, str(exc) if str(path) in str(exc) else f"{path}: {exc}"))
            continue
        print(f"\n{path}: {result.duration:.1f} s, {result.n_windows} windows, "
              f"{len(result.segments)} segment(s) with p >= {args.threshold:g}")
        if result.segments:
            print(format_segments(result))
        print(f"-> {result.windows_csv}, {result.segments_csv}, {result.png}")


def yes_no_thresholds(tagger, threshold=None) -> tuple:
    """((C,) thresholds, what they are) for clip mode: --threshold, else the models' recorded ones, else 0.5."""
    if threshold is not None:
        return np.full(len(tagger.classes), threshold), f"--threshold {threshold:g}"
    if tagger.thresholds is not None:
        return tagger.thresholds, "each class's threshold chosen on out-of-fold predictions"
    return (np.full(len(tagger.classes), DEFAULT_THRESHOLD),
            f"{DEFAULT_THRESHOLD:g} (these models have no recorded thresholds)")


def main(argv=None) -> int:
    args = parse_args(argv)
    files, missing = find_audio_files(args.paths)
    failures = [(p, f"{p}: no such file or folder") for p in missing]
    tagger = load_tagger(args)
    print(f"models: {tagger.describe()}")
    if not files:
        print("no audio files found in " + ", ".join(args.paths))
    elif args.timeline:
        run_timeline(tagger, files, args, failures)
    else:
        results, failed = tag_files(tagger, files, args.batch_size, progress=not args.no_progress,
                                    chunk_seconds=args.chunk_seconds)
        failures += failed
        thresholds, source = yes_no_thresholds(tagger, args.threshold)
        if results:
            print(format_table(results, tagger.classes, args.top_k, thresholds))
            print(f"\nyes = at or above {source}")
        if args.out:
            write_results(results, tagger.classes, args.out, args.top_k, thresholds)
            print(f"\nall {len(tagger.classes)} class probabilities of {len(results)} file(s) -> {args.out}")
    print(f"prediction: {tagger.throughput()}")
    print_failures(failures)
    return 1 if failures or not files else 0


if __name__ == "__main__":
    run(main)
