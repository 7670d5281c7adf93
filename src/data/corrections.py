"""Which label-corrections file an experiment applies, and what identifies it in config.json.

Experiments name their corrections in two settings, `curated_corrections` and
`noisy_corrections` (src/experiments.py), each one of:

    None          no corrections
    "auto"        the data dir's own file when there is one (corrections.json for curated
                  clips, noisy_corrections.json for noisy ones: what review_labels.py and the
                  demo data write), else none
    "NAME"        corrections/NAME.json shipped with the repo (the versions the 2019 ensemble
                  used, see corrections/README.md), else <data>/NAME.json
    "FILE.json"   that file (any value ending in .json or holding a path separator):
                  absolute, or relative to the data dir

Every value but None and "auto" must resolve to a file: a run stops, naming what it
looked for, rather than train without the corrections it asked for.

The shipped files name Kaggle's clips. Entries for clips that a CSV does not have
are ignored (a subset of the data, or other data altogether); the `record` of a
loaded file counts them, and training prints and saves that record.
"""
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from src.data.labels import REMOVE, apply_corrections, check_labels, load_corrections, read_train_csv, targets_matrix
from src.data.layout import read_folds
from src.errors import BadInput, BadSetting, InputFileNotFound

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "corrections"  # the repository's corrections/
AUTO = "auto"
KINDS = ("curated", "noisy")
DATA_DIR_FILES = {"curated": "corrections.json", "noisy": "noisy_corrections.json"}


def shipped_names() -> list:
    return sorted(path.stem for path in SHIPPED_DIR.glob("*.json"))


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"corrections kind must be one of {KINDS}, got {kind!r}")


def resolve_corrections(setting, kind, data_dir) -> Optional[Path]:
    """The file that a `curated_corrections` / `noisy_corrections` setting names (None: no corrections)."""
    _check_kind(kind)
    key, data_dir = f"{kind}_corrections", Path(data_dir)
    if setting is None:
        return None
    if not isinstance(setting, str) or not setting.strip():
        raise BadSetting(f"experiment setting {key} must be None, 'auto', the name of a corrections file or a "
                         f"path to one, got {setting!r}")
    if setting == AUTO:
        path = data_dir / DATA_DIR_FILES[kind]
        return path if path.is_file() else None
    as_path = Path(setting)
    if as_path.suffix == ".json" or len(as_path.parts) > 1:
        candidates = [as_path if as_path.is_absolute() else data_dir / as_path]
    else:
        candidates = [SHIPPED_DIR / f"{setting}.json", data_dir / f"{setting}.json"]
    for path in candidates:
        if path.is_file():
            return path
    raise InputFileNotFound(
        f"{key}={setting!r}: corrections file not found (looked for {' and '.join(map(str, candidates))}). "
        f"Shipped versions in {SHIPPED_DIR}: {', '.join(shipped_names()) or 'none (folder missing)'}. "
        f"Use one of those, a JSON file in the data dir, or --set {key}=None to train without {kind} corrections.")


@dataclass(frozen=True)
class Corrections:
    """One kind of corrections as an experiment resolved them: the entries and the file they came from."""
    kind: str
    setting: object = None
    path: Optional[Path] = None
    sha256: Optional[str] = None
    entries: dict = field(default_factory=dict)

    def matching(self, fnames) -> dict:
        """The entries that name one of `fnames` (the others are ignored)."""
        names = set(fnames)
        return {fname: value for fname, value in self.entries.items() if fname in names}

    def relabels(self, fnames) -> dict:
        """fname -> corrected labels, for the clips of `fnames` that are relabelled (not removed)."""
        return {fname: value for fname, value in self.matching(fnames).items() if value != REMOVE}

    def apply(self, df, classes):
        """`df` (fname, labels) with the matching entries applied: relabelled rows, removed rows dropped."""
        return apply_corrections(df, self.matching(df["fname"]), classes)

    def record(self, fnames) -> Optional[dict]:
        """What config.json keeps: the setting, the file (name, path, sha256 of its bytes), and how many
        of its entries name clips of `fnames` (None when no file was applied)."""
        if self.path is None:
            return None
        matched = self.matching(fnames)
        return {"setting": self.setting, "name": self.path.name, "path": str(self.path), "sha256": self.sha256,
                "entries": len(self.entries), "matched": len(matched),
                "relabel": sum(v != REMOVE for v in matched.values()),
                "remove": sum(v == REMOVE for v in matched.values())}


def load_experiment_corrections(setting, kind, data_dir) -> Corrections:
    """Resolve and read a `curated_corrections` / `noisy_corrections` setting (no file: no entries)."""
    path = resolve_corrections(setting, kind, data_dir)
    if path is None:
        return Corrections(kind, setting)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Corrections(kind, setting, path, digest, load_corrections(path))


def describe(record: Optional[dict], kind: str, csv_name: str) -> str:
    """One line about a `Corrections.record` for the training log."""
    if record is None:
        return f"{kind} corrections: none"
    line = (f"{kind} corrections: {record['path']} (sha256 {record['sha256'][:12]}): {record['matched']} of "
            f"{record['entries']} entries match {csv_name} ({record['relabel']} relabel, {record['remove']} remove)")
    ignored = record["entries"] - record["matched"]
    return line + (f"; {ignored} name clips not in {csv_name}, ignored" if ignored else "")


def cli_setting(value):
    """A `--corrections` option as a corrections setting: an existing file (relative to the working
    directory) becomes its absolute path; anything else (None, 'auto', a shipped version name) is kept."""
    if value is not None and Path(value).is_file():
        return str(Path(value).resolve())
    return value


@dataclass
class CuratedLabels:
    """The curated clips as an experiment sees them: every row of the CSV, and its labels after corrections.

    The one reader behind training (the curated source), out-of-fold scoring (predict_folds.py,
    stacking_train.py) and blending / label review (CV against corrected labels).
    """
    source: Path                 # train_folds.csv (else train_curated.csv, where folds are not needed)
    rows: pd.DataFrame           # every clip of the CSV: fname, labels (, fold)
    kept: pd.DataFrame           # the corrections applied: relabelled rows, removed clips dropped
    corrections: Corrections

    @property
    def labels(self) -> dict:
        """fname -> "A,B" of the kept clips."""
        return dict(zip(self.kept["fname"], self.kept["labels"]))

    @property
    def removed(self) -> set:
        return set(self.rows["fname"]) - set(self.kept["fname"])

    def record(self) -> Optional[dict]:
        """The corrections record config.json keeps (`Corrections.record`)."""
        return self.corrections.record(self.rows["fname"])

    def targets(self, fnames, classes) -> tuple:
        """(keep, y_true): mask of the `fnames` that have labels, and their multi-hot targets.

        Clips removed by the corrections are skipped (training dropped them too); a clip
        that is not in the curated CSV at all means the predictions belong to another
        data set, so that is an error.
        """
        labels, removed = self.labels, self.removed
        unknown = [f for f in fnames if f not in labels and f not in removed]
        if unknown:
            raise BadInput(f"{len(unknown)} out-of-fold clip(s) are not in {self.source}, e.g. {unknown[:5]} "
                           f"(predictions of another data dir?)")
        keep = np.array([f in labels for f in fnames], dtype=bool)
        if not keep.any():
            raise BadInput(f"none of the {len(fnames)} out-of-fold clips has a label in {self.source}")
        return keep, targets_matrix([labels[f] for f, k in zip(fnames, keep) if k], classes)


def read_curated(data_dir, classes, setting=AUTO, need_folds=True) -> CuratedLabels:
    """The curated clips of `data_dir` with a `curated_corrections` setting applied (see `resolve_corrections`).

    Reads train_folds.csv; without `need_folds`, train_curated.csv stands in when there are no folds yet.
    """
    data_dir = Path(data_dir)
    source = data_dir / "train_folds.csv"
    if source.is_file() or need_folds:
        rows = read_folds(data_dir)
    else:
        source = data_dir / "train_curated.csv"
        if not source.is_file():
            raise InputFileNotFound(f"{data_dir}: neither train_folds.csv nor train_curated.csv found "
                                    "(the curated labels that out-of-fold predictions are scored against)")
        rows = read_train_csv(source)
    check_labels(rows, classes, source=str(source))
    corrections = load_experiment_corrections(setting, "curated", data_dir)
    return CuratedLabels(source, rows, corrections.apply(rows, classes), corrections)
