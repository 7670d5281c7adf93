"""What a shorter training would have cost, replayed from finished runs' logs: nothing is trained.

    python bench/early_stopping.py data/realdev                      # small; patience 12 10 8 6
    python bench/early_stopping.py data/dev_s* --patience 12 10 --epochs 50 40

train_folds.py keeps each fold's checkpoint with the best val lwlrap, stops a fold after
`early_stopping` epochs without a better one (argus EarlyStopping) and lowers the learning rate on a
plateau. None of that looks ahead: a run with a shorter patience, or fewer epochs, trains exactly the
first epochs of the longer run (same seed, same data) and then stops. So each fold's log.csv
(DATA/experiments/<experiment>/fold_*/log.csv) is replayed under every candidate, each a single
change from the settings the run recorded in its config.json, and for each the script prints:
  - the epochs it would have trained, as a share of the epochs the runs trained (a fold's time is
    nearly all training epochs);
  - the folds that keep the same checkpoint: their out-of-fold predictions, and so their part of the
    grouped CV, would be identical;
  - the mean change of the kept checkpoint's val lwlrap (the per-epoch validation score that picks
    the checkpoint, not predict_folds.py's tile-predicted out-of-fold score), with its standard error
    over folds. It is never positive, and a little pessimistic: the longer run picks its best from
    more epochs scored on the same validation clips, which flatters it too.
Several folders (seeds, dev sets) are pooled. A candidate longer than a run trained (a patience above
its early_stopping, more epochs than it had) cannot be replayed and is refused; so is a log that the
recorded settings do not reproduce (an interrupted or differently-set fold).
"""
import argparse
import math
import sys
from pathlib import Path
from typing import NamedTuple

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from src.cli import run  # noqa: E402
from src.errors import BadInput, BadSetting, InputFileNotFound  # noqa: E402
from src.files import read_json  # noqa: E402


class Replay(NamedTuple):
    trained: int      # epochs trained
    kept: int         # index of the kept (best) epoch
    best: float       # its val lwlrap
    stopped: bool     # stopped by the patience rule (not by the epoch count or the log's end)


def replay(scores, patience: int, epochs: int) -> Replay:
    """One fold's val lwlrap per epoch, trained again under (patience, epochs).

    Argus's rules: a score is better only when strictly higher; after `patience` epochs in a row
    without a better one, training stops; and it stops after `epochs` epochs in any case.
    """
    best, best_epoch, wait = -math.inf, -1, 0
    for epoch, score in enumerate(scores[:epochs]):
        if score > best:
            best, best_epoch, wait = score, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return Replay(epoch + 1, best_epoch, best, True)
    return Replay(min(len(scores), epochs), best_epoch, best, False)


def read_run(data_dir: Path, experiment: str) -> tuple[dict, list]:
    """(recorded experiment settings, each fold's val lwlrap per epoch) of one trained run."""
    exp_dir = data_dir / "experiments" / experiment
    settings = read_json(exp_dir / "config.json", "experiment record of train_folds.py").get("experiment", {})
    for key in ("epochs", "early_stopping"):
        if not isinstance(settings.get(key), int):
            raise BadInput(f"{exp_dir / 'config.json'}: no whole-number {key!r} setting")
    logs = sorted(exp_dir.glob("fold_*/log.csv"))
    if not logs:
        raise InputFileNotFound(f"{exp_dir}: no fold_*/log.csv (train the experiment first)")
    folds = []
    for log in logs:
        try:
            table = pd.read_csv(log)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise BadInput(f"{log}: not a training log ({exc})") from None
        if "val_lwlrap" not in table or table["val_lwlrap"].isna().any() or table.empty:
            raise BadInput(f"{log}: no val_lwlrap for every epoch")
        scores = table["val_lwlrap"].tolist()
        as_run = replay(scores, settings["early_stopping"], settings["epochs"])
        if as_run.trained != len(scores) or not (as_run.stopped or len(scores) == settings["epochs"]):
            raise BadInput(f"{log}: {len(scores)} epochs, which early_stopping={settings['early_stopping']} and "
                           f"epochs={settings['epochs']} (config.json) do not reproduce: an interrupted fold, "
                           f"or one trained with other settings")
        folds.append(scores)
    return settings, folds


def candidate_rows(runs: list, patiences: list, epoch_counts: list) -> list:
    """One row per candidate: (label, share of the epochs trained, folds with the same checkpoint,
    folds, mean change of the kept val lwlrap, its standard error)."""
    candidates = [("as run", lambda s: (s["early_stopping"], s["epochs"]))]
    candidates += [(f"patience {p}", lambda s, p=p: (p, s["epochs"])) for p in patiences]
    candidates += [(f"{e} epochs", lambda s, e=e: (s["early_stopping"], e)) for e in epoch_counts]
    rows = []
    for label, settings_of in candidates:
        trained = ran = same = 0
        changes = []
        for settings, folds in runs:
            patience, epochs = settings_of(settings)
            for scores in folds:
                full = replay(scores, settings["early_stopping"], settings["epochs"])
                short = replay(scores, patience, epochs)
                trained, ran = trained + short.trained, ran + full.trained
                same += short.kept == full.kept
                changes.append(short.best - full.best)
        n = len(changes)
        mean = sum(changes) / n
        se = math.sqrt(sum((c - mean) ** 2 for c in changes) / (n - 1) / n) if n > 1 else float("nan")
        rows.append((label, trained / ran, same, n, mean, se))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dirs", nargs="+", type=Path, metavar="DATA",
                        help="data folders with a trained experiment (one per seed or dev set; pooled)")
    parser.add_argument("--experiment", default="small", help="the experiment to replay (default small)")
    parser.add_argument("--patience", type=int, nargs="*", default=[12, 10, 8, 6],
                        help="early-stopping patiences to replay, each with the run's epochs (default 12 10 8 6)")
    parser.add_argument("--epochs", type=int, nargs="*", default=[],
                        help="epoch counts to replay, each with the run's patience (default none)")
    args = parser.parse_args(argv)
    if min(args.patience + args.epochs, default=1) < 1:
        raise BadSetting("--patience and --epochs values must be at least 1")
    runs = [read_run(d, args.experiment) for d in args.data_dirs]
    for data_dir, (settings, _) in zip(args.data_dirs, runs):
        if any(p > settings["early_stopping"] for p in args.patience) or any(e > settings["epochs"] for e in args.epochs):
            raise BadSetting(f"{data_dir}: trained with early_stopping={settings['early_stopping']} and "
                             f"epochs={settings['epochs']}; a longer candidate cannot be replayed from its logs")

    print(f"{args.experiment}: {len(runs)} run(s), {sum(len(f) for _, f in runs)} folds "
          f"({', '.join(str(d) for d in args.data_dirs)})")
    print(f"  {'candidate':12s} {'epochs trained':>15s} {'same checkpoint':>16s} {'kept val lwlrap change':>26s}")
    for label, share, same, n, mean, se in candidate_rows(runs, args.patience, args.epochs):
        print(f"  {label:12s} {share:14.1%}  {same:8d} of {n:<4d} {mean:+14.4f} (se {se:.4f})")


if __name__ == "__main__":
    run(main)
