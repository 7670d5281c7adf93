"""Trained models for tagging, all of one kind: an `Ensemble` (src/predict/ensemble.py) of one or more
first-level experiments (and stacking models for a named ensemble), always built from a bundle dict
(src/tagging/bundles.py).

- an experiment folder (`load_experiment`): its bundle dict, a one-level ensemble;
- a bundle file (`load_bundle`): export.py's one format (older tagger bundles converted);
- several of either (`blend`): one ensemble over all their first-level experiments, combined as blend.py
  combines experiments (geometric mean over each one's folds, then across experiments);
- a named ensemble (`load_ensemble`): first level, stacking and blend from the experiment folders.
`load_models` picks among these from what it is given (tag.py, demo.py and `AudioTagger` use it).
"""
from src.config import resolve_data_dir
from src.errors import BadSetting
from src.predict.blending import blend_thresholds
from src.predict.ensemble import Ensemble, ensemble_from_bundle
from src.tagging.bundles import make_bundle, make_ensemble_bundle, read_bundle
from src.thresholds import thresholds_from_record
from src.runtime import pick_device


def load_experiment(data_dir, name, device, step=None) -> Ensemble:
    """The one-level Ensemble of <data_dir>/experiments/NAME (all its trained folds), through its bundle dict."""
    return ensemble_from_bundle(make_bundle(data_dir, name), device, step, source=f"experiment {name}")


def experiments_thresholds(data_dir, names, classes, weights=None):
    """(C,) yes/no thresholds of one experiment or a blend of several (`blend_thresholds`), or None."""
    record = blend_thresholds(data_dir, names, classes, weights)
    return None if record is None else thresholds_from_record(record, classes, f"thresholds of {names}")


def load_ensemble(data_dir, name, device, step=None, batch_size=128) -> Ensemble:
    """The Ensemble of a named ensemble, from its experiment folders (through the same bundle dict
    that export.py --ensemble writes, so both give the same models)."""
    return ensemble_from_bundle(make_ensemble_bundle(data_dir, name), device, step, batch_size,
                                source=f"ensemble {name}")


def load_bundle(path, device, step=None) -> Ensemble:
    """The Ensemble of an export.py bundle (one experiment or a whole ensemble)."""
    return ensemble_from_bundle(read_bundle(path), device, step, source=path)


def blend(ensembles) -> Ensemble:
    """One Ensemble over the first-level experiments of several one-level ones, combined as blend.py combines
    experiments; they must share classes (in order) and audio settings. Thresholds: see `load_models`."""
    ensembles = list(ensembles)
    if len(ensembles) == 1:
        return ensembles[0]
    first = ensembles[0]
    for other in ensembles:
        if other.stacking:
            raise BadSetting("an ensemble bundle is a whole blend: give it alone to --model")
    for other in ensembles[1:]:
        names = f"{first.name} and {other.name}"
        if other.classes != first.classes:
            raise BadSetting(f"cannot blend {names}: their class lists differ")
        if other.audio_config != first.audio_config:
            raise BadSetting(f"cannot blend {names}: they were trained on different audio settings")
    levels = [e for ensemble in ensembles for e in ensemble.first_level]
    return Ensemble(" + ".join(e.name for e in ensembles), levels, [], [e.name for e in levels], None,
                    first.classes, first.audio_config, first.batch_size, first.amp)


def load_models(experiments=(), bundles=(), ensemble=None, data_dir=None, device="auto", step=None,
                batch_size=128, amp=None) -> Ensemble:
    """The Ensemble of experiment folders and bundles (blended), or of a named ensemble (or of an ensemble
    bundle given alone). `amp` None keeps the models' own default (see tag.py --amp)."""
    experiments, bundles = list(experiments), list(bundles)
    if not experiments and not bundles and not ensemble:
        raise BadSetting("give at least one --experiment NAME or --model BUNDLE.pt, or an --ensemble NAME")
    if ensemble and (experiments or bundles):
        raise BadSetting("--ensemble is a whole blend: give it without --experiment/--model")
    device = pick_device(device)
    if ensemble:
        tagger = load_ensemble(resolve_data_dir(data_dir), ensemble, device, step, batch_size)
    else:
        taggers = []
        if experiments:
            data_dir = resolve_data_dir(data_dir)
            taggers += [load_experiment(data_dir, name, device, step) for name in experiments]
        taggers += [load_bundle(path, device, step) for path in bundles]
        tagger = blend(taggers)
        if len(taggers) > 1 and not bundles:  # several experiments: thresholds of their blend
            tagger.thresholds = experiments_thresholds(data_dir, experiments, tagger.classes)
    if amp is not None:  # else the tagger's own default (see --amp's help)
        tagger.amp = amp
    return tagger
