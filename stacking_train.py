"""Train and predict a second-level (stacking) model over first-level predictions.

    python stacking_train.py --experiment stacking_008_fcnet_43040
    python stacking_train.py --experiment stacking_demo --data-dir data/demo --threads 1
    python stacking_train.py --experiment stacking_008_fcnet_45041 --folds 0 1 --set optimizer.lr=1e-4

Needs, for every input experiment NAME of the stacking experiment (src/stacking/experiments.py),
the per-tile predictions written by `predict_folds.py --experiment NAME`:

  <data>/predictions/NAME/oof/    out-of-fold tiles of every curated clip (the training inputs)
  <data>/predictions/NAME/test/   test clip probabilities: per fold model the mean over tiles,
                                  then the geometric mean over NAME's fold models

A curated clip's features are its out-of-fold tile probabilities of all input
experiments side by side, averaged over tiles (validation: all tiles; training:
maybe a random contiguous run, then maybe a random subset of it, two independent
coin flips). A test clip's features are the input experiments' test clip
probabilities side by side, as in the original. FCNet is trained with the first level's machinery (argus
FreesoundModel, BCE, Adam, reduce-on-plateau, early stopping and best checkpoint
on val_lwlrap) on the same folds (train_folds.csv), one model per fold:

  <data>/experiments/STACK/fold_K/        model-EPOCH-SCORE.pth, log.csv, log.txt, curves.png, done.json
  <data>/experiments/STACK/config.json    the resolved stacking experiment

An existing experiment folder is never silently overwritten: --resume skips
finished folds and continues unfinished ones, --overwrite starts again. Before
training, what the input experiments' config.json recorded (class list, the fold
assignment of train_folds.csv), and on --resume what this experiment's own recorded
(also its settings and corrections file), is compared with what this run uses: a
change stops it, naming both values, unless --accept-changed ITEM accepts it
(src/provenance.py). Then every fold model found predicts,
in the first level's prediction-set format (so blend.py takes STACK like any
experiment; no tiles):

  <data>/predictions/STACK/oof/           each curated clip predicted by the fold model that did not train on it
  <data>/predictions/STACK/test/          geometric mean over the fold models
  <data>/predictions/STACK/test/fold_K/   fold K's model
  <data>/predictions/STACK/val_lwlrap.json, per_class_lwlrap.png

(written whole or not at all; fold models without done.json are refused unless --allow-unfinished).
A data set without test clips (src/data/layout.py) gets out-of-fold predictions only, as with
--no-test: the inputs' prediction trees then have no test part, and the script says so in one line.
While it runs, it holds locks beside both folders (<data>/experiments/.STACK.lock and
<data>/predictions/.STACK.lock, src/locks.py): a second run of STACK stops at once, naming
the first one's pid.
"""
import argparse
import json
import time

import numpy as np
import torch

from src.train.argus_model import FreesoundModel, argus_params
from src.cli import add_training_args, apply_training_args, run
from src.config import resolve_data_dir
from src.errors import BadSetting
from src.data.layout import choose_folds, no_test_clips_note, read_test_fnames
from src.data.corrections import describe as describe_corrections
from src.data.datasets import RandomSourceDataset, make_loader
from src.metrics import lwlrap, oof_report
from src.predict.prediction_sets import PredictionSet, geometric_mean, predictions_dir, write_prediction_tree
from src.predict.ensemble import predict_features
from src.predict.predictor import load_fold_models
from src.stacking.datasets import StackingDataset, TileSubsetMean
from src.stacking.inputs import StackingData, load_stacking_data
from src.stacking.experiments import BASE as STACKING_BASE, STACKING_EXPERIMENTS, get_stacking_experiment
from src.precision import resolve_precision
from src.provenance import check_unchanged, fold_assignment
from src.experiment_folder import check_folds_finished, experiments_dir
from src.locks import exclusive_lock, lock_file_beside
from src.train.fit import fit_fold, prepare_experiment_dir
from src.runtime import pick_device, seed_everything


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(
        parser, STACKING_EXPERIMENTS, kind="stacking experiment",
        folds_help="; predictions use every fold model found afterwards",
        workers_default=0, workers_help="DataLoader worker processes (default 0: samples are cheap averages, "
                                        "drawn in the main process)",
        threads_help="torch CPU threads (default: torch's choice); 1 is fastest for the small demo net, whose "
                     "matrices are too small to split across cores",
        set_example="--set epoch_size=4096 --set model.dropout=0.2 --set \"inputs=['demo']\"",
        keys_file="src/stacking/experiments.py")
    parser.add_argument("--no-test", action="store_true", help="only out-of-fold predictions (the inputs then "
                        "need no test predictions); also what a data set without test clips gets (no "
                        "sample_submission.csv rows and no audio in test/)")
    parser.add_argument("--allow-unfinished", action="store_true", help="also predict with fold models whose "
                        "training has not finished (no done.json)")
    return parser.parse_args(argv)


def resolve_experiment(args) -> dict:
    experiment = apply_training_args(get_stacking_experiment(args.experiment), args)
    if experiment["epoch_size"] < experiment["batch_size"]:
        raise BadSetting(f"epoch_size {experiment['epoch_size']} is smaller than batch_size "
                         f"{experiment['batch_size']}: an epoch would have no full batch")
    if not experiment["inputs"] or len(set(experiment["inputs"])) != len(experiment["inputs"]):
        raise BadSetting(f"inputs must name distinct first-level experiments, got {experiment['inputs']}")
    return experiment


def train_folds(args, experiment, data: StackingData, device, exp_dir, todo):
    """Train one FCNet per fold of `todo` with the first level's fit_fold (checkpoints, logs, resume)."""
    model_name, model_kwargs = experiment["model"]
    params = argus_params({**experiment, "model": (model_name, {**model_kwargs,
                                                                "in_features": data.stacked.n_features})},
                          len(data.classes), device)
    augment = TileSubsetMean(experiment["run_prob"], experiment["subset_prob"])
    for fold in todo:
        seed_everything(args.seed + fold)
        train_part = StackingDataset(data.stacked, data.targets, np.flatnonzero(data.folds != fold), augment)
        val_part = StackingDataset(data.stacked, data.targets, np.flatnonzero(data.folds == fold))
        # An epoch is `epoch_size` clips drawn at random: the first level's stream, with one source.
        train_dataset = RandomSourceDataset([train_part], [1.0], experiment["epoch_size"])
        train_loader = make_loader(train_dataset, experiment["batch_size"], shuffle=True, workers=args.workers,
                                   seed=args.seed + fold, drop_last=True, persistent=False)
        val_loader = make_loader(val_part, experiment["val_batch_size"], shuffle=False, workers=args.workers,
                                 seed=args.seed + fold, drop_last=False)
        summary = fit_fold(FreesoundModel(params), train_loader, val_loader, exp_dir / f"fold_{fold}",
                           experiment["epochs"], experiment["plateau"], experiment["early_stopping"],
                           title=f"{args.experiment} fold {fold}", progress=not args.no_progress,
                           seed=args.seed + fold, resume=args.resume)
        print(f"fold {fold}: best val_lwlrap {summary['best_val_lwlrap']:.4f} at epoch {summary['best_epoch']} "
              f"({summary['epochs_run']} epochs, {summary['seconds']:.0f} s) -> {exp_dir / f'fold_{fold}'}")


def check_inputs_provenance(data_dir, inputs, record, accepted):
    """The inputs' out-of-fold predictions are out of fold only under the fold assignment their models
    trained on: compare each input experiment's config.json (where there is one) with today's
    train_folds.csv and class list (src/provenance.py)."""
    for name in inputs:
        config = experiments_dir(data_dir, name) / "config.json"
        if config.is_file():  # predictions copied from elsewhere come without their experiment folder
            check_unchanged(json.loads(config.read_text()), record, config, items=("classes", "folds"),
                            accepted=accepted, remedy=f"train {name} again and predict it (predict_folds.py)")


def main(argv=None):
    args = parse_args(argv)
    experiment = resolve_experiment(args)
    data_dir = resolve_data_dir(args.data_dir)
    # One run at a time per stacking experiment: it trains into its experiment folder and then
    # replaces its prediction tree; a second run stops at once, naming the first one's pid.
    exp_dir, out_dir = experiments_dir(data_dir, args.experiment), predictions_dir(data_dir, args.experiment)
    with exclusive_lock(lock_file_beside(exp_dir), f"stacking experiment {exp_dir}"), \
            exclusive_lock(lock_file_beside(out_dir), f"predictions {out_dir}"):
        return train_and_predict(args, experiment, data_dir, exp_dir)


def train_and_predict(args, experiment, data_dir, exp_dir) -> dict:
    """Train the fold models still to train (prepare_experiment_dir decides), then predict with all."""
    device = pick_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with_test = not args.no_test and bool(read_test_fnames(data_dir))
    if not (args.no_test or with_test):
        print(f"{args.experiment}: {no_test_clips_note(data_dir)}")
    data = load_stacking_data(data_dir, experiment, with_test=with_test)
    folds = choose_folds(args.folds, data.folds)

    record = {"name": args.experiment, "level": 2, "experiment": experiment, "classes": data.classes,
              "seed": args.seed, "overrides": args.set, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "precision": resolve_precision(experiment["amp"], device, training=True),
              "corrections": {"curated": data.corrections}, "fold_assignment": fold_assignment(data_dir)}
    check_inputs_provenance(data_dir, experiment["inputs"], record, args.accept_changed)
    todo = prepare_experiment_dir(exp_dir, json.loads(json.dumps(record)), folds, args.resume, args.overwrite,
                                  base=STACKING_BASE, accepted=args.accept_changed)
    print(f"stacking {args.experiment} on {device}: {len(data.fnames)} curated clips, {len(data.stacked.tiles)} "
          f"tiles, {data.stacked.n_features} features = {len(experiment['inputs'])} experiments x "
          f"{len(data.classes)} classes; folds {todo}; output {exp_dir}")
    print("  " + describe_corrections(data.corrections, "curated", "train_folds.csv"))
    print("  inputs' out-of-fold lwlrap: " + ", ".join(f"{n} {s:.4f}" for n, s in data.input_scores.items()))

    train_folds(args, experiment, data, device, exp_dir, todo)
    return predict(args, experiment, data, device, exp_dir)


def predict(args, experiment, data: StackingData, device, exp_dir) -> dict:
    """Out-of-fold and test predictions of every fold model found; writes the prediction tree.

    All or nothing, like predict_folds.py: the tree is written into a hidden folder and
    swapped in whole at the end, so a failure leaves the previous predictions untouched.
    """
    check_folds_finished(exp_dir, args.allow_unfinished)
    models = load_fold_models(exp_dir, device)
    folds = sorted(models)
    batch, classes = experiment["val_batch_size"], data.classes

    features = data.stacked.clip_means()
    oof = np.zeros((len(data.fnames), len(classes)), np.float32)
    fold_scores = {}
    for fold in folds:
        index = np.flatnonzero(data.folds == fold)
        oof[index] = predict_features(models[fold], features[index], batch)
        fold_scores[fold] = lwlrap(data.targets[index], oof[index])
        print(f"  fold {fold}: val lwlrap {fold_scores[fold]:.4f}")
    covered = np.flatnonzero(np.isin(data.folds, folds))
    sets = {"oof": PredictionSet([data.fnames[i] for i in covered], classes, oof[covered])}
    report = {"experiment": args.experiment, "level": 2, "inputs": list(experiment["inputs"]), "folds": folds,
              **oof_report(data.targets[covered], oof[covered], classes, fold_scores),
              "input_lwlrap": data.input_scores}
    overall = report["lwlrap"]
    print(f"{args.experiment}: stacking out-of-fold lwlrap {overall:.4f} over {len(covered)} clips (folds {folds}; "
          f"best input {max(data.input_scores.values()):.4f}); averaged over classes {report['class_mean_lwlrap']:.4f}")

    if data.test is not None:
        test_fnames, test_features = data.test
        fold_probs = []
        for fold in folds:
            probs = predict_features(models[fold], test_features, batch)
            sets[f"test/fold_{fold}"] = PredictionSet(test_fnames, classes, probs)
            fold_probs.append(probs)
        sets["test"] = PredictionSet(test_fnames, classes, geometric_mean(fold_probs))
        print(f"{args.experiment}: test predictions for {len(test_fnames)} clips, geometric mean of folds {folds}")

    out_dir = predictions_dir(resolve_data_dir(args.data_dir), args.experiment)
    write_prediction_tree(out_dir, sets, report, title=f"{args.experiment}: out-of-fold lwlrap {overall:.4f}")
    print(f"{args.experiment}: predictions written to {out_dir}")
    return report


if __name__ == "__main__":
    run(main)
