"""Train CSVs, label strings, multi-hot targets and label corrections.

A Kaggle train CSV has columns `fname,labels`, where `labels` is one
comma-separated string ("Bark,Walk_and_footsteps"). Label corrections are a
JSON map `fname -> "Label1,Label2"` (new labels) or `fname -> "remove"` (drop
the clip); `apply_corrections` is the one place they are applied.
"""
import csv
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

from src.config import stable_hash
from src.errors import BadInput, InputFileNotFound
from src.files import read_json

REMOVE = "remove"


def parse_labels(value) -> list:
    """'A,B' -> ['A', 'B'] (whitespace around names ignored, empty parts dropped)."""
    if not isinstance(value, str):
        return []
    return [label.strip() for label in value.split(",") if label.strip()]


def read_csv_columns(path, columns, what="CSV file") -> pd.DataFrame:
    """Read a CSV as strings (empty cells stay ''), refusing a missing file or missing columns by name.

    Every CSV the scripts read goes through here, so a file that is not UTF-8
    text or not CSV at all gets an error naming it (not a bare codec error).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFound(f"{path}: no such {what}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset "
                       f"{exc.start}); save the {what} as UTF-8") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BadInput(f"{path}: not a readable {what} ({exc})") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BadInput(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    return df


def read_header(path) -> list:
    """The raw header cells of a CSV, as written: pandas renames a repeated cell 'A' to 'A.1', so a
    reader that must refuse repeats reads them here (csv quoting and a UTF-8 BOM handled as pandas does).
    Call after `read_csv_columns` accepted the file."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle), [])
    except (csv.Error, UnicodeDecodeError) as exc:  # e.g. a header cell over csv's 128 kB field limit
        raise BadInput(f"{path}: unreadable header line ({exc})") from exc


def name_problem(fname) -> str:
    """Why `fname` is not a plain file name ('' when it is one).

    fnames index folders (train_curated/<fname>), so a path in one would read
    another clip (`../test/x.wav`), the same clip twice (`./a.wav` beside
    `a.wav`) or any file on the system (`/etc/passwd`).
    """
    if not isinstance(fname, str) or not fname.strip():
        return "empty name"
    if "/" in fname or "\\" in fname:
        return "a path, not a file name (no '/' or '\\' allowed)"
    if fname.strip() in (".", ".."):
        return "not a file name"
    if PurePosixPath(fname).is_absolute() or PureWindowsPath(fname).is_absolute() or PureWindowsPath(fname).drive:
        return "an absolute path"
    if any(ord(c) < 32 for c in fname):
        return "contains control characters"
    return ""


def normalise_fname(fname: str) -> str:
    """The form two names are compared in: Unicode NFC, surrounding whitespace removed."""
    return unicodedata.normalize("NFC", fname).strip()


def check_fnames(fnames, source, column="fname") -> None:
    """Refuse names that are not plain file names, and duplicates after `normalise_fname`.

    Rows are reported as CSV line numbers (the header is line 1).
    """
    fnames = list(fnames)
    bad = [(i + 2, f, name_problem(f)) for i, f in enumerate(fnames) if name_problem(f)]
    if bad:
        shown = "; ".join(f"line {line}: {f!r} is {why}" for line, f, why in bad[:5])
        raise BadInput(f"{source}: {len(bad)} {column} value(s) are not plain file names: {shown}")
    first, dups = {}, []
    for i, f in enumerate(fnames):
        key = normalise_fname(f)
        if key in first:
            dups.append(f"{f!r} (line {i + 2}) repeats {fnames[first[key]]!r} (line {first[key] + 2})")
        else:
            first[key] = i
    if dups:
        raise BadInput(f"{source}: {len(dups)} duplicated {column}(s): " + "; ".join(dups[:5]))


def read_train_csv(path) -> pd.DataFrame:
    """Read a `fname,labels` CSV, refusing missing columns, bad or duplicate file names, and empty labels."""
    df = read_csv_columns(path, ("fname", "labels"))
    check_fnames(df["fname"], path)
    empty = [(i + 2, f) for i, (f, v) in enumerate(zip(df["fname"], df["labels"])) if not parse_labels(v)]
    if empty:
        raise BadInput(f"{path}: {len(empty)} row(s) without labels, e.g. "
                       + ", ".join(f"line {line} {f!r}" for line, f in empty[:5]))
    return df


def check_labels(df: pd.DataFrame, classes, source="labels") -> None:
    """Raise naming every label not in `classes` and a few files that carry it."""
    known = set(classes)
    unknown = {}
    for fname, value in zip(df["fname"], df["labels"]):
        for label in parse_labels(value):
            if label not in known:
                unknown.setdefault(label, []).append(fname)
    if unknown:
        lines = [f"  {label!r} in {len(f)} file(s), e.g. {f[:3]}" for label, f in sorted(unknown.items())]
        raise BadInput(f"{source}: unknown label(s) not in the class list:\n" + "\n".join(lines))


def check_files(df: pd.DataFrame, audio_dir, source="CSV") -> None:
    """Raise listing the files of `df` that are missing from `audio_dir`."""
    audio_dir = Path(audio_dir)
    missing = [f for f in df["fname"] if not (audio_dir / f).is_file()]
    if missing:
        raise InputFileNotFound(
            f"{source}: {len(missing)} file(s) listed but not found in {audio_dir}, e.g. {missing[:5]}")


def labels_to_target(labels, classes) -> np.ndarray:
    """Multi-hot float32 vector over `classes`."""
    index = {c: i for i, c in enumerate(classes)}
    target = np.zeros(len(classes), dtype=np.float32)
    for label in labels:
        target[index[label]] = 1.0
    return target


def targets_matrix(label_strings, classes) -> np.ndarray:
    return np.stack([labels_to_target(parse_labels(s), classes) for s in label_strings]) \
        if len(label_strings) else np.zeros((0, len(classes)), np.float32)


def load_corrections(path) -> dict:
    """Read a corrections JSON (fname -> 'A,B' or 'remove'); None or '' gives {}.

    A damaged file (not JSON, not an object of strings, an entry without labels) is refused
    naming the file and the first bad entries: applied silently it would relabel clips wrongly.
    """
    if not path:
        return {}
    corrections = read_json(path, what="corrections file")
    bad = [f"{k!r}: {v!r}" for k, v in corrections.items() if not isinstance(v, str) or not parse_labels(v)]
    if bad:
        raise BadInput(f"{path}: expected a JSON object mapping fname -> 'Label1,Label2' or 'remove'; "
                       f"{len(bad)} entry(ies) are not, e.g. {'; '.join(bad[:3])[:300]}")
    return corrections


def corrections_hash(corrections: dict) -> str:
    return stable_hash(corrections or {})


def apply_corrections(df: pd.DataFrame, corrections: dict, classes=None) -> pd.DataFrame:
    """Relabel or drop the rows of `df` named in `corrections` (others pass through)."""
    if not corrections:
        return df.copy()
    df = df.copy()
    if classes is not None:
        new = [(f, v) for f, v in corrections.items() if v != REMOVE]
        check_labels(pd.DataFrame(new, columns=["fname", "labels"]), classes, source="label corrections")
    relabel = {f: v for f, v in corrections.items() if v != REMOVE}
    df["labels"] = [relabel.get(f, v) for f, v in zip(df["fname"], df["labels"])]
    removed = {f for f, v in corrections.items() if v == REMOVE}
    return df[~df["fname"].isin(removed)].reset_index(drop=True)
