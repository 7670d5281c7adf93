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

from src.data.labels import REMOVE, apply_corrections, load_corrections

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
        raise ValueError(f"experiment setting {key} must be None, 'auto', the name of a corrections file or a "
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
    raise FileNotFoundError(
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
