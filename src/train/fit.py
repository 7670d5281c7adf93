"""Training machinery shared by the first level (train_folds.py) and the second (stacking_train.py).

`fit_fold` trains one argus model on one fold with the recipe's callbacks:
best checkpoint by val_lwlrap (written atomically, so Ctrl-C or a crash
mid-fold leaves the best model so far usable), reduce-on-plateau and early
stopping on val_lwlrap, a CSV and a text log, a PNG of the curves redrawn
every epoch, and the full training state for --resume (src/train/resume.py).
"""
import json
import logging
import os
import platform
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import argus
import numpy as np
import pandas as pd
import torch
from argus.callbacks import (Callback, EarlyStopping, LoggingToCSV, LoggingToFile, MonitorCheckpoint,
                             ReduceLROnPlateau)

from src.errors import BadInput, BadSetting, ResultsExist
# The experiment folder's layout has one owner; these names are re-exported for the training scripts.
from src.experiment_folder import (DONE_FILE, best_checkpoint, check_folds_finished, experiments_dir,  # noqa: F401
                                   fold_is_done, trained_folds, unfinished_folds)
from src.runtime import set_cpu_threads  # noqa: F401 (re-exported)
from src.experiments import BASE, complete_config
from src.train.distributed import SyncMetrics
from src.metrics import Lwlrap
from src.plots import plot_training_curves
from src.provenance import RECORD_KEYS, check_unchanged
from src.progress import progress as progress_bar
from src.train.resume import LAST_STATE, TrainingState, load_training_state, move_aside, trim_log_csv
from src.files import atomic_path, read_json, torch_save_atomic, write_json_atomic, write_oserror



class MetricsToFloat(Callback):
    """Turn tensor metrics (the loss is averaged on the device, without a sync per step) into floats."""

    def epoch_complete(self, state):
        for key, value in state.metrics.items():
            if isinstance(value, torch.Tensor):
                state.metrics[key] = float(value)


class EpochCounter(Callback):
    """Count the training epochs that ran (every rank; only rank 0 has a log.csv to count)."""

    def __init__(self):
        self.count = 0

    def start(self, state):
        self.count = 0

    def epoch_complete(self, state):
        self.count += 1


class AtomicCheckpoint(MonitorCheckpoint):
    """MonitorCheckpoint whose files appear whole or not at all (temp file, then rename)."""

    def save_model(self, state, file_path):
        logger = state.model.logger
        level = logger.level
        logger.setLevel(logging.WARNING)  # argus would log the temporary name
        try:
            torch_save_atomic(lambda handle: state.model.save(handle, optimizer_state=self.optimizer_state),
                              file_path)
        finally:
            logger.setLevel(level)
        logger.info(f"Model saved to '{file_path}'")


class CurvesPlot(Callback):
    """Redraw the training curves PNG from the CSV log after epochs (at most every `min_interval` s) and at the end."""

    def __init__(self, log_path, png_path, title="", min_interval: float = 30.0):
        self.log_path, self.png_path, self.title = Path(log_path), Path(png_path), title
        # Drawing a PNG takes ~0.3 s: a tenth of a thin CPU network's epoch. The picture is redrawn at
        # most every `min_interval` seconds while training, and always when training ends or stops.
        self.min_interval, self.last_drawn = float(min_interval), None

    def draw(self):
        if self.log_path.is_file() and self.log_path.stat().st_size:
            plot_training_curves(pd.read_csv(self.log_path), self.png_path, self.title)
        self.last_drawn = time.monotonic()

    def epoch_complete(self, state):
        if self.last_drawn is None or time.monotonic() - self.last_drawn >= self.min_interval:
            self.draw()

    def complete(self, state):
        self.draw()

    def catch_exception(self, state):
        try:  # the picture of the epochs so far; the exception that stopped training is the one to report
            self.draw()
        except Exception:
            pass


class ReportedByTheRunner(logging.Filter):
    """Drop argus's log record of an exception that ends training when src.cli.run reports it in one line
    (Ctrl-C, SIGTERM, a full disk or read-only folder): argus logs every such exception with its traceback
    (to the terminal and log.txt), which buried that line. Bugs keep their traceback."""

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, KeyboardInterrupt) or write_oserror(error) is not None)


class ProgressBar(Callback):
    """A bar over the iterations of each training epoch on a terminal; elsewhere one line per epoch
    (`src.progress`)."""

    def __init__(self, total, desc=""):
        self.total, self.desc, self.bar = total, desc, None

    def epoch_start(self, state):
        self.bar = progress_bar(total=self.total, desc=f"{self.desc} epoch {state.epoch}", unit="batch", leave=False)

    def iteration_complete(self, state):
        self.bar.update(1)

    def epoch_complete(self, state):
        if self.bar is not None:
            self.bar.close()

    catch_exception = epoch_complete


def fit_fold(model, train_loader, val_loader, fold_dir, epochs, plateau: dict, early_stopping: int,
             title="", progress=True, is_main: bool = True, seed: int = 0, resume: bool = False,
             extra_callbacks=()) -> dict:
    """Train `model` and keep its best checkpoint by val_lwlrap in `fold_dir`. Returns a summary.

    After every epoch the whole training state is saved to fold_dir/last_state.pth
    (src/train/resume.py); with `resume`, a fold that has one continues from it. `seed` is
    recorded in done.json's provenance (and reseeds other ranks on a resume).

    Data-parallel training (src/train/distributed.py) calls this on every rank: all ranks run
    reduce-on-plateau and early stopping on the same metrics (`SyncMetrics`), so they
    change the learning rate and stop together; only the main rank (`is_main`) writes the
    checkpoint, logs, curves, training state and done.json. Other ranks return a shorter summary.
    `extra_callbacks` run before the training state is saved (e.g. train_folds --jobs children's stop check).
    """
    fold_dir = Path(fold_dir)
    if not any(isinstance(f, ReportedByTheRunner) for f in model.logger.filters):
        model.logger.addFilter(ReportedByTheRunner())
    state_path = fold_dir / LAST_STATE
    saved = load_training_state(state_path) if resume and state_path.is_file() else None
    if saved is not None and is_main:
        _prepare_resumed_fold(fold_dir, saved, title, epochs)
    stopping = EarlyStopping(monitor="val_lwlrap", patience=early_stopping)
    reduce_lr = ReduceLROnPlateau(monitor="val_lwlrap", patience=plateau["patience"], factor=plateau["factor"],
                                  min_lr=plateau["min_lr"])
    stateful = {"reduce_lr": reduce_lr, "early_stopping": stopping}
    epochs_run = EpochCounter()
    callbacks = [MetricsToFloat(), SyncMetrics()]  # SyncMetrics does nothing in a one-process run
    if is_main:
        with warnings.catch_warnings():  # argus warns that the folder exists: expected when resuming
            warnings.simplefilter("ignore", UserWarning)
            stateful["checkpoint"] = AtomicCheckpoint(fold_dir, monitor="val_lwlrap", max_saves=1,
                                                      file_format="model-{epoch:03d}-{monitor:.6f}.pth")
        callbacks.append(stateful["checkpoint"])
    callbacks += [reduce_lr, stopping, epochs_run]
    resuming = saved is not None
    if is_main:
        callbacks += [
            LoggingToFile(fold_dir / "log.txt", append=resuming),
            LoggingToCSV(fold_dir / "log.csv", append=resuming,
                         write_header=not (resuming and (fold_dir / "log.csv").is_file())),
        ]
    else:
        model.logger.setLevel(logging.WARNING)  # rank 0 prints the epoch lines
    callbacks += list(extra_callbacks)
    previous = saved["extra"] if resuming else {}
    extra = {"seed": seed, "started": previous.get("started", time.strftime("%Y-%m-%d %H:%M:%S")),
             "resumed_at_epochs": previous.get("resumed_at_epochs", []) + ([saved["epoch"] + 1] if resuming else []),
             "seconds": previous.get("seconds", 0.0)}
    # After every callback whose state it holds (it saves what they did in the epoch, and restores after
    # their resets), and before the slow side work (the plot): a run stopped once the epoch's log line is out
    # resumes at the next epoch, not this one again.
    callbacks.append(TrainingState(state_path if is_main else None, stateful, train_loader.generator,
                                   resume_from=saved, extra=extra, restore_rng=is_main, seed=seed))
    if is_main:
        callbacks.append(CurvesPlot(fold_dir / "log.csv", fold_dir / "curves.png", title))
        if progress:
            callbacks.append(ProgressBar(len(train_loader), title))
    start = time.time()
    model.fit(train_loader, val_loader=val_loader, num_epochs=epochs, metrics=[Lwlrap()], callbacks=callbacks)
    seconds = round(extra["seconds"] + time.time() - start, 1)
    if not is_main:
        return {"best_val_lwlrap": float(stopping.best_value), "epochs_run": epochs_run.count, "seconds": seconds}
    log = pd.read_csv(fold_dir / "log.csv")
    best = int(log["val_lwlrap"].idxmax())
    summary = {"best_epoch": int(log["epoch"][best]), "best_val_lwlrap": float(log["val_lwlrap"][best]),
               "epochs_run": int(len(log)), "seconds": seconds, "checkpoint": best_checkpoint(fold_dir).name,
               "precision": getattr(model, "precision", "fp32"),  # what the steps ran in (src/precision.py)
               "provenance": provenance(seed, extra["started"], extra["resumed_at_epochs"])}
    with atomic_path(fold_dir / DONE_FILE) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _prepare_resumed_fold(fold_dir: Path, saved: dict, title: str, epochs: int):
    """Before continuing from `saved`: set aside what a killed run wrote after it, and say where we are.

    A run killed between its checkpoint and its training state may have left a best
    checkpoint of an epoch the state does not know, and a log row too many; the epoch
    is trained again, so that checkpoint is moved into replaced-*/ and the row dropped.
    """
    checkpoint = saved["callbacks"].get("checkpoint", {})
    # Saved as paths of the run that wrote them; keep the names, so a moved folder still resumes.
    names = [Path(p).name for p in checkpoint.get("saved_files_paths", [])]
    checkpoint["saved_files_paths"] = [str(fold_dir / name) for name in names]
    stale = [p.name for p in fold_dir.glob("model-*.pth") if p.name not in names]
    if stale:
        moved = move_aside(fold_dir, keep=[p.name for p in fold_dir.iterdir() if p.name not in stale])
        print(f"{title}: checkpoint(s) {stale} are newer than the saved training state; moved to {moved}")
    trim_log_csv(fold_dir / "log.csv", saved["epoch"])
    epoch = saved["epoch"] + 1
    best = f"best {checkpoint['best_value']:.4f}" if "best_value" in checkpoint else "no best yet"
    if names:
        best += f" at {int(names[-1].split('-')[1])}"
    ended = " (training had ended: nothing left to train)" if saved["stopped"] or epoch >= epochs else ""
    print(f"{title}: resuming at epoch {epoch}, {best}{ended}")


def provenance(seed, started, resumed_at_epochs) -> dict:
    """Who made a fold's model: seed, times, library versions and the code's git commit."""
    return {"seed": seed, "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "resumed_at_epochs": list(resumed_at_epochs), "python": platform.python_version(),
            "torch": torch.__version__, "argus": argus.__version__, "numpy": np.__version__,
            "git_commit": git_commit()}


def git_commit():
    """The repository's HEAD commit (with '-dirty' when files differ from it), or None outside git."""
    root = Path(__file__).resolve().parents[2]  # the repository (src/train/fit.py)
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def prepare_experiment_dir(exp_dir, record, folds, resume, overwrite, base=BASE, accepted=()) -> list:
    """Refuse to clobber earlier results; write config.json; return the folds still to train.

    Shared by train_folds.py and stacking_train.py. Without --resume/--overwrite an
    existing config.json stops the run. --resume (same settings and seed) skips finished
    folds (done.json), continues unfinished ones from their last_state.pth, and leaves
    config.json as it is (its seed and start time are the experiment's). A fold folder
    with files but nothing to resume from has them moved into fold_K/replaced-<time>/.
    --overwrite is the only way files are deleted: the requested folds start again.
    --resume also compares what config.json recorded (settings, classes, audio settings, corrections
    files, fold assignment) with this run's `record` (src.provenance.check_unchanged): a change stops
    the run unless `accepted` names it; accepted changes are written into config.json.
    `base` completes a config.json of an older version before the settings are compared
    (src.experiments.complete_config; stacking_train.py passes the stacking table's BASE).
    """
    exp_dir = Path(exp_dir)
    config_path = exp_dir / "config.json"
    if config_path.is_file() and not (resume or overwrite):
        raise ResultsExist(f"{exp_dir} already holds experiment results. Use --resume to continue it "
                         f"or --overwrite to start again.")
    keep_config = resume and config_path.is_file()
    accepted_changes = []
    if keep_config:
        old = read_json(config_path, what="experiment record")
        if not isinstance(old.get("experiment"), dict):
            raise BadInput(f"{config_path}: no 'experiment' settings in it (damaged?); use --overwrite to start again")
        # What the trained folds were made from, against what this run would use (src/provenance.py).
        accepted_changes = check_unchanged(
            {**old, "experiment": complete_config(old["experiment"], base)},
            {**record, "experiment": complete_config(record["experiment"], base)}, config_path,
            accepted=accepted, remedy="--resume would mix two recipes: use --overwrite or another --data-dir")
        if old.get("seed") != record.get("seed"):
            raise BadSetting(f"{config_path}: trained with --seed {old.get('seed')}, this run has --seed "
                             f"{record.get('seed')}; resume with the same seed, or use --overwrite.")
    todo = []
    for fold in folds:
        fold_dir = exp_dir / f"fold_{fold}"
        if resume and fold_is_done(fold_dir):
            print(f"fold {fold}: already finished, skipped (--resume)")
            continue
        if overwrite and fold_dir.exists():
            shutil.rmtree(fold_dir)
        elif not (resume and (fold_dir / LAST_STATE).is_file()):  # else fit_fold continues it
            moved = move_aside(fold_dir)
            if moved.exists():
                print(f"fold {fold}: nothing to resume from; earlier files moved to {moved}; "
                      f"training from epoch 0")
        todo.append(fold)
    if not keep_config:
        write_json_atomic(record, config_path)
    elif accepted_changes:  # the folds trained from now on use the current values: say so in the record
        for change in accepted_changes:
            old[RECORD_KEYS[change["item"]]] = change["current"]
        old["accepted_changes"] = old.get("accepted_changes", []) + [
            {**change, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "folds": todo} for change in accepted_changes]
        write_json_atomic(old, config_path)
    return todo


def worker_count(requested=None) -> int:
    """DataLoader workers: as asked, else all cores but one (at least 1, at most 8)."""
    if requested is not None:
        return requested
    return max(1, min(8, (os.cpu_count() or 1) - 1))
