"""Trained models for tagging, all of one kind: an `Ensemble` (src/predict/ensemble.py) of one or more
first-level experiments (and stacking models for a named ensemble), always built from a bundle dict.

- an experiment folder (`load_experiment`): its bundle dict (`make_bundle`), a one-level ensemble;
- a bundle file (`load_bundle`): export.py's one format (`fsat2019-ensemble-bundle`); one-experiment
  bundles of the older tagger format (`fsat2019-tagger-bundle`) still load, converted;
- several of either (`blend`): one ensemble over all their first-level experiments, combined as blend.py
  combines experiments (geometric mean over each one's folds, then across experiments);
- a named ensemble (`load_ensemble`): first level, stacking and blend from the experiment folders.

Precision defaults (src/precision.py) travel in the bundle as `test_amp`: 'auto' for an experiment's
bundle (the fastest safe precision, as tag.py always tagged), 'none' (fp32) for a named ensemble, as
the 2019 kernel made its test predictions.
"""
import json
from pathlib import Path

import torch

from src.train.checkpoints import read_checkpoint
from src.config import AUDIO, AudioConfig, resolve_data_dir
from src.ensembles import ENSEMBLES, check_ensemble, get_ensemble
from src.errors import BadCheckpoint, BadSetting, InputFileNotFound
from src.experiment_folder import (best_checkpoint, experiments_dir, read_experiment_record, trained_folds,
                                   trained_precision)
from src.predict.ensemble import (BUNDLE_FORMAT, BUNDLE_VERSION, Ensemble, check_ensemble_bundle,
                                  ensemble_from_bundle)
from src.predict.blending import blend_thresholds
from src.predict.predictor import AMP_CHOICES, tile_steps
from src.precision import TEST_AMP
from src.thresholds import thresholds_from_record
from src.utils import pick_device, safe_torch_load

TAG_AMP = "auto"  # the default precision of an experiment's bundle: tag.py's (see the module docstring)
TAGGER_FORMAT = "fsat2019-tagger-bundle"  # one-experiment bundles written before the ensemble format held them


def load_experiment(data_dir, name, device, step=None) -> Ensemble:
    """The one-level Ensemble of <data_dir>/experiments/NAME (all its trained folds), through its bundle dict."""
    return ensemble_from_bundle(make_bundle(data_dir, name), device, step, source=f"experiment {name}")


def experiments_thresholds(data_dir, names, classes, weights=None):
    """(C,) yes/no thresholds of one experiment or a blend of several (`blend_thresholds`), or None."""
    record = blend_thresholds(data_dir, names, classes, weights)
    return None if record is None else thresholds_from_record(record, classes, f"thresholds of {names}")


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


def load_ensemble(data_dir, name, device, step=None, batch_size=128) -> Ensemble:
    """The Ensemble of a named ensemble, from its experiment folders (through the same bundle dict
    that export.py --ensemble writes, so both give the same models)."""
    return ensemble_from_bundle(make_ensemble_bundle(data_dir, name), device, step, batch_size,
                                source=f"ensemble {name}")


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


def add_model_args(parser):
    """--experiment/--model/--data-dir/--device/--step/--batch-size, shared by tag.py and demo.py."""
    group = parser.add_argument_group("models (repeat --experiment/--model to blend them)")
    group.add_argument("--experiment", action="append", default=[], metavar="NAME",
                       help="experiment folder <data>/experiments/NAME (all its fold models)")
    group.add_argument("--model", action="append", default=[], metavar="BUNDLE.pt",
                       help="model bundle written by export.py (no experiment folder needed); an ensemble "
                            "bundle (export.py --ensemble) is used alone")
    group.add_argument("--ensemble", choices=sorted(ENSEMBLES),
                       help="a whole named ensemble (src/ensembles.py): first level, stacking and blend, "
                            "from the experiment folders; used alone")
    group.add_argument("--data-dir", help="data root holding experiments/ (default: $FSAT_DATA_DIR or ./data)")
    group.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', ...")
    group.add_argument("--step", type=int, help="tile step in frames (default: each model's test step: an "
                       "experiment's test_tile_step, a bundle's tile_step)")
    group.add_argument("--batch-size", type=int, default=128, help="tiles per batch (default 128; a CPU forward "
                       "pass takes 16 of them at a time)")
    group.add_argument("--amp", choices=AMP_CHOICES,
                       help="precision of the networks (src/precision.py). Default for --experiment/--model: "
                       "'auto' = bf16 autocast on a CPU with native bf16 (AVX512-BF16, AMX), else fp32; on CUDA "
                       "the card's (bf16 from compute capability 8.0, fp16 on 7.x, fp32 below). Default for "
                       "--ensemble and ensemble bundles: 'none' = fp32, as the 2019 kernel made its test "
                       "predictions. 'bf16' (never on a GPU without native bf16), 'fp16' (CUDA), 'none' = fp32")


def load_tagger(args):
    """The models of tag.py's / demo.py's --experiment, --model and --ensemble arguments (`load_models`)."""
    return load_models(args.experiment, args.model, getattr(args, "ensemble", None), args.data_dir, args.device,
                       args.step, args.batch_size, getattr(args, "amp", None))


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
