"""Resumable training: the whole state of a fold, saved every epoch beside its best checkpoint.

`TrainingState` runs in `src.train.fit.fit_fold` after the stateful callbacks and
before the curves plot (the epoch's log line is out by then). After every epoch
it writes fold_K/last_state.pth atomically (temp file, then rename), holding what
the next epoch depends on:

- the network and optimizer state dicts (and the fp16 gradient scaler's);
- the callbacks' counters: reduce-on-plateau (torch's scheduler state: best,
  bad epochs, cooldown, last lr), early stopping (wait, best), the best
  checkpoint's best value and file;
- the epoch, whether training stopped, the seconds spent so far;
- the RNG states of python, numpy, torch (CPU and CUDA) and the training
  loader's `torch.Generator` (shuffling and the DataLoader workers' seeds).

Only tensors and plain containers are stored, so it loads with
`torch.load(weights_only=True)`. On --resume, `start` puts all of that back
after argus's callbacks have reset themselves, and sets the engine's epoch, so
training continues with the epoch after the saved one.

Why a resumed run repeats an uninterrupted one exactly on CPU: every random draw
of an epoch comes from the states above. The training loader must then not keep
persistent workers (`make_loader(persistent=False)`): a persistent worker's numpy
state lives in the worker process and cannot be saved, whereas fresh workers are
seeded each epoch from the loader's generator, which is saved. Under torchrun only
rank 0 writes the file, so the other ranks are reseeded from (their seed, epoch)
instead: such a resumed run is as good as an uninterrupted one but not bitwise equal.
"""
import csv
import datetime
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from argus.callbacks import Callback, EarlyStopping, MonitorCheckpoint

from src.files import safe_torch_load
from src.errors import BadCheckpoint
from src.files import atomic_path, torch_save_atomic

LAST_STATE = "last_state.pth"
REPLACED_PREFIX = "replaced-"

# The attributes argus 1.1.0's callbacks keep between epochs (their `start` resets them).
CALLBACK_ATTRIBUTES = {
    EarlyStopping: ("wait", "best_value"),
    MonitorCheckpoint: ("best_value", "saved_files_paths", "epochs_since_last_save"),
}


def plain(value):
    """numpy scalars -> Python numbers, recursively (weights_only loading refuses numpy objects)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value


def callback_state(callback) -> dict:
    """The between-epoch state of one of argus's stateful callbacks."""
    if hasattr(callback, "scheduler"):  # argus LRScheduler wrappers (ReduceLROnPlateau)
        return {"scheduler": plain(callback.scheduler.state_dict())}
    for kind, names in CALLBACK_ATTRIBUTES.items():
        if isinstance(callback, kind):
            return {name: plain(getattr(callback, name)) for name in names}
    raise TypeError(f"no saved state known for {type(callback).__name__}")


def load_callback_state(callback, saved: dict):
    if "scheduler" in saved:
        callback.scheduler.load_state_dict(saved["scheduler"])
        return
    for name, value in saved.items():
        setattr(callback, name, list(value) if isinstance(value, tuple) else value)


def rng_state(generator: torch.Generator) -> dict:
    """python/numpy/torch RNG states and a loader's generator, as tensors and plain lists."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state(), "loader": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def reseed(seed: int, epoch: int, generator: torch.Generator):
    """Fresh RNG streams derived from (seed, epoch): for ranks whose states were not saved."""
    derived = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    random.seed(derived)
    np.random.seed(derived)
    torch.manual_seed(derived)
    generator.manual_seed(derived)


# What `TrainingState.epoch_complete` saves (plus "scaler" with an fp16 gradient scaler).
STATE_KEYS = {"epoch": int, "stopped": bool, "model": dict, "optimizer": dict, "callbacks": dict, "rng": dict,
              "extra": dict}


def load_training_state(path) -> dict:
    """Read a last_state.pth through the repo's one safe loader (weights only: plain data, no code), and
    check it holds what `TrainingState` saves (another torch file copied there is refused here, not as a
    KeyError once training has started)."""
    way_on = "Move it away to train this fold from epoch 0, or use --overwrite"
    try:
        state = safe_torch_load(path, what="training state")
    except BadCheckpoint as error:
        raise BadCheckpoint(f"{error}. {way_on}") from error
    wrong = [key for key, kind in STATE_KEYS.items()
             if not isinstance(state, dict) or not isinstance(state.get(key), kind)]
    if wrong:
        raise BadCheckpoint(f"{path}: not a training state saved by train_folds.py (missing or wrong: "
                            f"{', '.join(wrong)}). {way_on}")
    return state


class TrainingState(Callback):
    """Save the full training state after every epoch; restore one at the start of training.

    callbacks: {name: callback} of the stateful callbacks (see `callback_state`).
    generator: the training loader's `torch.Generator`.
    resume_from: a state read by `load_training_state`, or None for a fresh start.
    path: where to save (None: do not save, e.g. ranks other than 0).
    extra: plain data saved alongside (seed, start time, seconds trained before this run, ...).
    seed: reseeds the RNGs from (seed, epoch) on resume when `restore_rng` is False.
    """

    def __init__(self, path, callbacks: dict, generator: torch.Generator, resume_from=None, extra=None,
                 restore_rng=True, seed=0):
        self.path = None if path is None else Path(path)
        self.callbacks, self.generator = callbacks, generator
        self.resume_from, self.extra = resume_from, dict(extra or {})
        self.restore_rng, self.seed = restore_rng, seed

    def start(self, state):
        self.started = time.monotonic()
        saved = self.resume_from
        if saved is None:
            return
        try:
            self._restore(state, saved)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            # load_training_state checked the top level; this is damage inside it (weights of another
            # network, a callback's counters missing): a user error naming the file, before any epoch runs.
            raise BadCheckpoint(f"{self.path or 'the saved training state'}: cannot be restored "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}). "
                                "Move it away to train this fold from epoch 0, or use --overwrite") from exc

    def _restore(self, state, saved):
        model = state.model
        model.get_nn_module().load_state_dict(saved["model"])
        model.optimizer.load_state_dict(saved["optimizer"])
        if "scaler" in saved and hasattr(model, "scaler"):
            model.scaler.load_state_dict(saved["scaler"])
        for name, callback in self.callbacks.items():
            load_callback_state(callback, saved["callbacks"][name])
        if self.restore_rng:
            set_rng_state(saved["rng"], self.generator)
        else:
            reseed(self.seed, saved["epoch"] + 1, self.generator)
        # argus's engine loops `while state.epoch < end_epoch and not state.stopped`, reading both
        # after the START event: setting them here makes argus continue where the saved run was.
        state.epoch = saved["epoch"] + 1
        state.stopped = bool(saved["stopped"])

    def epoch_complete(self, state):
        if self.path is None:
            return
        model = state.model
        snapshot = {
            "epoch": state.epoch, "stopped": bool(state.stopped),
            "model": model.get_nn_module().state_dict(), "optimizer": model.optimizer.state_dict(),
            "callbacks": {name: callback_state(callback) for name, callback in self.callbacks.items()},
            "rng": rng_state(self.generator),
            # seconds: of training so far, over every run that trained this fold
            "extra": plain({**self.extra, "seconds": round(self.extra.get("seconds", 0.0)
                                                           + time.monotonic() - self.started, 1)}),
        }
        if hasattr(model, "scaler"):
            snapshot["scaler"] = plain(model.scaler.state_dict())
        torch_save_atomic(lambda handle: torch.save(snapshot, handle), self.path)


def move_aside(folder, keep=()) -> Path:
    """Move everything in `folder` (but `keep` and earlier replaced-* folders) into folder/replaced-<time>/.

    Nothing is deleted: `--overwrite` is the only way to discard training results.
    Returns the new folder (not created when there is nothing to move).
    """
    folder = Path(folder)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    target = folder / f"{REPLACED_PREFIX}{stamp}"
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name in keep or path.name.startswith(REPLACED_PREFIX):
            continue
        target.mkdir(exist_ok=True)
        shutil.move(str(path), str(target / path.name))
    return target


def trim_log_csv(path, last_epoch: int):
    """Keep the header and the rows of epochs <= last_epoch (a killed run may have logged one more)."""
    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return
    header = next(csv.reader(lines[:1]))
    kept = [lines[0]]
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        if not line.endswith("\n") or len(row) != len(header):
            continue  # a row cut off by the kill
        try:
            if int(row[header.index("epoch")]) <= last_epoch:
                kept.append(line)
        except ValueError:
            continue
    with atomic_path(path) as tmp:
        tmp.write_text("".join(kept))
