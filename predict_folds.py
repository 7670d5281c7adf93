"""Predict with every trained fold model of an experiment: out-of-fold and test.

    python predict_folds.py --experiment corr_noisy_007
    python predict_folds.py --experiment demo --data-dir data/demo

For each fold model found in <data>/experiments/NAME/fold_K/ (any subset of
folds; the script says which it found):
  - out-of-fold: the model predicts the curated clips of its own validation fold (every clip of
    train_folds.csv). The CV lwlrap is scored two ways, both printed and recorded:
      "lwlrap"               on the experiment's corrected labels (the clips its corrections keep);
      "lwlrap_given_labels"  on train_curated.csv's labels as given, over every curated clip: how
                             the 2019 CV figure (~0.887) was scored, so this one compares with it;
  - test: the model predicts every test clip (sample_submission.csv order).
Clips are cut into 128 x 256 tiles (padded evenly on both sides to the tile
grid); the tile probabilities are kept (for stacking) and averaged into clip
probabilities. The tile step comes from the experiment: `tile_step` for
out-of-fold and `test_tile_step` for test predictions (the 2019 members: 64 and
128 frames, as the final submission ran); both are recorded in val_lwlrap.json.
Fold test predictions are combined by geometric mean. Precision (src/precision.py): out-of-fold
predictions run in each model's own (--amp model: its training precision on this device, fp32 on
a CPU), test predictions in fp32 (--test-amp none), as the 2019 kernel made them; both are
recorded in val_lwlrap.json. Output tree
(src/predict/prediction_sets.py):

  <data>/predictions/NAME/oof/             probs.csv, tiles.npy, offsets.npy
  <data>/predictions/NAME/test/            geometric mean over folds (+ tiles)
  <data>/predictions/NAME/test/fold_K/     each fold model's test predictions
  <data>/predictions/NAME/val_lwlrap.json  overall, per-fold and per-class CV lwlrap
  <data>/predictions/NAME/per_class_lwlrap.png

The tree is written into a hidden folder and swapped in whole at the end: a run
that fails leaves the previous predictions untouched. Folds whose training has
not finished (no done.json) are refused unless --allow-unfinished is given.
"""
import argparse
import json

import numpy as np

from src.cli import run
from src.config import resolve_data_dir
from src.data.corrections import read_curated
from src.data.sources import load_training_data
from src.errors import BadSetting, InputFileNotFound
from src.experiments import complete_config, data_settings
from src.audio.cache import load_features
from src.data.labels import targets_matrix
from src.metrics import lwlrap, oof_report
from src.predict.prediction_sets import PredictionSet, clip_means, geometric_mean, predictions_dir, write_prediction_tree
from src.predict.predictor import AMP_CHOICES, Predictor, load_fold_models, tile_steps
from src.data.layout import read_test_fnames
from src.train.fit import check_folds_finished, experiments_dir, set_cpu_threads
from src.utils import fix_malloc_mmap_threshold, pick_device


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", required=True, metavar="NAME", help="experiment folder name under "
                        "<data>/experiments/ (as given to train_folds.py)")
    parser.add_argument("--data-dir", help="data root (default: $FSAT_DATA_DIR or ./data)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', ...")
    parser.add_argument("--step", type=int, help="tile step in frames for both out-of-fold and test predictions "
                        "(default: the experiment's tile_step for out-of-fold, test_tile_step for test; 64 and "
                        "128 for the 2019 members)")
    parser.add_argument("--test-step", type=int, help="tile step in frames for test predictions only (overrides "
                        "--step and test_tile_step)")
    parser.add_argument("--batch-size", type=int, default=128, help="tiles per batch (default 128; a CPU forward "
                        "pass takes 16 of them at a time)")
    # The prediction sets on disk are the reproduction's record (CV scores, stacking inputs, the blend):
    # by default each model predicts in the precision it was trained in (fp32 on CPU), not in the
    # faster CPU bf16 that tag.py uses, which can swap near-tied ranks on small validation folds.
    parser.add_argument("--amp", choices=("model",) + AMP_CHOICES, default="model",
                        help="precision of the out-of-fold predictions: 'model' (default) = each model's own (its "
                        "training precision on this device: the card's bf16/fp16 on CUDA, fp32 on CPU); 'auto' = "
                        "the card's on CUDA, bf16 autocast on a CPU with native bf16 (AVX512-BF16, AMX), as "
                        "tag.py; 'none' = fp32; 'bf16' (never on a GPU without native bf16); 'fp16' (CUDA)")
    parser.add_argument("--test-amp", choices=("model",) + AMP_CHOICES, default="none",
                        help="precision of the test predictions: 'none' (default) = fp32, as the 2019 kernel made "
                        "every test prediction of the submission; otherwise as --amp")
    parser.add_argument("--workers", type=int, help="processes for computing uncached features (default: all cores)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-test", action="store_true", help="only out-of-fold predictions")
    parser.add_argument("--allow-unfinished", action="store_true", help="also predict with folds whose training "
                        "has not finished (no done.json), using their best checkpoint so far")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    fix_malloc_mmap_threshold()  # else memory grows with the clips predicted (src/utils.py)
    data_dir = resolve_data_dir(args.data_dir)
    exp_dir = experiments_dir(data_dir, args.experiment)
    config_path = exp_dir / "config.json"
    if not config_path.is_file():
        raise InputFileNotFound(f"{config_path} not found: train it first (python train_folds.py --experiment "
                         f"{args.experiment} --data-dir {data_dir})")
    record = json.loads(config_path.read_text())
    experiment, classes = complete_config(record["experiment"]), record["classes"]  # older runs: BASE fills in
    try:
        step, test_step = tile_steps(experiment, args.step, args.test_step)
    except ValueError as exc:
        raise BadSetting(f"{args.experiment}: {exc}") from exc
    device = pick_device(args.device)
    # None: the Predictor keeps each model's own precision
    amp, test_amp = (None if a == "model" else a for a in (args.amp, args.test_amp))
    set_cpu_threads(device, 0, args.threads)
    check_folds_finished(exp_dir, args.allow_unfinished)
    models = load_fold_models(exp_dir, device)
    folds = sorted(models)
    precision = {"oof": Predictor([models[f] for f in folds], amp=amp).precision,
                 "test": None if args.no_test else Predictor([models[f] for f in folds], amp=test_amp).precision}
    print(f"{args.experiment}: found fold models {folds} in {exp_dir}; predicting on {device} "
          f"(out-of-fold {precision['oof']}" + ("" if args.no_test else f", test {precision['test']}") + ")")
    tile_size = experiment["crop_size"]
    out_dir = predictions_dir(data_dir, args.experiment)

    # Out-of-fold: each curated clip predicted by the model that did not train on it. Every clip of
    # train_folds.csv gets a prediction, also those this experiment's curated corrections removed:
    # the stacking's labels (another corrections version) may keep them. The CV lwlrap is scored
    # against the experiment's own corrected labels.
    data = load_training_data(data_dir, curated_corrections=None, workers=args.workers)
    if data.classes != classes:
        raise BadSetting(f"class list of {data_dir} differs from the one {args.experiment} was trained on")
    labelled = read_curated(data_dir, classes, data_settings(experiment)["curated_corrections"]).kept
    truth_of = dict(zip(labelled["fname"], targets_matrix(labelled["labels"].tolist(), classes)))

    def scored(fnames, probs):
        """(truth, probs) of the clips the experiment's labels keep."""
        rows = [i for i, f in enumerate(fnames) if f in truth_of]
        return np.stack([truth_of[fnames[i]] for i in rows]), probs[rows]

    parts, fold_scores, given_fold_scores = [], {}, {}
    for fold in folds:
        index = np.flatnonzero(data.folds == fold)
        part = data.curated.subset(index)
        predictor = Predictor(models[fold], tile_size, step, args.batch_size, amp=amp)
        tiles, offsets, clips = predictor.predict(part.specs)
        fold_scores[fold] = lwlrap(*scored(part.fnames, clips[0]))
        given_fold_scores[fold] = lwlrap(part.targets, clips[0])  # train_curated.csv's labels as given
        print(f"  fold {fold}: {len(index)} clips, val lwlrap {fold_scores[fold]:.4f} (labels as given "
              f"{given_fold_scores[fold]:.4f})")
        parts.append((index, tiles[0], offsets))
    oof = _concat_parts(parts, data.curated.fnames, classes)

    truth, probs = scored(oof.fnames, oof.probs)
    given = data.curated.targets[np.concatenate([p[0] for p in parts])]  # oof order, every curated clip
    report = {"experiment": args.experiment, "folds": folds, "oof_step": step, "precision": precision,
              "test_step": None if args.no_test else test_step, **oof_report(truth, probs, classes, fold_scores),
              "lwlrap_given_labels": lwlrap(given, oof.probs), "clips_given_labels": len(given),
              "fold_lwlrap_given_labels": {str(f): float(v) for f, v in given_fold_scores.items()},
              "labels": {"lwlrap": f"the experiment's corrected labels ({len(truth)} clips its corrections keep)",
                         "lwlrap_given_labels": f"train_curated.csv's labels as given, every curated clip "
                                                f"({len(given)}): how the 2019 CV figure was scored"}}
    overall = report["lwlrap"]
    print(f"{args.experiment}: out-of-fold lwlrap {overall:.4f} over {len(truth)} clips on its corrected labels; "
          f"{report['lwlrap_given_labels']:.4f} over {len(given)} clips on the labels as given (as 2019 scored "
          f"its CV) (folds {folds}, tile step {step})")

    test_sets = {}
    if not args.no_test:
        fnames = read_test_fnames(data_dir)
        features = load_features(fnames, data_dir / "test", data_dir / "features", name="test",
                                 workers=args.workers)
        predictor = Predictor([models[f] for f in folds], tile_size, test_step, args.batch_size,
                              amp=test_amp)
        tiles, offsets, clips = predictor.predict(features.specs)
        for fold, fold_tiles, fold_clips in zip(folds, tiles, clips):
            test_sets[f"test/fold_{fold}"] = PredictionSet(fnames, classes, fold_clips, fold_tiles, offsets)
        test_sets["test"] = PredictionSet(fnames, classes, geometric_mean(clips), geometric_mean(tiles), offsets)
        print(f"{args.experiment}: test predictions for {len(fnames)} clips (tile step {test_step}), geometric "
              f"mean of folds {folds}")

    # All or nothing: a failure (a full disk, a kill) leaves the previous predictions as they were, never a mix.
    write_prediction_tree(out_dir, {"oof": oof, **test_sets}, report,
                          title=f"{args.experiment}: out-of-fold lwlrap {overall:.4f}")
    print(f"{args.experiment}: predictions written to {out_dir}")
    return report


def _concat_parts(parts, fnames, classes) -> PredictionSet:
    """Join per-fold (clip index, tiles, offsets) into one set, in the order of the parts."""
    index = np.concatenate([p[0] for p in parts])
    tiles = np.concatenate([p[1] for p in parts])
    offsets = [np.asarray([0])]
    for _, _, part_offsets in parts:
        offsets.append(part_offsets[1:] + offsets[-1][-1])
    offsets = np.concatenate(offsets)
    return PredictionSet([fnames[i] for i in index], classes, clip_means(tiles, offsets), tiles, offsets)


if __name__ == "__main__":
    run(main)
