"""Model bundles: the one file format of trained models (export.py writes it, tag.py --model reads it).

A bundle is plain dicts, lists, strings, numbers and tensors (loadable with
`torch.load(weights_only=True)`): audio settings, classes, yes/no thresholds, the blend spec, and
for every experiment its network, tile settings and fold weights. One format for everything
(`fsat2019-ensemble-bundle`, src/predict/ensemble.py reads it): an experiment's bundle
(`make_bundle`) is a one-level ensemble; a named ensemble's (`make_ensemble_bundle`) holds every
first-level and stacking experiment it needs. One-experiment bundles of the older tagger format
(`fsat2019-tagger-bundle`) still load (`read_bundle` converts them). `random_ensemble_bundle` builds
a named ensemble with random full-size weights, to measure its size and speed without training.

Precision defaults (src/precision.py) travel in the bundle as `test_amp`: 'auto' for an experiment's
bundle (the fastest safe precision, as tag.py always tagged), 'none' (fp32) for a named ensemble, as
the 2019 kernel made its test predictions.
"""
import json
from pathlib import Path

import torch

from src.train.checkpoints import read_checkpoint
from src.config import AUDIO, AudioConfig
from src.ensembles import check_ensemble, get_ensemble
from src.errors import BadCheckpoint, BadSetting, InputFileNotFound
from src.experiment_folder import (best_checkpoint, experiments_dir, read_experiment_record, trained_folds,
                                   trained_precision)
from src.predict.blending import blend_thresholds
from src.predict.ensemble import BUNDLE_FORMAT, BUNDLE_VERSION, check_ensemble_bundle
from src.predict.predictor import tile_steps
from src.precision import TEST_AMP
from src.files import safe_torch_load

TAG_AMP = "auto"  # the default precision of an experiment's bundle: tag.py's (see the module docstring)
TAGGER_FORMAT = "fsat2019-tagger-bundle"  # one-experiment bundles written before the ensemble format held them


def _plain(obj):
    """JSON-able copy (tuples -> lists), so the bundle holds only types torch's weights_only loader allows."""
    return json.loads(json.dumps(obj))


def fold_weights(exp_dir) -> tuple:
    """(folds, {"name", "kwargs"} of the network, CPU state dicts) of every trained fold's best checkpoint."""
    folds = trained_folds(exp_dir)
    if not folds:
        raise InputFileNotFound(f"{exp_dir}: no trained fold (fold_K/model-*.pth)")
    nn_module, state_dicts = None, []
    for fold in folds:
        path = best_checkpoint(exp_dir / f"fold_{fold}")
        state = read_checkpoint(path)
        fold_module = _plain(state["params"]["nn_module"])
        if nn_module is not None and fold_module != nn_module:
            raise BadCheckpoint(f"{path}: model {fold_module} differs from the other folds' {nn_module}")
        nn_module = fold_module
        state_dicts.append({key: value.detach().cpu().clone() for key, value in state["nn_state_dict"].items()})
    model_name, model_kwargs = nn_module
    return folds, {"name": model_name, "kwargs": model_kwargs}, state_dicts


def make_bundle(data_dir, name) -> dict:
    """Everything `tag.py --model` needs of one experiment, as plain dicts/lists/str/numbers and tensors: an
    ensemble bundle of one first-level member (network, tile size, test tile step, every trained fold)."""
    exp_dir = experiments_dir(data_dir, name)
    record = read_experiment_record(exp_dir, hint=" or pass a bundle with --model")
    folds, model, state_dicts = fold_weights(exp_dir)
    spec = {"members": [name], "weights": None, "test_tile_step": None}
    part = _ensemble_part(spec, name, record["experiment"], False, folds, model, state_dicts,
                          trained_precision(exp_dir, folds))
    return _ensemble_bundle(name, spec, record["classes"], _plain(record.get("audio_config", AUDIO.to_dict())),
                            [part], [], blend_thresholds(data_dir, [name], record["classes"]), test_amp=TAG_AMP)


def from_tagger_bundle(old: dict, source) -> dict:
    """The ensemble bundle of a one-experiment bundle in the older tagger format (version 1)."""
    if old.get("version") != 1:
        raise BadCheckpoint(f"{source}: tagger bundle version {old.get('version')}, this code reads 1")
    keys = ("amp", "model", "folds", "state_dicts", "crop_size", "tile_step")
    part = {"name": old["name"], "trained_precision": old.get("trained_precision", "unrecorded"),
            **{key: old[key] for key in keys}}
    spec = {"members": [old["name"]], "weights": None, "test_tile_step": None}
    return _ensemble_bundle(old["name"], spec, old["classes"], old["audio_config"], [part], [],
                            old.get("thresholds"), test_amp=TAG_AMP)


def _members_by_level(members, is_stacking, inputs_of) -> tuple:
    """(first-level experiments, stacking experiments) of an ensemble: its first-level members, then
    the inputs of its stacking members that are not members themselves."""
    stacking = [m for m in members if is_stacking(m)]
    first = [m for m in members if m not in stacking]
    for member in stacking:
        first += [n for n in inputs_of(member) if n not in first]
    return first, stacking


def _ensemble_part(spec, member, experiment, stacking, folds, model, state_dicts, trained="untrained") -> dict:
    """One experiment's entry of an ensemble bundle: its network and fold weights, plus its inputs
    (stacking) or its tile size and test tile step (the spec's, else the experiment's own)."""
    common = {"name": member, "amp": str(experiment["amp"]), "trained_precision": trained, "model": model,
              "folds": list(folds), "state_dicts": state_dicts}
    if stacking:
        return {**common, "inputs": list(experiment["inputs"])}
    step = spec["test_tile_step"] or tile_steps(experiment)[1]
    return {**common, "crop_size": int(experiment["crop_size"]), "tile_step": int(step)}


def _ensemble_bundle(name, spec, classes, audio_config: dict, first: list, stacking: list, thresholds=None,
                     test_amp=TEST_AMP) -> dict:
    return {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "name": name, "classes": list(classes),
            "test_amp": test_amp,  # the precision its predictions default to (see the module docstring)
            "audio_config": audio_config, "ensemble": _plain(spec), "first_level": first, "stacking": stacking,
            "thresholds": thresholds}  # yes/no thresholds on the blended out-of-fold predictions, or None


def make_ensemble_bundle(data_dir, name, spec=None) -> dict:
    """One weights-only bundle of a whole ensemble (src/ensembles.py), from its experiment folders.

    Audio settings, classes, the blend spec, and every fold of every experiment
    the blend needs: the first-level members and stacking inputs (network, tile
    size, test tile step = the spec's, else the experiment's own) and the
    stacking members (network, inputs in feature order). A stacking experiment
    is recognised by its config.json (`level: 2`, written by stacking_train.py).
    """
    spec = check_ensemble(get_ensemble(name) if spec is None else spec, name)
    records = {}

    def record_of(member):
        if member not in records:
            records[member] = read_experiment_record(experiments_dir(data_dir, member))
        return records[member]

    first, stacking = _members_by_level(spec["members"], lambda m: record_of(m).get("level") == 2,
                                        lambda m: record_of(m)["experiment"]["inputs"])
    classes, config = None, None
    for member in first + stacking:
        record = record_of(member)
        if classes is None:
            classes = list(record["classes"])
        elif list(record["classes"]) != classes:
            raise BadSetting(f"ensemble {name}: the class list of {member!r} differs from {first[0]!r}'s")
        if member in stacking:
            continue
        if record.get("level") == 2:
            raise BadSetting(f"ensemble {name}: stacking input {member!r} is itself a stacking experiment")
        member_config = _plain(record.get("audio_config", AUDIO.to_dict()))
        if config is not None and member_config != config:
            raise BadSetting(f"ensemble {name}: {member!r} was trained on other audio settings than {first[0]!r}")
        config = member_config

    def part(member):
        exp_dir = experiments_dir(data_dir, member)
        folds, model, state_dicts = fold_weights(exp_dir)
        return _ensemble_part(spec, member, record_of(member)["experiment"], member in stacking, folds, model,
                              state_dicts, trained_precision(exp_dir, folds))

    thresholds = blend_thresholds(data_dir, spec["members"], classes, spec["weights"])
    return _ensemble_bundle(name, spec, classes, config, [part(m) for m in first], [part(m) for m in stacking],
                            thresholds)


def random_ensemble_bundle(name, classes, audio_config: AudioConfig = AUDIO, n_folds=5, seed=0,
                           first_level_kwargs=None, stacking_kwargs=None) -> dict:
    """A bundle of the named ensemble with randomly initialised full-size networks (no training needed):
    the same shapes, files and compute as the trained one, for measuring its size and speed.
    `first_level_kwargs` / `stacking_kwargs` override network settings of every first-level / stacking
    member (e.g. {"base_size": 4, "ratio": 2} for tiny networks in a smoke run)."""
    from src.experiments import get_experiment  # the experiment tables (only needed here)
    from src.models import create_model
    from src.stacking.experiments import STACKING_EXPERIMENTS, get_stacking_experiment

    spec = check_ensemble(get_ensemble(name), name)
    torch.manual_seed(seed)
    first, stacking = _members_by_level(spec["members"], lambda m: m in STACKING_EXPERIMENTS,
                                        lambda m: get_stacking_experiment(m)["inputs"])

    def part(member):
        level2 = member in stacking
        experiment = get_stacking_experiment(member) if level2 else get_experiment(member)
        model_name, kwargs = experiment["model"]
        kwargs = {**kwargs, **((stacking_kwargs if level2 else first_level_kwargs) or {}), "num_classes": len(classes)}
        if level2:
            kwargs["in_features"] = len(experiment["inputs"]) * len(classes)
        states = [{k: v.clone() for k, v in create_model(model_name, **kwargs).state_dict().items()}
                  for _ in range(n_folds)]
        return _ensemble_part(spec, member, experiment, level2, range(n_folds),
                              {"name": model_name, "kwargs": _plain(kwargs)}, states)

    return _ensemble_bundle(name, spec, classes, _plain(audio_config.to_dict()), [part(m) for m in first],
                            [part(m) for m in stacking])


def read_bundle(path) -> dict:
    """The bundle at `path` in the one format (older tagger bundles converted), read with
    torch.load(weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFound(f"{path}: no such model bundle (write one with export.py)")
    bundle = safe_torch_load(path, what="model bundle")
    if isinstance(bundle, dict) and bundle.get("format") == TAGGER_FORMAT:
        bundle = from_tagger_bundle(bundle, path)
    check_ensemble_bundle(bundle, path)
    return bundle
