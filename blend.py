"""Blend experiments into a Kaggle submission: weighted geometric mean of their test predictions.

    python blend.py --experiments auxiliary_016 auxiliary_019 corr_noisy_003 corr_noisy_004 \\
        corr_noisy_007 corrections_002 corrections_003 \\
        stacking_008_fcnet_43040 stacking_008_fcnet_45041 stacking_008_fcnet_50013
    python blend.py --experiments demo demo_skip --weights 1 2 --data-dir data/demo
    python blend.py --ensemble ensemble_2019          # the same ten, by name (src/ensembles.py)
    python blend.py --ensemble demo --data-dir data/demo

Each experiment NAME is read from <data-dir>/predictions/NAME/test/probs.csv (written
by predict_folds.py for first-level experiments and by stacking_train.py for
second-level ones; either is already the geometric mean of its fold models). This
is the original's final step: the geometric mean of the seven first-level
experiments and the three stacking models.

The submission has sample_submission.csv's header (fname + classes in Kaggle's
order) and its test files in its row order, each exactly once. Predictions whose
class or file lists differ are refused, naming the experiment and the difference.

When every experiment also has out-of-fold predictions (predictions/NAME/oof/),
they are blended the same way and the blended CV lwlrap is printed next to each
experiment's own, scored against the curated labels (train_folds.csv, else
train_curated.csv) with --corrections applied. blend.json beside the submission
records experiments, weights and scores. A data set without test clips (no
sample_submission.csv rows, and no test/ folder or no audio in it) has no
submission: the experiments' out-of-fold predictions are blended and scored, and
blend.json is written (its "submission" null).
While it runs, it holds a lock beside the
submission (.submission.csv.lock, src/locks.py): a second blend to the same file stops
at once, naming the first one's pid.

--ensemble NAME takes the members and weights of a named ensemble
(src/ensembles.py) and checks that every first-level member's test predictions
were made with the ensemble's test tile step (val_lwlrap.json's test_step).
"""
import argparse
import json
from pathlib import Path

from src.predict.blending import blend, cv_scores, has_split, load_experiments
from src.cli import run
from src.config import resolve_data_dir
from src.data.corrections import cli_setting, read_curated
from src.data.layout import no_test_clips_note, read_classes, read_sample_submission, read_test_fnames
from src.ensembles import ENSEMBLES, get_ensemble
from src.locks import exclusive_lock, lock_file_beside
from src.predict.prediction_sets import check_finite, predictions_dir
from src.files import write_csv_atomic, write_json_atomic


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--experiments", nargs="+", metavar="NAME",
                      help="experiments to blend: folders under <data-dir>/predictions/ "
                           "(first-level or stacking alike)")
    what.add_argument("--ensemble", choices=sorted(ENSEMBLES),
                      help="a named ensemble (src/ensembles.py): its members, weights and test tile step")
    parser.add_argument("--weights", nargs="+", type=float, metavar="W",
                        help="one non-negative weight per experiment, in the same order (default: all 1); "
                             "they are normalised to sum to 1, so 1 1 2 == 0.25 0.25 0.5")
    parser.add_argument("--data-dir", help="data root with sample_submission.csv and predictions/ "
                                           "(default: $FSAT_DATA_DIR or ./data)")
    parser.add_argument("--corrections", metavar="JSON|NAME",
                        help="curated label corrections (fname -> 'A,B' or 'remove') applied to the labels the "
                             "CV lwlrap is scored against: a JSON file (e.g. <data-dir>/corrections.json as used in "
                             "training) or a shipped version name (corrections/README.md, e.g. curated_final); "
                             "default: none, the labels as given")
    parser.add_argument("--out", metavar="CSV",
                        help="submission file (default: <data-dir>/predictions/blend/submission.csv); "
                             "blend.json is written beside it")
    args = parser.parse_args(argv)
    if args.ensemble:
        if args.weights is not None:
            parser.error("--weights: an --ensemble brings its own weights (src/ensembles.py)")
        spec = get_ensemble(args.ensemble)
        args.experiments, args.weights, args.test_tile_step = spec["members"], spec["weights"], spec["test_tile_step"]
    else:
        args.test_tile_step = None
    if args.weights is not None:
        if len(args.weights) != len(args.experiments):
            parser.error(f"--weights: got {len(args.weights)} weight(s) for {len(args.experiments)} experiment(s)")
        if any(w < 0 for w in args.weights) or sum(args.weights) <= 0:
            parser.error(f"--weights must be non-negative with a positive sum, got {args.weights}")
    return args


def blend_experiments(args, out: Path):
    data_dir = resolve_data_dir(args.data_dir)
    names, weights = args.experiments, args.weights
    if args.test_tile_step is not None:
        check_test_steps(data_dir, names, args.test_tile_step, args.ensemble)

    # Test: blend in sample_submission's row and column order (a user's own data set without
    # one gets the first experiment's file order and the data dir's class list). A data set
    # without test clips has no submission: the blended CV score is all there is.
    blended = None
    if read_test_fnames(data_dir):
        test = load_experiments(data_dir, names, "test")
        sample = data_dir / "sample_submission.csv"
        if sample.is_file():
            (fnames, classes), reference = read_sample_submission(sample), str(sample)
        else:
            fnames, classes = next(iter(test.values())).fnames, read_classes(data_dir)
            reference = f"the class list of {data_dir}"
            print(f"{sample} not found: rows in {names[0]!r}'s order")
        blended = blend(test, weights, fnames, classes, what="test predictions", reference=reference)
    else:
        print(no_test_clips_note(data_dir, "no submission, the out-of-fold blend only"))
        fnames, classes = [], read_classes(data_dir)
        load_experiments(data_dir, names, "oof")  # every experiment needs them then: missing ones are named

    # Out-of-fold: only when every experiment has them (a CV score of part of the blend means
    # nothing). Scored before anything is written, so a refused blend leaves no files behind.
    scores = labels = None
    without = [n for n in names if not has_split(data_dir, n, "oof")]
    if not without:
        labels = read_curated(data_dir, classes, cli_setting(args.corrections), need_folds=False)
        _, scores = cv_scores(load_experiments(data_dir, names, "oof"), labels, weights, classes)

    weights_text = " ".join(f"{w:g}" for w in weights) if weights else "equal"
    record = {"ensemble": args.ensemble, "experiments": names, "weights": weights or [1.0] * len(names),
              "submission": None, "n_test_clips": len(fnames), "cv": None}
    if blended is not None:
        write_submission(blended, out)
        record["submission"] = str(out)
        print(f"Blended {len(names)} experiment(s) (weights {weights_text}) -> {out} "
              f"({len(fnames)} clips x {len(classes)} classes)")
    if scores is None:
        print(f"No blended CV score: no out-of-fold predictions for {without}")
    else:
        corrections = str(labels.corrections.path) if labels.corrections.path else None
        record["cv"] = {"labels": str(labels.source), "corrections": corrections, **scores}
        notes = [str(labels.source)] + ([f"corrections {corrections}"] if corrections else []) \
            + ([f"{scores['n_skipped']} removed by corrections"] if scores["n_skipped"] else [])
        print(f"CV lwlrap on {scores['n_clips']} curated clips ({', '.join(notes)}):")
        width = max(len(n) for n in [*names, "blend"])
        for name, score in [*scores["experiments"].items(), ("blend", scores["blend"])]:
            print(f"  {name:<{width}}  {score:.6f}")
    write_json_atomic(record, out.with_name("blend.json"))
    return record


def write_submission(blended, out):
    check_finite(blended.probs, blended.fnames, out)
    write_csv_atomic(blended.to_frame(), out, index=False, float_format="%.7g")


def check_test_steps(data_dir, names, step, ensemble):
    """Refuse first-level predictions made with another test tile step than the ensemble's.

    predict_folds.py records its test step in val_lwlrap.json; stacking reports (level 2) have none.
    """
    for name in names:
        report = predictions_dir(data_dir, name) / "val_lwlrap.json"
        recorded = json.loads(report.read_text()).get("test_step") if report.is_file() else None
        if recorded is not None and int(recorded) != int(step):
            raise ValueError(f"{report}: {name!r} predicted its test clips with tiles every {recorded} frames; "
                             f"ensemble {ensemble!r} uses {step} (rerun `python predict_folds.py --experiment "
                             f"{name} --data-dir {data_dir} --test-step {step}`)")


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out) if args.out else resolve_data_dir(args.data_dir) / "predictions" / "blend" / "submission.csv"
    try:
        # One blend at a time per submission: two would each write the submission and blend.json, and could
        # leave one's submission beside the other's record. A second run stops at once, naming the first's pid.
        with exclusive_lock(lock_file_beside(out), f"submission {out} (and its blend.json)"):
            return blend_experiments(args, out)
    except (FileNotFoundError, ValueError) as exc:
        # Data problems (missing experiment, mismatched predictions): a message, not a traceback.
        raise SystemExit(f"blend.py: error: {exc}") from exc


if __name__ == "__main__":
    run(main)
