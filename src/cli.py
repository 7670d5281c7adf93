"""Command-line options shared by the two training scripts (train_folds.py, stacking_train.py).

Both train one model per fold of a named experiment and take the same run options;
each script passes its own experiment table and the help texts that differ.
"""
import argparse

from src.overrides import apply_overrides


def add_training_args(parser: argparse.ArgumentParser, experiments, *, kind="experiment", folds_help="",
                      workers_default=None, workers_help, threads_help, set_example, keys_file):
    """--experiment NAME (one of `experiments`), --folds, --data-dir, --device, --workers, --threads,
    --seed, --epochs, --set KEY=VALUE, --resume | --overwrite, --no-progress."""
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
    parser.add_argument("--no-progress", action="store_true", help="no per-batch progress bar (per-epoch lines only)")
    return parser


def apply_training_args(experiment: dict, args) -> dict:
    """The experiment with --epochs and every --set applied (in place; returns it)."""
    if args.epochs is not None:
        experiment["epochs"] = args.epochs
    return apply_overrides(experiment, args.set)
