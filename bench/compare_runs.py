"""Two settings, several runs (seeds) of each: is one lower, on grouped CV or on the test clips?

    python bench/compare_runs.py --before data/dev_before_s* --now data/dev_now_s*

Each folder is a data folder in which predict_folds.py wrote predictions/<experiment>/ (one folder per
seed: `bench/small_data.py --data-dir DIR --seed S`). For the paired CV, runs are paired by the seed that
train_folds.py recorded in experiments/<experiment>/config.json (a seed found in one list only is left
out, and named); where a folder has no recorded seed, by their place in the two lists (then give the
seeds in the same order). All folders must share the class list and test clips.

Prints, for each run and as means (standard deviation over runs): out-of-fold CV lwlrap, the same averaged
over classes (each class counting once, `class_mean_lwlrap`), and when there are test labels the same two
on the test clips. Then the differences now - before:
  - grouped CV, paired fold by fold (same seed, same fold), with its standard error;
  - test lwlrap, runs unpaired: a change that alters rounding (channels_last, another kernel) gives each seed
    a new path, so the same seed number pairs nothing. A permutation test over the runs' labels (exact when
    the splits are few enough) and a bootstrap over runs and test clips together;
  - per class, out-of-fold and on the test clips (mean over runs): where a difference lives. lwlrap weighs
    a class by its clips, so one with two clips hardly moves it; the per-class lines show it.
"""
import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from src import cli  # noqa: E402
from src.data.labels import read_train_csv, targets_matrix  # noqa: E402
from src.data.layout import read_classes, read_test_fnames  # noqa: E402
from src.errors import BadInput, InputFileNotFound  # noqa: E402
from src.files import read_json  # noqa: E402
from src.metrics import class_mean, class_mean_lwlrap, lwlrap, per_class_lwlrap  # noqa: E402

EXACT_SPLITS = 200_000   # permutation test: every split up to this many, else as many random ones


def load_run(data_dir: Path, experiment: str, classes, test_names) -> dict:
    """One run's out-of-fold report and (when the set has test clips) test probabilities."""
    predictions = data_dir / "predictions" / experiment
    report = read_json(predictions / "val_lwlrap.json", "out-of-fold report of predict_folds.py")
    for key in ("lwlrap", "fold_lwlrap", "per_class_lwlrap", "class_weight"):
        if key not in report:
            raise BadInput(f"{predictions / 'val_lwlrap.json'}: no {key!r} (written by an older predict_folds.py? "
                           f"run it again)")
    # Reports from before class_mean_lwlrap was recorded: the same mean, from the per-class scores they keep.
    per_class = report["per_class_lwlrap"]
    report.setdefault("class_mean_lwlrap", class_mean(list(per_class.values()),
                                                      [report["class_weight"][c] for c in per_class]))
    if read_classes(data_dir) != classes or read_test_fnames(data_dir) != test_names:
        raise BadInput(f"{data_dir}: another class list or other test clips than the first folder's")
    config = data_dir / "experiments" / experiment / "config.json"
    seed = read_json(config, "experiment record of train_folds.py").get("seed") if config.is_file() else None
    run = {"dir": data_dir, "seed": seed, **report}
    if test_names:
        probs = predictions / "test" / "probs.csv"
        if not probs.is_file():
            raise InputFileNotFound(f"{probs}: no test predictions (run predict_folds.py)")
        run["test_probs"] = pd.read_csv(probs).set_index("fname").loc[test_names, classes].to_numpy()
    return run


def pair_runs(before: list, now: list) -> tuple[list, str, list]:
    """(pairs, how, left out) for the paired CV: runs with the same recorded seed when every run has one
    and no seed repeats within a list; else by place in the lists (how = "run")."""
    seeds = [[r["seed"] for r in runs] for runs in (before, now)]
    if any(seed is None for seed in seeds[0] + seeds[1]) or any(len(set(s)) < len(s) for s in seeds):
        return list(zip(before, now)), "run", before[len(now):] + now[len(before):]
    by_seed = {r["seed"]: r for r in now}
    pairs = [(b, by_seed[b["seed"]]) for b in before if b["seed"] in by_seed]
    paired = {b["seed"] for b, _ in pairs}
    return pairs, "seed", [r for r in before + now if r["seed"] not in paired]


def permutation_p(before: np.ndarray, now: np.ndarray, rng) -> tuple[float, int]:
    """Share of relabellings of the runs whose mean difference (now - before) is at or below the observed."""
    values, k = np.concatenate([before, now]), len(now)
    observed = now.mean() - before.mean()
    total = values.sum()
    if math.comb(len(values), k) <= EXACT_SPLITS:
        picks = itertools.combinations(range(len(values)), k)
    else:
        picks = (rng.choice(len(values), k, replace=False) for _ in range(EXACT_SPLITS))
    diffs = np.array([(s := values[list(p)].sum()) / k - (total - s) / (len(values) - k) for p in picks])
    return float((diffs <= observed + 1e-12).mean()), len(diffs)


def bootstrap_interval(y, before: list, now: list, rng, draws: int) -> tuple[float, float]:
    """95% interval of the test lwlrap difference (mean of runs, now - before), resampling runs and clips."""
    diffs = []
    while len(diffs) < draws:
        clips = rng.integers(0, len(y), len(y))
        if not y[clips].any():
            continue
        pick = [rng.integers(0, len(runs), len(runs)) for runs in (before, now)]
        means = [np.mean([lwlrap(y[clips], runs[i][clips]) for i in p]) for runs, p in zip((before, now), pick)]
        diffs.append(means[1] - means[0])
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.4f} ({sd:.4f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, nargs="+", required=True, metavar="DIR",
                        help="data folders of the reference setting, one per run (seed)")
    parser.add_argument("--now", type=Path, nargs="+", required=True, metavar="DIR",
                        help="data folders of the setting compared with it (paired with --before's by recorded "
                             "seed, else by place in the list)")
    parser.add_argument("--experiment", default="small", help="whose predictions to read (default: small)")
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap draws (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and sampled permutations")
    args = parser.parse_args(argv)
    for folder in args.before + args.now:
        if not folder.is_dir():
            raise InputFileNotFound(f"{folder}: no such data folder")
    first = args.before[0]
    classes, test_names = read_classes(first), read_test_fnames(first)
    arms = {name: [load_run(d, args.experiment, classes, test_names) for d in dirs]
            for name, dirs in (("before", args.before), ("now", args.now))}
    y = None
    if test_names:
        labels = read_train_csv(first / "test_labels.csv").set_index("fname").loc[test_names, "labels"]
        y = targets_matrix(labels.tolist(), classes)
        for runs in arms.values():
            for run in runs:
                run["test"], run["test_class_mean"] = lwlrap(y, run["test_probs"]), class_mean_lwlrap(y, run["test_probs"])

    columns = ["lwlrap", "class_mean_lwlrap"] + (["test", "test_class_mean"] if y is not None else [])
    header = ["CV", "CV class-avg"] + (["test", "test class-avg"] if y is not None else [])
    print(f"{'run':8s}{'folder':44s}{'seed':>6s}" + "".join(f"{h:>16s}" for h in header))
    for name, runs in arms.items():
        for run in runs:
            seed = "?" if run["seed"] is None else str(run["seed"])
            print(f"{name:8s}{str(run['dir'])[-43:]:44s}{seed:>6s}" + "".join(f"{run[c]:>16.4f}" for c in columns))
    for name, runs in arms.items():
        print(f"{name + ' mean (sd over ' + str(len(runs)) + ')':58s}" + "".join(
            f"{mean_sd([r[c] for r in runs]):>16s}" for c in columns))
    print()

    pairs, how, unpaired = pair_runs(arms["before"], arms["now"])
    folds = [(b["fold_lwlrap"], n["fold_lwlrap"]) for b, n in pairs]
    diffs = np.array([n[f] - b[f] for b, n in folds for f in b if f in n])
    if how == "run":
        print("(a folder has no recorded seed, or a list repeats one: runs paired by their place in the lists)")
    if unpaired:
        print("left out of the paired CV, no partner: " + ", ".join(
            f"{r['dir']}" + ("" if r["seed"] is None else f" (seed {r['seed']})") for r in unpaired))
    if len(diffs) > 1:
        print(f"grouped CV, now - before, paired by {how} and fold: {diffs.mean():+.4f} "
              f"(standard error {diffs.std(ddof=1) / np.sqrt(len(diffs)):.4f}, {len(diffs)} folds)")
    rng = np.random.default_rng(args.seed)
    if y is not None:
        before, now = (np.array([r["test"] for r in arms[k]]) for k in ("before", "now"))
        p, splits = permutation_p(before, now, rng)
        low, high = bootstrap_interval(y, [r["test_probs"] for r in arms["before"]],
                                       [r["test_probs"] for r in arms["now"]], rng, args.draws)
        print(f"test lwlrap, now - before, runs unpaired: {now.mean() - before.mean():+.4f}; "
              f"{p:.1%} of {splits} relabellings of the runs at or below it; "
              f"bootstrap over runs and test clips: {low:+.4f} to {high:+.4f} (95%)")
    print()
    print(f"{'per class (mean over runs)':36s}{'CV share':>9s}{'CV before':>11s}{'CV now':>9s}"
          + (f"{'test clips':>12s}{'test before':>13s}{'test now':>10s}" if y is not None else ""))
    share = pd.DataFrame([r["class_weight"] for r in arms["before"]]).mean()   # of the out-of-fold labels
    per = {k: pd.DataFrame([r["per_class_lwlrap"] for r in arms[k]]).mean() for k in arms}
    test_per = {}
    if y is not None:
        test_per = {k: np.mean([per_class_lwlrap(y, r["test_probs"])[0] for r in arms[k]], axis=0) for k in arms}
    for i, c in enumerate(classes):
        if share.get(c, 0) == 0 and (y is None or y[:, i].sum() == 0):
            continue
        line = f"{c[:35]:36s}{share.get(c, 0):>9.3f}{per['before'].get(c, 0):>11.3f}{per['now'].get(c, 0):>9.3f}"
        if y is not None:
            line += f"{int(y[:, i].sum()):>12d}{test_per['before'][i]:>13.3f}{test_per['now'][i]:>10.3f}"
        print(line)


if __name__ == "__main__":
    cli.run(main)
