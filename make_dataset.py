"""Turn a folder of your own recordings into this repo's data layout (Kaggle's).

    python make_dataset.py myrecordings --out mydata                  # myrecordings/<class>/<audio files>
    python make_dataset.py labels.csv --out mydata                    # path,labels[,source] (multi-label)
    python make_dataset.py myrecordings --out mydata --test-share 0.2 --source-pattern '^[^/]+/(spk\\d+)_'
    python make_folds.py --data-dir mydata --groups source            # then folds that keep sources whole

Input: a folder with one sub-folder per class (its name is the label; the audio
files directly inside), or a CSV of `path,labels[,source]` (labels comma-separated
inside quotes, as Kaggle's train CSVs; paths relative to the CSV's folder, or
absolute). A source is what a held-out test set and grouped folds keep whole (one
recording cut into clips, one speaker, one session): the CSV's `source` cell,
else what --source-pattern finds in the file's path (relative to the input),
else the file itself.

Output (--out): train_curated/ (files hard-linked, else copied, under fnames made
of a hash of their path), train_curated.csv (fname,labels,source),
sample_submission.csv (the class columns), and with --test-share: test/ and
test_labels.csv (fname,labels,source), whole sources held out.

Every file is decoded first. Any problem (a file that is empty, undecodable or
silent, a class folder without audio, a bad class name, a file listed twice or
twice the same bytes) stops the import with one line per problem and nothing
written; --skip-bad imports the rest and lists what it skipped. The folder is
built beside --out and renamed at the end.
"""
import argparse
import os
import sys
from pathlib import Path

from src.cli import run
from src.data.audio_check import audio_problem
from src.data.holdout import hold_out_sources
from src.data.layout_writer import write_layout
from src.data.recordings import Problem, assign_sources, duplicate_problems, from_class_folders, from_csv
from src.errors import BadInput, BadSetting, InputFileNotFound, ResultsExist
from src.progress import progress
from src.files import atomic_new_dir, atomic_path


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="a folder of class sub-folders, or a CSV of path,labels[,source]")
    parser.add_argument("--out", required=True, help="the data folder to write (must not exist, see --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder (at the end, "
                                                                 "once the new one is complete)")
    parser.add_argument("--copy", action="store_true",
                        help="copy the audio files (default: hard links, which take no space but share the "
                             "bytes with your originals; files are copied where links are not possible)")
    parser.add_argument("--source-pattern", metavar="REGEX",
                        help="the source of a file without a source cell: what REGEX finds (re.search) in its "
                             "path relative to the input, e.g. 'Dog/spk03_take2.wav'; the first capture group "
                             "if it has one, else the whole match (default: every file its own source)")
    parser.add_argument("--test-share", type=float, metavar="SHARE",
                        help="hold out about this share of the clips (e.g. 0.2) as a labelled test set, whole "
                             "sources at a time, every class near the share (default: no test set)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the test split (default 42)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="import the usable files and list the problems skipped, instead of stopping")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while the files are decoded")
    return parser.parse_args(argv)


def check_out(out: Path, input_path: Path, overwrite: bool):
    """Refuse an --out that exists (without --overwrite), is a file, or holds or is inside the input."""
    if out.exists() and not out.is_dir():
        raise BadSetting(f"--out {out}: exists and is not a folder")
    if out.exists() and not overwrite:
        raise ResultsExist(f"--out {out}: already exists; pass --overwrite to replace it, or name a new folder")
    out_abs, input_abs = Path(os.path.abspath(out)), Path(os.path.abspath(input_path))
    if out_abs == input_abs or out_abs in input_abs.parents or input_abs in out_abs.parents:
        raise BadSetting(f"--out {out}: overlaps the input {input_path}; write the data set elsewhere")


def find_recordings(input_path: Path, source_pattern):
    """(recordings, problems, notes) of the input, every problem but the audio read-check found."""
    if input_path.is_dir():
        recordings, problems, ignored = from_class_folders(input_path)
        notes = [f"ignored {len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'} that are not an audio file "
                 f"inside a class folder, e.g. {[str(p) for p in ignored[:3]]}"] if ignored else []
    elif input_path.is_file():
        recordings, problems = from_csv(input_path)
        notes = []
    else:
        raise InputFileNotFound(f"{input_path}: no such folder or CSV file")
    problems += assign_sources(recordings, source_pattern)
    problems += duplicate_problems(recordings)
    return recordings, problems, notes


def read_check(recordings, problems, show_progress=True) -> list:
    """A problem for every recording the repo's reader cannot get sound out of (those already dropped skipped)."""
    dropped = {id(rec) for problem in problems for rec in problem.drops}
    todo = [rec for rec in recordings if id(rec) not in dropped]
    found = []
    for rec in progress(todo, desc="decoding", unit="files", enabled=show_progress):
        why = audio_problem(rec.path)
        if why:
            found.append(Problem(rec.label(), why, [rec]))
    return found


def summary(classes, train, test) -> list:
    """Lines of a table: clips and sources per class, per split."""
    def count(recordings, label):
        mine = [rec for rec in recordings if label in rec.labels]
        return len(mine), len({rec.source for rec in mine})

    width = max([len(c) for c in classes] + [5])
    head = f"{'class':<{width}}  {'train clips':>11} {'sources':>7}" + (f"  {'test clips':>10} {'sources':>7}"
                                                                        if test else "")
    lines = [head]
    for label in classes + [None]:
        name = label or "all"
        tr = count(train, label) if label else (len(train), len({r.source for r in train}))
        line = f"{name:<{width}}  {tr[0]:>11} {tr[1]:>7}"
        if test:
            te = count(test, label) if label else (len(test), len({r.source for r in test}))
            line += f"  {te[0]:>10} {te[1]:>7}"
        lines.append(line)
    return lines


def main(argv=None):
    args = parse_args(argv)
    input_path, out = Path(args.input), Path(args.out)
    check_out(out, input_path, args.overwrite)
    if args.test_share is not None and not 0 < args.test_share < 1:
        raise BadSetting(f"--test-share {args.test_share}: must be between 0 and 1 (the share of the clips held out)")

    recordings, problems, notes = find_recordings(input_path, args.source_pattern)
    problems += read_check(recordings, problems, not args.no_progress)
    if problems and not args.skip_bad:
        for problem in problems:
            print(problem.line(), file=sys.stderr)
        raise BadInput(f"{input_path}: {len(problems)} problem(s), listed above; nothing written. Fix them, or "
                       f"pass --skip-bad to import the other files")
    dropped = {id(rec) for problem in problems for rec in problem.drops}
    kept = [rec for rec in recordings if id(rec) not in dropped]
    if not kept:
        raise BadInput(f"{input_path}: no usable recording" + (f" ({len(problems)} problem(s) skipped)"
                                                              if problems else ""))
    classes = sorted({label for rec in kept for label in rec.labels})
    lost = sorted({label for rec in recordings for label in rec.labels} - set(classes))
    if lost:  # every file of these classes was skipped: the data set does not know them
        notes.append(f"no usable file left of class(es) {lost}: they are not in the data set")

    test = []
    if args.test_share is not None:
        is_test = hold_out_sources([",".join(r.labels) for r in kept], [r.source for r in kept], classes,
                                   args.test_share, args.seed)
        test = [rec for rec, t in zip(kept, is_test) if t]
        kept = [rec for rec, t in zip(kept, is_test) if not t]

    publish = atomic_path if args.overwrite else atomic_new_dir
    with publish(out) as tmp:
        tmp.mkdir(exist_ok=True)
        linked = write_layout(tmp, classes, kept, test, copy=args.copy)

    if problems:
        print(f"Skipped {len(problems)} problem(s) (--skip-bad):")
        for problem in problems:
            print(f"  {problem.line()}")
    for note in notes:
        print(f"Note: {note}")
    total = len(kept) + len(test)
    print(f"Wrote {out}: {total} clips of {len(classes)} classes ({len(kept)} train_curated"
          + (f", {len(test)} test" if test else "") + f"; {linked} hard-linked, {total - linked} copied)")
    for line in summary(classes, kept, test):
        print("  " + line)
    untrained = [c for c in classes if not any(c in rec.labels for rec in kept)]
    if untrained:
        print(f"Warning: no training clip of {untrained} (all their sources were held out)")
    print(f"Next: python make_folds.py --data-dir {out} --groups source")


if __name__ == "__main__":
    run(main)
