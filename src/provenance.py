"""Did anything a trained experiment was made from change since? The one check behind --resume,
predict_folds.py and stacking_train.py.

Training records in config.json what its models were made from; a later step that
continues or uses them compares that record with what it is about to use:

    settings      "experiment"       the resolved settings (train_folds.py / stacking_train.py --resume)
    classes       "classes"          the class list, in order (a column of every output)
    audio         "audio_config"     the audio settings the features were computed with (AUDIO.to_dict())
    corrections   "corrections"      the label-corrections files applied: sha256 of their bytes, per kind
    folds         "fold_assignment"  sha256 of train_folds.csv's fname -> fold mapping: out-of-fold
                                     predictions are out of fold only under the mapping the models trained on

A difference stops the run with both values and the way on: train again, or accept
the change deliberately (`--accept-changed ITEM`). An item that the record does not
have (experiments trained by older versions) is not compared.
"""
import hashlib
import json

from src.data.layout import read_folds
from src.errors import BadSetting

RECORD_KEYS = {"settings": "experiment", "classes": "classes", "audio": "audio_config",
               "corrections": "corrections", "folds": "fold_assignment"}
ITEMS = tuple(RECORD_KEYS)
# A model's outputs are the recorded classes: with another class list nothing lines up, so no flag lets it through.
ACCEPTABLE = tuple(item for item in ITEMS if item != "classes")
FLAG = "--accept-changed"


def add_accept_changed(parser, items, what: str):
    """A script's --accept-changed ITEM option (repeatable; ITEM one of `items`); `what`: what the script
    does with the trained models."""
    parser.add_argument(FLAG, action="append", default=[], choices=items, metavar="ITEM",
                        help=f"{what} although ITEM changed since training: one of {', '.join(items)} "
                             f"(repeatable). Without it such a change stops the run, naming the value training "
                             f"recorded in config.json and the current one; a changed class list is always "
                             f"refused (src/provenance.py)")


def fold_assignment(data_dir) -> str:
    """sha256 of train_folds.csv's fname -> fold mapping (sorted by fname: the row order, the label column and
    the file's formatting do not count, only which clip is in which fold)."""
    folds = read_folds(data_dir)
    text = "\n".join(f"{fname},{int(fold)}" for fname, fold in sorted(zip(folds["fname"], folds["fold"])))
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(obj):
    """As config.json holds it (tuples -> lists), so a record read back equals one just made."""
    return json.loads(json.dumps(obj))


def _flat(obj, prefix=""):
    """{"a.b": value} of nested dicts, for naming the settings that differ."""
    if not isinstance(obj, dict):
        return {prefix: obj}
    flat = {}
    for key, value in obj.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _short(value, limit=120) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _corrections_ids(record) -> dict:
    """{kind: (path, sha256) or None} of config.json's "corrections" record."""
    return {kind: None if entry is None else (entry.get("path"), entry.get("sha256"))
            for kind, entry in (record or {}).items()}


def _describe(item, recorded, current) -> str:
    """How `recorded` and `current` differ, naming both values."""
    if item == "corrections":
        old, new = _corrections_ids(recorded), _corrections_ids(current)
        parts = []
        for kind in sorted(set(old) & set(new)):
            if (old[kind] or (None, None))[1] != (new[kind] or (None, None))[1]:
                show = (lambda v: "none" if v is None else f"{v[0]} (sha256 {v[1]})")
                parts.append(f"{kind} corrections recorded {show(old[kind])}, now {show(new[kind])}")
        return "; ".join(parts)
    if item == "folds":
        return f"train_folds.csv's fname -> fold mapping recorded sha256 {recorded}, now {current}"
    if item == "classes":
        if sorted(recorded) == sorted(current):
            return (f"the same {len(current)} classes in another order: recorded {_short(recorded)}, "
                    f"now {_short(current)}")
        return (f"recorded {len(recorded)} classes, now {len(current)}: only recorded "
                f"{_short([c for c in recorded if c not in current])}, only now "
                f"{_short([c for c in current if c not in recorded])}")
    old, new = _flat(recorded), _flat(current)
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k, "<unset>") != new.get(k, "<unset>")]
    return ", ".join(f"{k} recorded {_short(old.get(k, '<unset>'))}, now {_short(new.get(k, '<unset>'))}"
                     for k in keys)


def _same(item, recorded, current) -> bool:
    if item == "corrections":  # only the kinds both sides name (prediction reads only the curated one)
        old, new = _corrections_ids(recorded), _corrections_ids(current)
        return all((old[k] or (None, None))[1] == (new[k] or (None, None))[1] for k in set(old) & set(new))
    return recorded == current


def check_unchanged(recorded: dict, current: dict, where, items=ITEMS, accepted=(), remedy="train again") -> list:
    """Compare the `items` of two config.json-like records; refuse the ones that differ and are not `accepted`.

    `recorded`: what training wrote; `current`: the same keys as this run would write them.
    Raises BadSetting naming every unaccepted difference with both values, the way on (`remedy`)
    and the flag; returns the accepted differences as {"item", "recorded", "current"} (for the record).
    """
    refused, allowed = [], []
    for item in items:
        key = RECORD_KEYS[item]
        if key not in recorded or key not in current:  # older records did not keep it: nothing to compare
            continue
        old, new = _plain(recorded[key]), _plain(current[key])
        if _same(item, old, new):
            continue
        if item in accepted:
            allowed.append({"item": item, "recorded": old, "current": new})
        else:
            refused.append((item, f"{item} changed since training: {_describe(item, old, new)}"))
    if refused:
        flags = " ".join(f"{FLAG} {item}" for item, _ in refused if item in ACCEPTABLE)
        way = remedy[0].upper() + remedy[1:] + (f", or pass {flags} to use them anyway" if flags else "")
        raise BadSetting(f"{where}: " + "; ".join(text for _, text in refused) + f". {way}")
    for change in allowed:
        print(f"warning: {where}: {change['item']} changed since training: "
              f"{_describe(change['item'], change['recorded'], change['current'])} (accepted with {FLAG} "
              f"{change['item']})")
    return allowed
