"""The experiment folder, <data>/experiments/NAME, as train_folds.py and stacking_train.py write it: its one owner.

    config.json          the experiment's settings, classes and audio settings (`read_experiment_record`)
    fold_K/model-*.pth   the best checkpoint of fold K by val_lwlrap (`best_checkpoint`, `trained_folds`)
    fold_K/done.json     written when fold K finished training (`fold_is_done`, `check_folds_finished`),
                         with the precision it trained in (`trained_precision`)

Training, prediction and tagging all read the folder through this module (plain files, no torch).
"""
import json
from pathlib import Path

from src.errors import BadInput, InputFileNotFound
from src.experiments import complete_config
from src.precision import describe_precisions
from src.files import read_json

DONE_FILE = "done.json"


def experiments_dir(data_dir, name) -> Path:
    return Path(data_dir) / "experiments" / name


def best_checkpoint(fold_dir) -> Path:
    """The checkpoint with the highest val_lwlrap in its name (there is normally exactly one)."""
    paths = list(Path(fold_dir).glob("model-*.pth"))
    if not paths:
        raise FileNotFoundError(f"{fold_dir}: no model-*.pth checkpoint")
    scores = {}
    for path in paths:  # model-EPOCH-SCORE.pth, as training names them
        try:
            scores[path] = float(path.stem.rsplit("-", 1)[1])
        except ValueError:
            raise BadInput(f"{path}: not a checkpoint name training writes (model-EPOCH-SCORE.pth); "
                           f"move it out of {fold_dir}") from None
    return max(paths, key=lambda p: (scores[p], p.name))


def fold_is_done(fold_dir) -> bool:
    return (Path(fold_dir) / DONE_FILE).is_file()


def trained_folds(experiment_dir) -> list:
    """Fold numbers that have a checkpoint (finished or interrupted) in an experiment folder."""
    folds = []
    for path in sorted(Path(experiment_dir).glob("fold_*")):
        number = path.name.split("_", 1)[1]
        if path.is_dir() and number.isascii() and number.isdigit() and any(path.glob("model-*.pth")):
            folds.append(int(number))  # other fold_* names (fold_0.bak) are not training's: ignored
    return sorted(folds)


def unfinished_folds(experiment_dir) -> list:
    """Folds with a checkpoint but no done.json: interrupted (or still training)."""
    return [fold for fold in trained_folds(experiment_dir)
            if not fold_is_done(Path(experiment_dir) / f"fold_{fold}")]


def check_folds_finished(experiment_dir, allow_unfinished: bool):
    """Refuse to predict with unfinished folds, unless allowed (then say which they are)."""
    unfinished = unfinished_folds(experiment_dir)
    if unfinished and not allow_unfinished:
        raise BadInput(f"{experiment_dir}: fold(s) {unfinished} have not finished training (no {DONE_FILE}); "
                         f"finish them with --resume, or pass --allow-unfinished to predict with their best "
                         f"checkpoint so far")
    if unfinished:
        print(f"warning: fold(s) {unfinished} of {experiment_dir} have not finished training; using their best "
              f"checkpoint so far (--allow-unfinished)")


def read_experiment_record(exp_dir, hint="") -> dict:
    """config.json of an experiment folder (as written by train_folds.py), its experiment completed with
    the settings that runs of older versions did not record (src.experiments.complete_config). `hint`
    ends the message of a missing file (e.g. another way in)."""
    path = Path(exp_dir) / "config.json"
    if not path.is_file():
        raise InputFileNotFound(f"{path} not found: train the experiment first (train_folds.py){hint}")
    record = read_json(path, what="experiment record")
    for key in ("experiment", "classes"):
        if key not in record:
            raise BadInput(f"{path}: missing key {key!r}")
    record["experiment"] = complete_config(record["experiment"])
    return record


def trained_precision(exp_dir, folds) -> str:
    """The precision the folds trained in, from their done.json ('unrecorded' for runs of older versions)."""
    found = []
    for fold in folds:
        path = Path(exp_dir) / f"fold_{fold}" / DONE_FILE
        try:
            found.append(json.loads(path.read_text()).get("precision") or "unrecorded")
        except (OSError, ValueError):
            found.append("unrecorded")
    return describe_precisions(found)
