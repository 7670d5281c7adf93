"""The `small` experiment on a folder of your own tagged audio, against a no-deep-learning baseline.

    python bench/small_data.py --data-dir data/realdev
    python bench/small_data.py --data-dir data/realdev --seed 7 --overwrite   # another seed

Needs a Kaggle-layout folder with test labels (`test_labels.csv`, as
bench/realdev/build.py makes). Runs, in one go: make_folds.py (when
train_folds.csv is missing), train_folds.py --experiment small over every fold
(its --jobs: on a CPU, by default one single-threaded process per core),
predict_folds.py, then a logistic regression on per-band log-mel statistics
(mean, std and 90th percentile of each of the 128 bands, over time; curated
clips only). Prints side by side: small's out-of-fold CV lwlrap, small's test
lwlrap, the baseline's test lwlrap, and the wall time of each; and each score
averaged over classes ("class-avg": every class counts once, so a class with two
clips weighs as much as one with forty, where lwlrap weighs it by its clips). The experiment
folder is `<data>/experiments/small`; an existing one is only replaced with
--overwrite.

A folder without test clips (no sample_submission.csv rows, and no audio in
test/; src/data/layout.py) needs no test labels: small's out-of-fold CV lwlrap
is then all that is measured (the baseline is scored on test clips only).
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from src import cli  # noqa: E402  (cli.run: the error contract; `run` here runs a script)
from src.config import AUDIO  # noqa: E402
from src.errors import InputFileNotFound, UserError  # noqa: E402
from src.files import read_json  # noqa: E402
from src.data.layout import no_test_clips_note, read_classes, read_folds, read_test_fnames  # noqa: E402
from src.audio.cache import load_features  # noqa: E402
from src.data.labels import read_train_csv, targets_matrix  # noqa: E402
from src.metrics import class_mean_lwlrap, lwlrap  # noqa: E402

EXPERIMENT = "small"


def run(*args):
    print("$", " ".join(args), flush=True)
    if subprocess.run([sys.executable, *args], cwd=ROOT).returncode != 0:
        raise UserError(f"{args[0]} failed (its error is above)")


def band_statistics(specs) -> np.ndarray:
    """Per-band mean, std and 90th percentile over time of each log-mel: (clips, 3 * bands)."""
    return np.stack([np.concatenate([s.mean(axis=1), s.std(axis=1), np.percentile(s, 90, axis=1)]) for s in specs])


def baseline_test_probs(data_dir: Path, classes, test_names) -> np.ndarray:
    """One-vs-rest logistic regressions on band statistics of the curated clips."""
    curated = read_folds(data_dir)
    train = load_features(curated["fname"], data_dir / "train_curated", data_dir / "features", "train_curated",
                          AUDIO, progress=False)
    test = load_features(test_names, data_dir / "test", data_dir / "features", "test", AUDIO, progress=False)
    x_train, x_test = band_statistics(train.specs), band_statistics(test.specs)
    y = targets_matrix(curated["labels"].tolist(), classes)
    probs = np.zeros((len(test_names), len(classes)))
    for k in np.flatnonzero(y.any(axis=0) & ~y.all(axis=0)):   # classes absent from training stay at 0
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        probs[:, k] = model.fit(x_train, y[:, k]).predict_proba(x_test)[:, 1]
    return probs


def test_scores(data_dir: Path, classes, names, probs) -> tuple[float, float]:
    """(lwlrap, class-averaged lwlrap) of `probs` on the test clips `names`."""
    labels = read_train_csv(data_dir / "test_labels.csv").set_index("fname").loc[names, "labels"]
    y = targets_matrix(labels.tolist(), classes)
    return lwlrap(y, probs), class_mean_lwlrap(y, probs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true", help="retrain an existing experiments/small")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="passed on to train_folds.py (to try other settings)")
    parser.add_argument("--jobs", default="auto", metavar="N|auto",
                        help="passed on to train_folds.py: folds trained at once, each in a single-threaded process "
                             "(default auto: one per core on a CPU)")
    parser.add_argument("--seed", type=int, default=42,
                        help="passed on to train_folds.py (default 42, its own default). One seed's CV lwlrap moves by "
                             "up to ~0.007 between settings on the dev sets: compare settings over several seeds")
    parser.add_argument("--baseline-only", action="store_true", help="only the logistic-regression baseline")
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve()
    if not data_dir.is_dir():
        raise InputFileNotFound(f"{data_dir}: no such data folder")
    if not (data_dir / "train_folds.csv").is_file():
        run("make_folds.py", "--data-dir", str(data_dir))
    classes, names = read_classes(data_dir), read_test_fnames(data_dir)
    if names and not (data_dir / "test_labels.csv").is_file():
        raise InputFileNotFound(f"{data_dir / 'test_labels.csv'} not found: the benchmark scores labelled test clips")
    if not names:
        print(no_test_clips_note(data_dir, "the out-of-fold CV lwlrap only, no baseline"), flush=True)

    base_test = base_seconds = None
    if names:
        start = time.perf_counter()
        base_test, base_test_avg = test_scores(data_dir, classes, names, baseline_test_probs(data_dir, classes, names))
        base_seconds = time.perf_counter() - start
        print(f"baseline (log-mel statistics + logistic regression) test lwlrap: {base_test:.4f}", flush=True)
    if args.baseline_only:
        return

    start = time.perf_counter()
    sets = [a for kv in args.set for a in ("--set", kv)]
    run("train_folds.py", "--experiment", EXPERIMENT, "--data-dir", str(data_dir), "--no-progress", "--jobs", args.jobs,
        "--seed", str(args.seed), *sets, *(["--overwrite"] if args.overwrite else []))
    run("predict_folds.py", "--experiment", EXPERIMENT, "--data-dir", str(data_dir))
    small_seconds = time.perf_counter() - start

    predictions = data_dir / "predictions" / EXPERIMENT
    report = read_json(predictions / "val_lwlrap.json", "out-of-fold report of predict_folds.py")
    cv, cv_avg = report["lwlrap"], report["class_mean_lwlrap"]
    print()
    print(f"data: {data_dir}")
    print(f"{'':30s}{'CV lwlrap':>10s}{'class-avg':>10s}{'test lwlrap':>12s}{'class-avg':>10s}{'wall time':>12s}")
    if not names:
        print(f"{'small (5 folds + prediction)':30s}{cv:>10.4f}{cv_avg:>10.4f}{'-':>12s}{'-':>10s}"
              f"{small_seconds / 60:>10.1f} m")
        return
    frame = pd.read_csv(predictions / "test" / "probs.csv").set_index("fname").loc[names, classes]
    small_test, small_test_avg = test_scores(data_dir, classes, names, frame.to_numpy())
    print(f"{'small (5 folds + prediction)':30s}{cv:>10.4f}{cv_avg:>10.4f}{small_test:>12.4f}{small_test_avg:>10.4f}"
          f"{small_seconds / 60:>10.1f} m")
    print(f"{'log-mel statistics + logreg':30s}{'':>20s}{base_test:>12.4f}{base_test_avg:>10.4f}{base_seconds:>10.1f} s")
    print(f"small - baseline on test: {small_test - base_test:+.4f}")


if __name__ == "__main__":
    cli.run(main)
