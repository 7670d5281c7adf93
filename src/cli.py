"""Command-line helpers: the error contract of every script, and the training scripts' shared options.

`run(main)` is the last line of every script: a user error (missing file, bad
CSV, bad audio, bad setting, a full disk or read-only folder) becomes one line
`script.py: error: ...` and exit status 2; Ctrl-C (SIGINT) and SIGTERM become
one line saying what was kept and the command that continues, and exit status
130 / 143 (128 + the signal's number, as a shell reports a killed process);
anything else keeps its traceback.

`add_training_args` / `apply_training_args` are the run options of the two
training scripts (train_folds.py, stacking_train.py): both train one model per
fold of a named experiment; each script passes its own experiment table and the
help texts that differ.
"""
import argparse
import errno
import logging
import os
import re
import shlex
import signal
import sys
from pathlib import Path

from src.errors import WRITE_ERRNOS, UserError
from src.overrides import apply_overrides
from src.provenance import ACCEPTABLE, add_accept_changed

# True once this process's parser has --resume (add_training_args): an interrupted or failed run is then
# continued with --resume instead of by running the same command again.
_resumable = False


def add_training_args(parser: argparse.ArgumentParser, experiments, *, kind="experiment", folds_help="",
                      workers_default=None, workers_help, threads_help, set_example, keys_file):
    """--experiment NAME (one of `experiments`), --folds, --data-dir, --device, --workers, --threads,
    --seed, --epochs, --set KEY=VALUE, --resume | --overwrite, --accept-changed ITEM, --no-progress."""
    global _resumable
    _resumable = True
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that the same clean-up runs
    (the atomic writers' `finally` removes their temporaries; DataLoader workers exit quietly)."""


def _raise_terminated(signum, frame):
    if os.getpid() != _main_pid:
        # A forked worker (process pool, DataLoader) inherited this handler: it dies as SIGTERM says,
        # without a traceback; its parent reports the interruption.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated()


_main_pid = os.getpid()


def continue_command(argv=None) -> str:
    """The shell command that continues this run: the same one, with --resume instead of --overwrite (or
    added) for the training scripts, which continue unfinished folds from their last saved epoch."""
    argv = list(sys.argv if argv is None else argv)
    if _resumable:
        argv = [arg for arg in argv if arg != "--overwrite"]
        if "--resume" not in argv:
            argv.append("--resume")
    return "python " + shlex.join(argv)


def _kept() -> str:
    if _resumable:
        return "finished folds and the last completed epoch of the others are kept"
    return "what was finished before is kept, nothing half-written is left"


def _interrupted_line(exc: KeyboardInterrupt) -> str:
    name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
    return f"interrupted ({name}): {_kept()}; continue with: {continue_command()}"


def _write_error_line(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename is not None else ""
    reason = exc.strerror or os.strerror(exc.errno)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}cannot write: {reason}; {_kept()}; free some space, then continue with: {continue_command()}"
    if exc.errno == errno.EROFS:
        return f"{where}cannot write: {reason}; {_kept()}; write elsewhere, or continue with: {continue_command()}"
    # EACCES / EPERM: a read can be refused too, so the line does not say "write"
    return f"{where}{reason}; {_kept()}; fix its permissions, then continue with: {continue_command()}"


def run(main, *args, after=None) -> None:
    """Run a script's `main` and exit: user errors as one line and status 2, bugs with their traceback.

    User errors are `src.errors.UserError` (which includes `AudioReadError`),
    a missing file (`FileNotFoundError`), a write refused by the machine (an
    OSError of `src.errors.WRITE_ERRNOS`: full disk, quota, read-only folder, no
    permission) and a `SystemExit` carrying a message (older `raise SystemExit("...")`
    sites). Ctrl-C and SIGTERM end the run with one line and status 130 / 143.
    `main`'s return value is the exit status when it is an int (0 otherwise);
    `after` runs once main returned.
    """
    global _main_pid, _resumable
    _main_pid = os.getpid()
    _resumable = False  # until main's parser adds --resume (add_training_args)
    # A log handler whose file is on a full disk would print a traceback for every record; the write that
    # fails is reported below, in one line, when it reaches an output file.
    raise_log_errors, logging.raiseExceptions = logging.raiseExceptions, False
    # SIGINT too: a process started with SIGINT ignored (a background job of a script) would not stop on it.
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_terminated),
                signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    try:
        status = main(*args)
        if after is not None:
            after()
    except (UserError, FileNotFoundError) as exc:
        report_error(exc)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        report_error(_write_error_line(exc))
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print(f"{Path(sys.argv[0]).name}: {_interrupted_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT))
    except SystemExit as exc:
        if isinstance(exc.code, str):  # SystemExit("message"); argparse's own exits carry an int
            report_error(exc.code)
            sys.exit(2)
        raise
    finally:
        logging.raiseExceptions = raise_log_errors
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)
