"""Command-line helpers: the error contract of every script, and the training scripts' shared options.

`run(main)` is the last line of every script: a user error (missing file, bad
CSV, bad audio, bad setting) becomes one line `script.py: error: ...` and exit
status 2; anything else keeps its traceback.

`add_training_args` / `apply_training_args` are the run options of the two
training scripts (train_folds.py, stacking_train.py): both train one model per
fold of a named experiment; each script passes its own experiment table and the
help texts that differ.
"""
import argparse
import re
import sys
from pathlib import Path

from src.errors import UserError
from src.overrides import apply_overrides
from src.provenance import ACCEPTABLE, add_accept_changed


def add_training_args(parser: argparse.ArgumentParser, experiments, *, kind="experiment", folds_help="",
                      workers_default=None, workers_help, threads_help, set_example, keys_file):
    """--experiment NAME (one of `experiments`), --folds, --data-dir, --device, --workers, --threads,
    --seed, --epochs, --set KEY=VALUE, --resume | --overwrite, --accept-changed ITEM, --no-progress."""
    names = sorted(experiments)
    parser.add_argument("--experiment", required=True, choices=names, metavar="NAME",
                        help=f"named {kind}: {', '.join(names)}")
    parser.add_argument("--folds", type=int, nargs="+",
                        help="folds to train (default: every fold in train_folds.csv)" + folds_help)
    parser.add_argument("--data-dir", help="data root (default: $FSAT_DATA_DIR or ./data)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--workers", type=int, default=workers_default, help=workers_help)
    parser.add_argument("--threads", type=int, help=threads_help)
    parser.add_argument("--seed", type=int, default=42, help="seed of the run (fold K uses seed + K)")
    parser.add_argument("--epochs", type=int, help="override the experiment's maximum number of epochs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override any setting, e.g. {set_example} (repeatable; see {keys_file} for the keys)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue an existing experiment folder: skip finished folds, retrain unfinished ones")
    group.add_argument("--overwrite", action="store_true", help="delete the requested folds' old results first")
    add_accept_changed(parser, ACCEPTABLE, "--resume: continue the experiment")
    parser.add_argument("--no-progress", action="store_true",
                        help="no per-batch progress bar (on a terminal) or per-epoch stderr line (elsewhere); "
                             "the per-epoch log lines remain")
    return parser


def apply_training_args(experiment: dict, args) -> dict:
    """The experiment with --epochs and every --set applied (in place; returns it)."""
    if args.epochs is not None:
        experiment["epochs"] = args.epochs
    return apply_overrides(experiment, args.set)


# ----------------------------------------------------------------------------- the error contract

def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def report_error(message, prog=None) -> None:
    """Print `prog: error: message` on one line to stderr (the format argparse uses for bad options)."""
    prog = prog or Path(sys.argv[0]).name
    message = re.sub(r"^([\w.-]+\.py: )?error: ", "", _one_line(message))  # a prefix of older messages
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


def run(main, *args, after=None) -> None:
    """Run a script's `main` and exit: user errors as one line and status 2, bugs with their traceback.

    User errors are `src.errors.UserError` (which includes `AudioReadError`),
    a missing file (`FileNotFoundError`) and a `SystemExit` carrying a message
    (older `raise SystemExit("...")` sites). `main`'s return value is the exit
    status when it is an int (0 otherwise); `after` runs once main returned.
    """
    try:
        status = main(*args)
        if after is not None:
            after()
    except (UserError, FileNotFoundError) as exc:
        report_error(exc)
        sys.exit(2)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # SystemExit("message"); argparse's own exits carry an int
            report_error(exc.code)
            sys.exit(2)
        raise
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)
