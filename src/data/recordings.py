"""A user's recordings and their labels, as make_dataset.py finds them: class folders or a list.

    FOLDER/Dog/*.wav, FOLDER/Cat/*.flac   one sub-folder per class, audio files directly inside
                                          (extensions of src.audio.frontend.AUDIO_EXTENSIONS)
    LIST.csv: path,labels[,source]        labels comma-separated inside quotes ("Dog,Cat"), as Kaggle's
                                          train CSVs; paths relative to the CSV's folder, or absolute

Every recording has a source (the unit a held-out test set and grouped folds keep whole): the
CSV's `source` cell, else what `--source-pattern` finds in its name, else the recording itself.

Nothing here stops at the first problem: each finder returns the recordings it could make out
and a `Problem` for everything wrong, so the user sees every problem at once (or skips them).
"""
import hashlib
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from src.audio.frontend import AUDIO_EXTENSIONS
from src.data.folds import compile_pattern, group_of
from src.data.labels import parse_labels, read_csv_columns
from src.errors import BadInput, InputFileNotFound

FNAME_HASH_CHARS = 12   # 48 bits: a collision among a million files has odds of about 1 in 500 (and is reported)


@dataclass
class Recording:
    path: Path                   # the file, as the input names it (folder / class / file, or CSV folder / cell)
    name: str                    # its path relative to the input (absolute when outside): fnames and sources use it
    labels: list
    where: str = ""              # where the input lists it ("list.csv line 5"); empty for class folders
    source: Optional[str] = None

    @property
    def fname(self) -> str:
        """A plain, stable file name for the data set: a short hash of `name` + the original extension."""
        return hashlib.sha1(self.name.encode("utf-8")).hexdigest()[:FNAME_HASH_CHARS] + self.path.suffix.lower()

    def label(self) -> str:
        return f"{self.path} ({self.where})" if self.where else str(self.path)


@dataclass
class Problem:
    subject: str                 # the file or class folder it is about
    why: str
    drops: list = field(default_factory=list)   # the recordings --skip-bad leaves out for it

    def line(self) -> str:
        return f"{self.subject}: {self.why}"


def label_problem(name: str) -> str:
    """Why `name` cannot be a class of this repo ('' when it can).

    Labels travel as one comma-separated CSV cell ('Dog,Cat') whose parts are stripped, and classes
    head sample_submission.csv's columns next to 'fname', which is read by splitting at commas.
    """
    if not name.strip():
        return "an empty class name"
    if "," in name:
        return f"class name {name!r} holds a comma, which separates labels in the CSVs: rename it"
    if name != name.strip():
        return f"class name {name!r} starts or ends with whitespace, which the CSV readers drop: rename it"
    if '"' in name or any(ord(c) < 32 for c in name):
        return f"class name {name!r} holds a quote or a control character, which CSV headers cannot keep: rename it"
    if name == "fname":
        return "class name 'fname' is the submission's file-name column: rename it"
    return ""


def class_label(name: str) -> str:
    """A class name as the data set spells it: Unicode NFC, so a folder name from a file system that
    decomposes accents (macOS: NFD) and the same name typed in a CSV are one class."""
    return unicodedata.normalize("NFC", name)


def _relative_name(path: Path, root: Path) -> str:
    """`path` relative to `root` as a POSIX string ('Dog/a.wav'), else its absolute form."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path(os.path.abspath(root))).as_posix()
    except ValueError:
        return absolute.as_posix()


def from_class_folders(root) -> tuple:
    """(recordings, problems, ignored) of FOLDER/<class>/<audio file>; `ignored` names what is not audio."""
    root = Path(root)
    if not root.is_dir():
        raise InputFileNotFound(f"{root}: no such folder")
    recordings, problems, ignored = [], [], []
    class_dirs = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        (class_dirs if entry.is_dir() else ignored).append(entry)
    if not class_dirs:
        raise BadInput(f"{root}: no class sub-folders (expected {root}/<class>/<audio files>)")
    for folder in class_dirs:
        found = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_file() and entry.suffix.lower() in AUDIO_EXTENSIONS:
                found.append(Recording(entry, _relative_name(entry, root), [class_label(folder.name)]))
            else:
                ignored.append(entry)
        why = label_problem(folder.name)
        if why:
            problems.append(Problem(f"{folder}/", why, found))
        elif not found:
            problems.append(Problem(f"{folder}/", f"empty class: no audio files ({', '.join(AUDIO_EXTENSIONS)})"))
        recordings += found
    return recordings, problems, ignored


def from_csv(csv_path) -> tuple:
    """(recordings, problems) of a `path,labels[,source]` CSV; a file missing or unlabelled is a problem."""
    csv_path = Path(csv_path)
    frame = read_csv_columns(csv_path, ("path", "labels"), what="recordings list")
    has_source = "source" in frame.columns
    recordings, problems = [], []
    for i, row in frame.iterrows():
        where = f"{csv_path.name} line {i + 2}"
        value = row["path"].strip()
        if not value:
            problems.append(Problem(f"{csv_path} line {i + 2}", "empty path"))
            continue
        path = Path(value) if Path(value).is_absolute() else csv_path.parent / value
        labels = list(dict.fromkeys(class_label(label) for label in parse_labels(row["labels"])))
        source = row["source"].strip() if has_source else ""
        rec = Recording(path, _relative_name(path, csv_path.parent), labels, where, source or None)
        if not path.is_file():
            problems.append(Problem(rec.label(), "no such file", [rec]))
        elif not labels:
            problems.append(Problem(rec.label(), "no labels", [rec]))
        else:
            bad = [why for why in map(label_problem, labels) if why]
            if bad:
                problems.append(Problem(rec.label(), "; ".join(bad), [rec]))
        recordings.append(rec)
    if frame.empty:
        raise BadInput(f"{csv_path}: lists no recordings")
    return recordings, problems


def assign_sources(recordings, pattern=None) -> list:
    """Give every recording without a source one: what `pattern` finds in its name (first capture group,
    else the whole match), else its own name. Returns the problems (names the pattern does not match)."""
    regex = compile_pattern(pattern, "--source-pattern") if pattern else None
    problems = []
    for rec in recordings:
        if rec.source is not None:
            continue
        if regex is None:
            rec.source = rec.name
            continue
        rec.source = group_of(regex, rec.name)
        if rec.source is None:
            problems.append(Problem(rec.label(), f"--source-pattern {pattern!r} finds no source in {rec.name!r}",
                                    [rec]))
    return problems


def duplicate_problems(recordings) -> list:
    """The same file listed twice (after resolving links and '..'), two files with identical bytes, or
    two names that map to one fname: each later one is a problem naming the first."""
    problems, by_file, by_bytes, by_fname = [], {}, {}, {}
    for rec in recordings:
        if not rec.path.is_file():
            continue   # reported as missing already
        real = os.path.realpath(rec.path)
        if real in by_file:
            problems.append(Problem(rec.label(), f"the same file as {by_file[real].label()} (listed twice)", [rec]))
            continue
        by_file[real] = rec
        digest = hashlib.sha256(rec.path.read_bytes()).hexdigest()
        if digest in by_bytes:
            problems.append(Problem(rec.label(), f"identical bytes to {by_bytes[digest].label()} (a copy of one "
                                                 f"recording would sit on both sides of a split)", [rec]))
            continue
        by_bytes[digest] = rec
        if rec.fname in by_fname:
            problems.append(Problem(rec.label(), f"its name maps to the fname {rec.fname!r} of "
                                                 f"{by_fname[rec.fname].label()}", [rec]))
            continue
        by_fname[rec.fname] = rec
    return problems
