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
      "class_mean_lwlrap"    the per-class scores (corrected labels) averaged with each class counting
                             once: lwlrap weighs a class by its clips, and so hides what rare ones get;
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
  <data>/predictions/NAME/val_lwlrap.json  overall, class-averaged, per-fold and per-class CV lwlrap
  <data>/predictions/NAME/per_class_lwlrap.png
  <data>/predictions/NAME/thresholds.json  one yes/no threshold per class, chosen on the out-of-fold
                                           predictions against the corrected labels (src/thresholds.py:
                                           best F1 per class; classes with < 5 positives share the
                                           best micro-F1 threshold), with the out-of-fold F1 they give

A data set without test clips (no sample_submission.csv rows, and no test/
folder or no audio in it; src/data/layout.py) gets out-of-fold predictions only,
as with --no-test, and the script says so in one line.

The tree is written into a hidden folder and swapped in whole at the end: a run
that fails leaves the previous predictions untouched. While it runs, it holds a lock
(<data>/predictions/.NAME.lock, src/locks.py): a second run on the same experiment
stops at once, naming the first one's pid. Folds whose training has
not finished (no done.json) are refused unless --allow-unfinished is given.
Models made from other data than the data dir now holds are refused too, naming
the value config.json recorded and the current one: another class list, audio
settings, curated corrections file (sha256) or fold assignment of train_folds.csv
(--accept-changed ITEM accepts all but the class list; src/provenance.py).
"""
import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from src.cli import run
from src.config import AUDIO, resolve_data_dir
from src.data.corrections import read_curated
from src.data.sources import load_training_data
from src.errors import BadSetting
from src.experiments import data_settings
from src.audio.cache import load_features
from src.data.labels import targets_matrix
from src.metrics import lwlrap, oof_report
from src.predict.prediction_sets import PredictionSet, clip_means, geometric_mean, predictions_dir, write_prediction_tree
from src.predict.predictor import AMP_CHOICES, Predictor, load_fold_models, tile_steps
from src.thresholds import THRESHOLDS_FILE, choose_thresholds, thresholds_record
from src.data.layout import no_test_clips_note, read_classes, read_test_fnames
from src.experiment_folder import check_folds_finished, experiments_dir, read_experiment_record
from src.locks import exclusive_lock, lock_file_beside
from src.provenance import add_accept_changed, check_unchanged, fold_assignment
from src.runtime import fix_malloc_mmap_threshold, pick_device, set_cpu_threads


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
    parser.add_argument("--no-test", action="store_true", help="only out-of-fold predictions (also what a data set "
                        "without test clips gets: no sample_submission.csv rows and no audio in test/)")
    parser.add_argument("--no-progress", action="store_true", help="no bar of clips done (nor, when stderr is "
                        "not a terminal, the line per stage)")
    parser.add_argument("--allow-unfinished", action="store_true", help="also predict with folds whose training "
                        "has not finished (no done.json), using their best checkpoint so far")
    add_accept_changed(parser, ("audio", "corrections", "folds"), "predict with the fold models")
    return parser.parse_args(argv)


@dataclass
class FoldModels:
    """An experiment's settings and trained fold models, with the tile steps and precisions to predict in."""
    name: str
    experiment: dict
    classes: list
    models: dict  # {fold: argus model}
    step: int
    test_step: int
    amp: Optional[str]  # None: each model's own precision
    test_amp: Optional[str]
    accepted_changes: list = field(default_factory=list)  # what changed since training, accepted deliberately

    @property
    def folds(self) -> list:
        return sorted(self.models)

    def predictor(self, folds, step, amp, batch_size=128) -> Predictor:
        return Predictor([self.models[f] for f in folds], self.experiment["crop_size"], step, batch_size, amp=amp)


def main(argv=None):
    args = parse_args(argv)
    fix_malloc_mmap_threshold()  # else memory grows with the clips predicted (src/runtime.py)
    data_dir = resolve_data_dir(args.data_dir)
    out_dir = predictions_dir(data_dir, args.experiment)
    # One run at a time per prediction tree: a second one stops at once, naming the first one's pid.
    with exclusive_lock(lock_file_beside(out_dir), f"predictions {out_dir}"):
        return predict_experiment(args, data_dir, out_dir)


def predict_experiment(args, data_dir, out_dir) -> dict:
    """Out-of-fold and test predictions of the experiment's fold models, written to `out_dir` whole."""
    device = pick_device(args.device)
    set_cpu_threads(device, 0, args.threads)
    run = load_fold_models_of(args, data_dir, device)
    test_fnames = [] if args.no_test else read_test_fnames(data_dir)
    if not (args.no_test or test_fnames):
        print(f"{run.name}: {no_test_clips_note(data_dir)}")
    with_test = bool(test_fnames)
    precision = {"oof": run.predictor(run.folds, run.step, run.amp).precision,
                 "test": run.predictor(run.folds, run.test_step, run.test_amp).precision if with_test else None}
    print(f"{run.name}: found fold models {run.folds} in {experiments_dir(data_dir, run.name)}; predicting on "
          f"{device} (out-of-fold {precision['oof']}" + (f", test {precision['test']}" if with_test else "") + ")")

    oof, report, (truth, probs) = predict_out_of_fold(run, data_dir, args)
    report.update(precision=precision, test_step=run.test_step if with_test else None)
    if run.accepted_changes:
        report["accepted_changes"] = run.accepted_changes
    thresholds = thresholds_record(run.classes, choose_thresholds(truth, probs), truth, probs)
    print(f"{run.name}: yes/no thresholds per class, out-of-fold F1 micro {thresholds['oof_f1']['micro']:.4f}"
          f" macro {thresholds['oof_f1']['macro']:.4f}")
    test_sets = predict_test(run, data_dir, test_fnames, args) if with_test else {}

    # All or nothing: a failure (a full disk, a kill) leaves the previous predictions as they were, never a mix.
    write_prediction_tree(out_dir, {"oof": oof, **test_sets}, report,
                          title=f"{run.name}: out-of-fold lwlrap {report['lwlrap']:.4f}",
                          records={THRESHOLDS_FILE: thresholds})
    print(f"{run.name}: predictions written to {out_dir}")
    return report


def load_fold_models_of(args, data_dir, device) -> FoldModels:
    """The experiment's record (older runs: BASE fills in the settings they did not record), its tile
    steps and precisions as the arguments set them, and its fold models (finished ones unless allowed)."""
    exp_dir = experiments_dir(data_dir, args.experiment)
    record = read_experiment_record(exp_dir)
    try:
        step, test_step = tile_steps(record["experiment"], args.step, args.test_step)
    except ValueError as exc:
        raise BadSetting(f"{args.experiment}: {exc}") from exc
    check_folds_finished(exp_dir, args.allow_unfinished)
    accepted = check_provenance(record, exp_dir, data_dir, args.accept_changed)
    amp, test_amp = (None if a == "model" else a for a in (args.amp, args.test_amp))
    return FoldModels(args.experiment, record["experiment"], record["classes"], load_fold_models(exp_dir, device),
                      step, test_step, amp, test_amp, accepted)


def check_provenance(record, exp_dir, data_dir, accepted) -> list:
    """Refuse to predict with models made from other data than the data dir now holds (src/provenance.py):
    another class list, other audio settings (features), another curated corrections file (the labels the
    CV is scored on) or another fold assignment (the out-of-fold clips would include training clips)."""
    classes = read_classes(data_dir)
    corrections = read_curated(data_dir, classes, data_settings(record["experiment"])["curated_corrections"])
    current = {"classes": classes, "audio_config": AUDIO.to_dict(), "corrections": {"curated": corrections.record()},
               "fold_assignment": fold_assignment(data_dir)}
    return check_unchanged(record, current, Path(exp_dir) / "config.json",
                           items=("classes", "audio", "corrections", "folds"), accepted=accepted,
                           remedy=f"train {record.get('name', Path(exp_dir).name)} again (train_folds.py --overwrite)")


def predict_out_of_fold(run: FoldModels, data_dir, args) -> tuple:
    """(oof PredictionSet, CV report, (truth, probs) of the clips the experiment's labels keep).

    Each curated clip is predicted by the model that did not train on it. Every clip of
    train_folds.csv gets a prediction, also those this experiment's curated corrections removed:
    the stacking's labels (another corrections version) may keep them. The CV lwlrap is scored
    against the experiment's own corrected labels, and against the labels as given."""
    classes = run.classes
    data = load_training_data(data_dir, curated_corrections=None, workers=args.workers)
    if data.classes != classes:
        raise BadSetting(f"class list of {data_dir} differs from the one {run.name} was trained on")
    labelled = read_curated(data_dir, classes, data_settings(run.experiment)["curated_corrections"]).kept
    truth_of = dict(zip(labelled["fname"], targets_matrix(labelled["labels"].tolist(), classes)))

    def scored(fnames, probs):
        """(truth, probs) of the clips the experiment's labels keep."""
        rows = [i for i, f in enumerate(fnames) if f in truth_of]
        return np.stack([truth_of[fnames[i]] for i in rows]), probs[rows]

    parts, fold_scores, given_fold_scores = [], {}, {}
    for fold in run.folds:
        index = np.flatnonzero(data.folds == fold)
        part = data.curated.subset(index)
        predictor = run.predictor([fold], run.step, run.amp, args.batch_size)
        tiles, offsets, clips = predictor.predict(part.specs, progress=None if args.no_progress else
                                                  f"fold {fold} out-of-fold")
        fold_scores[fold] = lwlrap(*scored(part.fnames, clips[0]))
        given_fold_scores[fold] = lwlrap(part.targets, clips[0])  # train_curated.csv's labels as given
        print(f"  fold {fold}: {len(index)} clips, val lwlrap {fold_scores[fold]:.4f} (labels as given "
              f"{given_fold_scores[fold]:.4f})")
        parts.append((index, tiles[0], offsets))
    oof = _concat_parts(parts, data.curated.fnames, classes)

    truth, probs = scored(oof.fnames, oof.probs)
    given = data.curated.targets[np.concatenate([p[0] for p in parts])]  # oof order, every curated clip
    report = {"experiment": run.name, "folds": run.folds, "oof_step": run.step,
              **oof_report(truth, probs, classes, fold_scores),
              "lwlrap_given_labels": lwlrap(given, oof.probs), "clips_given_labels": len(given),
              "fold_lwlrap_given_labels": {str(f): float(v) for f, v in given_fold_scores.items()},
              "labels": {"lwlrap": f"the experiment's corrected labels ({len(truth)} clips its corrections keep)",
                         "lwlrap_given_labels": f"train_curated.csv's labels as given, every curated clip "
                                                f"({len(given)}): how the 2019 CV figure was scored"}}
    print(f"{run.name}: out-of-fold lwlrap {report['lwlrap']:.4f} over {len(truth)} clips on its corrected "
          f"labels; {report['lwlrap_given_labels']:.4f} over {len(given)} clips on the labels as given (as 2019 "
          f"scored its CV) (folds {run.folds}, tile step {run.step}); averaged over classes, each counting once: "
          f"{report['class_mean_lwlrap']:.4f}")
    return oof, report, (truth, probs)


def predict_test(run: FoldModels, data_dir, fnames, args) -> dict:
    """{"test/fold_K": each fold model's test predictions of clips `fnames`, "test": their geometric mean}."""
    features = load_features(fnames, data_dir / "test", data_dir / "features", name="test", workers=args.workers)
    predictor = run.predictor(run.folds, run.test_step, run.test_amp, args.batch_size)
    tiles, offsets, clips = predictor.predict(features.specs, progress=None if args.no_progress else "test")
    sets = {f"test/fold_{fold}": PredictionSet(fnames, run.classes, fold_clips, fold_tiles, offsets)
            for fold, fold_tiles, fold_clips in zip(run.folds, tiles, clips)}
    sets["test"] = PredictionSet(fnames, run.classes, geometric_mean(clips), geometric_mean(tiles), offsets)
    print(f"{run.name}: test predictions for {len(fnames)} clips (tile step {run.test_step}), geometric "
          f"mean of folds {run.folds}")
    return sets


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
