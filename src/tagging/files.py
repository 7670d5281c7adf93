"""Tagging whole files: finding audio, batched prediction, top-k tables, CSV/JSON results, failures."""
import json
import sys
from pathlib import Path

import numpy as np

from src.audio.fast_frontend import log_mel, read_audio  # the feature cache's front end
from src.audio.frontend import AUDIO_EXTENSIONS
from src.predict.prediction_sets import check_finite
from src.audio.streaming import audio_info
from src.progress import progress as progress_bar
from src.tagging.chunked import tag_long_file
from src.predict.ensemble import Ensemble
from src.thresholds import labels_of
from src.files import atomic_path

# Files longer than this are tagged in chunks (src.tagging.chunked): memory stays flat for any length.
LONG_FILE_SECONDS = 60.0


def find_audio_files(paths):
    """(files, missing): files given directly, plus audio files found recursively in folders.

    A file named on the command line is always taken (its decoder decides);
    in folders only known audio extensions are picked up. Sorted, no duplicates.
    """
    files, missing, seen = [], [], set()
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        elif path.is_file():
            found = [path]
        else:
            missing.append(path)
            continue
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files, missing


def _reason(path, exc) -> str:
    text = str(exc)
    return text if str(path) in text else f"{path}: {type(exc).__name__}: {text}"


def tag_files(tagger: Ensemble, paths, batch_size=128, group_size=32, progress=True, long_seconds=LONG_FILE_SECONDS,
              chunk_seconds=10.0):
    """(results, failures): results = [(path, probs)] in input order, failures = [(path, reason)].

    Files are decoded and trimmed like training clips, then predicted
    `group_size` files at a time (their tiles share batches), so memory stays
    bounded for any number of files. A file longer than `long_seconds` is
    streamed in chunks of `chunk_seconds` instead (`tag_long_file`: the same
    probabilities in flat memory). A file that fails to decode is recorded
    and skipped.
    """
    config = tagger.audio_config
    results, failures = [], []
    bar = progress_bar(total=len(paths), unit="file", desc="tagging", enabled=progress)
    for start in range(0, len(paths), group_size):
        specs, ok = [], []
        for index, path in enumerate(paths[start:start + group_size], start):
            try:
                if audio_info(path)[1] > long_seconds:
                    results.append((index, path, tag_long_file(tagger, path, batch_size, chunk_seconds)))
                else:
                    specs.append(log_mel(read_audio(path, config), config))
                    ok.append((index, path))
            except Exception as exc:  # one bad file must not stop the others; reported at the end
                failures.append((path, _reason(path, exc)))
            bar.update(1)
        if specs:
            results.extend((i, p, probs) for (i, p), probs in zip(ok, tagger.predict(specs, batch_size)))
    bar.close()
    return [(path, probs) for _, path, probs in sorted(results, key=lambda r: r[0])], failures


def top_k(probs, classes, k):
    """[(label, prob)] of the k most probable classes, most probable first."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [(classes[i], float(probs[i])) for i in order]


def format_table(results, classes, k, thresholds=None) -> str:
    """Terminal table: file | rank | tag | probability (| yes: at or above the class's threshold), one block
    of k rows per file."""
    threshold_of = dict(zip(classes, thresholds)) if thresholds is not None else None
    rows = [(Path(path).name if i == 0 else "", str(i + 1), label, f"{prob:.3f}",
             "yes" if threshold_of and prob >= threshold_of[label] else "")
            for path, probs in results for i, (label, prob) in enumerate(top_k(probs, classes, k))]
    header = ("file", "#", "tag", "prob", "yes" if threshold_of else "")
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(5)]
    line = lambda r: (f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}"  # noqa
                      + (f"  {r[4]}" if threshold_of else "")).rstrip()
    out = [line(header), "  ".join("-" * w for w in widths[:5 if threshold_of else 4])]
    for row in rows:
        if row[0] and len(out) > 2:
            out.append("")
        out.append(line(row))
    return "\n".join(out)


def write_results(results, classes, path, k=5, thresholds=None):
    """All class probabilities: CSV (fname, path, [labels,] one column per class) or JSON (list of {path, top,
    [labels,] probs}). With `thresholds` (one per class), `labels` = the classes at or above their threshold,
    most probable first (comma-separated in the CSV, as train_curated.csv writes labels)."""
    path = Path(path)
    suffix = path.suffix.lower()
    check_finite([p for _, p in results], [str(p) for p, _ in results], path)
    labels = None if thresholds is None else labels_of([p for _, p in results], classes, thresholds)
    if suffix == ".csv":
        import pandas as pd

        frame = pd.DataFrame(np.array([p for _, p in results], np.float32).reshape(len(results), len(classes)),
                             columns=classes)
        if labels is not None:
            frame.insert(0, "labels", [",".join(names) for names in labels])
        frame.insert(0, "path", [str(p) for p, _ in results])
        frame.insert(0, "fname", [Path(p).name for p, _ in results])
        with atomic_path(path, suffix=".csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.7g")
    elif suffix == ".json":
        items = [{"path": str(p), "top": [{"label": label, "prob": prob} for label, prob in top_k(probs, classes, k)],
                  **({} if labels is None else {"labels": labels[i]}),
                  "probs": {c: float(v) for c, v in zip(classes, probs)}} for i, (p, probs) in enumerate(results)]
        with atomic_path(path, suffix=".json") as tmp:
            tmp.write_text(json.dumps(items, indent=1) + "\n")
    else:
        raise ValueError(f"{path}: --out must end in .csv or .json")


def print_failures(failures, stream=None):
    """The failed files with their reasons (each reason names its file)."""
    stream = stream or sys.stdout
    if failures:
        print(f"\n{len(failures)} file(s) failed:", file=stream)
        for _, reason in failures:
            print(f"  {reason}", file=stream)


def out_prefixes(paths, out_dir) -> list:
    """<out_dir>/<stem> for each file; a stem seen before gets _2, _3, ... appended."""
    used, prefixes = {}, []
    for path in paths:
        stem = Path(path).stem
        used[stem] = used.get(stem, 0) + 1
        prefixes.append(Path(out_dir) / (stem if used[stem] == 1 else f"{stem}_{used[stem]}"))
    return prefixes
