"""Hand relabelling of low-score curated clips: make a review sheet, then turn it into label corrections.

The original solution found its curated-label corrections by looking at the
clips the models disagreed with most. This script does that in two steps.

1. Make the review sheet (needs out-of-fold predictions from predict_folds.py):

    python review_labels.py --experiments auxiliary_016 corrections_002 --top 200 --out review.csv

   The experiments' out-of-fold predictions are blended (geometric mean) and every
   curated clip gets its per-clip lwlrap against its given labels (1.0: the given
   labels are the top predictions; near 0: the models rank them far down). The
   --top lowest-scoring clips are written, lowest first, with the columns

       fname             the clip (in <data-dir>/train_curated/)
       given_labels      its labels now (train_folds.csv / train_curated.csv, after --corrections)
       clip_lwlrap       how well the blended predictions rank the given labels
       predicted_top     the 3 most probable classes, e.g. "Bark:0.91 Dog:0.20 Growling:0.05"
       suggested_labels  classes predicted with probability >= --threshold (else the top one)
       decision          empty: for the reviewer

2. Listen to the clips and fill the `decision` column of each row:

       (blank) or keep   keep the given labels (nothing is written for the clip)
       remove            drop the clip from training
       A,B               replace the labels by this comma-separated list of class names
                         (e.g. copy suggested_labels, or "Bark,Dog"; quote the cell in the CSV
                         if your editor does not do it for you)

3. Turn the reviewed sheet into the corrections JSON that training reads
   (<data-dir>/corrections.json for curated clips):

    python review_labels.py --apply review.csv --out data/corrections.json [--merge data/corrections.json]

   The JSON maps fname -> "A,B" or "remove" for every row with a decision
   (label lists are written in the class-list order). Every label is checked
   against the class list (sample_submission.csv columns); unknown labels are
   refused, naming them and their rows (line numbers of the CSV). With --merge
   the existing corrections are kept and the new decisions override them for
   the same clips. The file is written atomically.

--apply only reads the fname and decision columns, so a sheet of noisy clips
made by hand becomes <data-dir>/noisy_corrections.json (the corrected-noisy
source of the corr_noisy experiments) the same way.

To review against already-corrected labels (a second round), pass the current
corrections with --corrections: the given labels are then the corrected ones
and removed clips are left out.
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from src.predict.blending import cv_scores, load_experiments
from src.cli import run
from src.config import resolve_data_dir
from src.data.corrections import cli_setting, read_curated
from src.data.layout import read_classes
from src.data.labels import REMOVE, check_labels, load_corrections, parse_labels, read_csv_columns
from src.metrics import clip_lwlrap
from src.predict.prediction_sets import PredictionSet
from src.files import write_csv_atomic, write_json_atomic

COLUMNS = ["fname", "given_labels", "clip_lwlrap", "predicted_top", "suggested_labels", "decision"]
KEEP = "keep"


# ----------------------------------------------------------------------------- review sheet

def format_top(probs: np.ndarray, classes, k=3) -> str:
    """'Bark:0.91 Dog:0.20 Growling:0.05' for one clip's probability vector."""
    order = np.argsort(-probs, kind="stable")[:k]
    return " ".join(f"{classes[i]}:{probs[i]:.2f}" for i in order)


def suggest_labels(probs: np.ndarray, classes, threshold=0.5) -> str:
    """Classes with probability >= threshold (class-list order), or the most probable one."""
    chosen = np.flatnonzero(probs >= threshold)
    if len(chosen) == 0:
        chosen = [int(np.argmax(probs))]
    return ",".join(classes[i] for i in chosen)


def review_table(pred: PredictionSet, labels, top=200, threshold=0.5) -> pd.DataFrame:
    """The `top` clips whose given labels the predictions rank worst, lowest clip lwlrap first.

    `labels` is a `src.data.corrections.CuratedLabels`; clips it removed are not reviewed.
    Ties keep the prediction order (stable sort), so the sheet is reproducible.
    """
    keep, y_true = labels.targets(pred.fnames, pred.classes)
    fnames = [f for f, k in zip(pred.fnames, keep) if k]
    probs = pred.probs[keep]
    scores = clip_lwlrap(y_true, probs)
    order = np.argsort(scores, kind="stable")[:top]
    rows = [{
        "fname": fnames[i],
        "given_labels": labels.labels[fnames[i]],
        "clip_lwlrap": round(float(scores[i]), 4),
        "predicted_top": format_top(probs[i], pred.classes),
        "suggested_labels": suggest_labels(probs[i], pred.classes, threshold),
        "decision": "",
    } for i in order]
    return pd.DataFrame(rows, columns=COLUMNS)


# ----------------------------------------------------------------------------- applying decisions

def read_decisions(path, classes) -> dict:
    """{fname: "A,B" | "remove"} from the reviewed sheet's `decision` column.

    Blank or "keep" rows are skipped. Label lists are written in class-list
    order without repeats. Unknown labels are collected over the whole sheet and
    refused together, each with its CSV line number and clip.
    """
    sheet = read_csv_columns(path, ("fname", "decision"), what="review sheet")
    order = {c: i for i, c in enumerate(classes)}
    decisions, unknown, conflicts = {}, [], []
    for row, record in enumerate(sheet.to_dict("records")):
        line = row + 2  # 1-based, after the header line
        fname, decision = record["fname"].strip(), record["decision"].strip()
        if decision.lower() in ("", KEEP):
            continue
        if decision.lower() == REMOVE:
            value = REMOVE
        else:
            labels = parse_labels(decision)
            bad = [label for label in labels if label not in order]
            if bad:
                unknown.append(f"line {line} ({fname}): {bad}")
                continue
            value = ",".join(sorted(set(labels), key=order.get))
        if decisions.get(fname, value) != value:
            conflicts.append(f"{fname}: {decisions[fname]!r} vs {value!r} (line {line})")
        decisions[fname] = value
    if unknown:
        raise ValueError(f"{path}: unknown label(s) in the decision column (not in the class list; "
                         f"write 'remove', leave blank to keep, or use class names):\n  " + "\n  ".join(unknown))
    if conflicts:
        raise ValueError(f"{path}: clips with different decisions on different rows:\n  " + "\n  ".join(conflicts))
    return decisions


def merge_corrections(existing: dict, decisions: dict) -> dict:
    """Existing corrections updated with the new decisions (new ones win for the same clip)."""
    return {**existing, **decisions}


# ----------------------------------------------------------------------------- command line

EPILOG = """make the review sheet of the lowest-scoring curated clips:
  python review_labels.py --experiments A B --top 200 --out review.csv

how to fill the `decision` column of the review sheet:
  (blank) or keep   keep the given labels
  remove            drop the clip from training
  A,B               new labels: comma-separated class names (quote the cell in the CSV)

then turn the reviewed sheet into the corrections JSON that training reads:
  python review_labels.py --apply review.csv --out data/corrections.json [--merge data/corrections.json]
which writes {fname: "A,B" | "remove"} for every row with a decision (atomically),
refusing labels that are not in the class list and naming them with their CSV line.
--merge keeps an existing corrections file's entries; new decisions override them."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="+", metavar="NAME",
                        help="experiments whose out-of-fold predictions (<data-dir>/predictions/NAME/oof/) "
                             "are blended to score the clips")
    parser.add_argument("--apply", metavar="REVIEW_CSV",
                        help="instead: turn a reviewed sheet into a corrections JSON (needs --out)")
    parser.add_argument("--data-dir", help="data root (default: $FSAT_DATA_DIR or ./data)")
    parser.add_argument("--corrections", metavar="JSON|NAME",
                        help="review sheet: apply these corrections (a JSON file or a shipped version name) to the "
                             "given labels first (second round)")
    parser.add_argument("--top", type=int, default=200, help="review sheet: number of clips (default 200)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="review sheet: probability for a class to be in suggested_labels (default 0.5)")
    parser.add_argument("--merge", metavar="JSON", help="--apply: existing corrections to keep and update")
    parser.add_argument("--out", help="review sheet CSV (default: <data-dir>/review.csv), "
                                      "or with --apply the corrections JSON (required)")
    args = parser.parse_args(argv)
    if bool(args.experiments) == bool(args.apply):
        parser.error("give either --experiments (make a review sheet) or --apply REVIEW_CSV (write corrections)")
    if args.apply and not args.out:
        parser.error("--apply needs --out corrections.json")
    if args.merge and not args.apply:
        parser.error("--merge only goes with --apply")
    if args.top < 1:
        parser.error(f"--top must be >= 1, got {args.top}")
    return args


def make_review(args, data_dir):
    classes = read_classes(data_dir)
    labels = read_curated(data_dir, classes, cli_setting(args.corrections), need_folds=False)
    blended, scores = cv_scores(load_experiments(data_dir, args.experiments, "oof"), labels, classes=classes)
    sheet = review_table(blended, labels, args.top, args.threshold)
    out = Path(args.out) if args.out else data_dir / "review.csv"
    write_csv_atomic(sheet, out, index=False)
    print(f"Blended out-of-fold CV lwlrap {scores['blend']:.6f} on {scores['n_clips']} clips of {labels.source}")
    print(f"Wrote {out}: the {len(sheet)} lowest-scoring clips (clip lwlrap {sheet['clip_lwlrap'].min():.3f}"
          f"..{sheet['clip_lwlrap'].max():.3f}); fill its `decision` column, then run\n"
          f"  python review_labels.py --apply {out} --out <corrections.json>")
    return sheet


def apply_review(args, data_dir):
    classes = read_classes(data_dir)
    decisions = read_decisions(args.apply, classes)
    existing = load_corrections(args.merge) if args.merge else {}
    check_labels(pd.DataFrame([(f, v) for f, v in existing.items() if v != REMOVE], columns=["fname", "labels"]),
                 classes, source=str(args.merge))
    corrections = merge_corrections(existing, decisions)
    write_json_atomic(corrections, args.out)
    changed = sum(1 for f in decisions if f in existing and existing[f] != decisions[f])
    n_removed = sum(1 for v in decisions.values() if v == REMOVE)
    print(f"Wrote {args.out}: {len(corrections)} correction(s) ({len(decisions)} from {args.apply}: "
          f"{len(decisions) - n_removed} relabelled, {n_removed} removed"
          + (f"; {changed} of {args.merge} overridden" if args.merge else "") + ")")
    return corrections


def main(argv=None):
    args = parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    try:
        return apply_review(args, data_dir) if args.apply else make_review(args, data_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"review_labels.py: error: {exc}") from exc


if __name__ == "__main__":
    run(main)
