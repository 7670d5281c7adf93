"""Trained models for tagging: a `Tagger` from an experiment folder, an export bundle, or a blend of several;
a whole named ensemble (`src.predict.ensemble.Ensemble`) from its experiment folders or its bundle."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from src.train.argus_model import FreesoundModel
from src.train.checkpoints import read_checkpoint
from src.config import AUDIO, AudioConfig, resolve_data_dir
from src.ensembles import ENSEMBLES, check_ensemble, get_ensemble
from src.errors import BadCheckpoint, BadInput, BadSetting, InputFileNotFound
from src.experiment_folder import (best_checkpoint, experiments_dir, read_experiment_record, trained_folds,
                                   trained_precision)
from src.predict.ensemble import (BUNDLE_FORMAT as ENSEMBLE_FORMAT, BUNDLE_VERSION as ENSEMBLE_VERSION, Ensemble,
                                  ensemble_from_bundle, is_ensemble_bundle)
from src.predict.blending import blend_thresholds
from src.predict.prediction_sets import geometric_mean
from src.predict.predictor import AMP_CHOICES, Predictor, Throughput, load_fold_models, tile_steps
from src.precision import TEST_AMP
from src.thresholds import thresholds_from_record
from src.utils import pick_device, safe_torch_load

BUNDLE_FORMAT = "fsat2019-tagger-bundle"
BUNDLE_VERSION = 1


@dataclasses.dataclass
class Member:
    """The fold models of one experiment (or bundle) and how to tile spectrograms for them."""
    name: str
    models: list
    tile_size: int
    step: int


class Tagger:
    """Class probabilities of log-mels as blend.py combines experiments: per member the geometric mean over
    its fold models, then the geometric mean over the members (each member weighs the same, whatever its
    number of folds)."""

    def __init__(self, members, classes, audio_config: AudioConfig = AUDIO, amp="auto", thresholds=None):
        self.members, self.classes, self.audio_config = list(members), list(classes), audio_config
        # Yes/no threshold per class (src/thresholds.py), chosen on out-of-fold predictions; None: not recorded
        self.thresholds = None if thresholds is None else np.asarray(thresholds, np.float64)
        # Predictor precision (src/precision.py; tag.py --amp): 'auto' (the card's on CUDA, bf16 on a CPU
        # with native bf16, else fp32), 'bf16', 'fp16', 'none' (fp32), or None (each model's own).
        self.amp = amp
        if not self.members:
            raise ValueError("a Tagger needs at least one member")
        names = [m.name for m in self.members]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise BadSetting(f"{repeated} given more than once: blend each experiment once")
        self.counter = Throughput()  # clips predicted and time taken by predict()

    @property
    def n_models(self) -> int:
        return sum(len(m.models) for m in self.members)

    @property
    def device(self):
        return self.members[0].models[0].device

    def predict(self, specs, batch_size: int = 128) -> np.ndarray:
        """(len(specs), n_classes) float32 probabilities of a list of (n_mels, frames) log-mels."""
        return self.counter.timed(lambda s: self.combine({m.name: self.predictor(m, batch_size).predict(s)[2]
                                                          for m in self.members}), specs, self.device)

    def throughput(self) -> str:
        """Clips predicted, time taken and clips/s so far."""
        return self.counter.report(self.device)

    def predictor(self, member: Member, batch_size: int = 128) -> Predictor:
        return Predictor(member.models, member.tile_size, member.step, batch_size, amp=self.amp)

    def combine(self, fold_means: dict) -> np.ndarray:
        """The prediction from {member name: [each fold model's clip means]}: geometric mean over each
        member's folds, then over the members (as blend.py combines experiments' fold-mean predictions)."""
        members = [means[0] if len(means) == 1 else geometric_mean(means) for means in fold_means.values()]
        return members[0] if len(members) == 1 else geometric_mean(members)

    def describe(self) -> str:
        parts = [f"{m.name} ({len(m.models)} fold model{'s' * (len(m.models) != 1)}, tiles {m.tile_size} "
                 f"every {m.step} frames)" for m in self.members]
        precision = self.predictor(self.members[0]).precision
        return " + ".join(parts) + f"; {len(self.classes)} classes; {self.device}, {precision}"

    def __repr__(self):
        return f"Tagger({self.describe()})"


def _audio_config(values: dict, source) -> AudioConfig:
    try:
        return AudioConfig.from_dict(values)  # records older than pad_mode / short_clip: their settings
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{source}: audio settings {sorted(values)} do not match AudioConfig ({exc})") from exc


def load_experiment(data_dir, name, device, step=None) -> Tagger:
    """A Tagger from the fold checkpoints of <data_dir>/experiments/NAME."""
    exp_dir = experiments_dir(data_dir, name)
    record = read_experiment_record(exp_dir, hint=" or pass a bundle with --model")
    experiment = record["experiment"]
    models = load_fold_models(exp_dir, device)
    # Tagging is test-time prediction: the experiment's test step (128 frames for the 2019 members).
    member = Member(name, [models[f] for f in sorted(models)], int(experiment["crop_size"]),
                    tile_steps(experiment, step)[1])
    config = _audio_config(record.get("audio_config", AUDIO.to_dict()), exp_dir / "config.json")
    return Tagger([member], record["classes"], config, thresholds=experiments_thresholds(data_dir, [name],
                                                                                        record["classes"]))


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
    """Everything `tag.py --model` needs, as plain dicts/lists/str/numbers and tensors."""
    exp_dir = experiments_dir(data_dir, name)
    record = read_experiment_record(exp_dir)
    folds, model, state_dicts = fold_weights(exp_dir)
    experiment = record["experiment"]
    return {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "name": name,
        "classes": list(record["classes"]),
        "audio_config": _plain(record.get("audio_config", AUDIO.to_dict())),
        "crop_size": int(experiment["crop_size"]),
        "tile_step": tile_steps(experiment)[1],  # the test-time step: a bundle only tags
        "amp": str(experiment["amp"]),
        "trained_precision": trained_precision(exp_dir, folds),
        "model": model,
        "folds": folds,
        "state_dicts": state_dicts,
        "thresholds": blend_thresholds(data_dir, [name], record["classes"]),  # None when not recorded
    }


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


def _ensemble_bundle(name, spec, classes, audio_config: dict, first: list, stacking: list, thresholds=None) -> dict:
    return {"format": ENSEMBLE_FORMAT, "version": ENSEMBLE_VERSION, "name": name, "classes": list(classes),
            "test_amp": TEST_AMP,  # the precision its test predictions default to (fp32, as the 2019 kernel)
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


def _load_bundle_file(path):
    """Whatever bundle is at `path` (tagger or ensemble), read once with torch.load(weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFound(f"{path}: no such model bundle (write one with export.py)")
    return safe_torch_load(path, what="model bundle")


def check_bundle(bundle, path):
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise BadCheckpoint(f"{path}: not a tagger bundle written by export.py")
    if bundle.get("version") != BUNDLE_VERSION:
        raise BadCheckpoint(f"{path}: bundle version {bundle.get('version')}, this code reads {BUNDLE_VERSION}")


def read_bundle(path) -> dict:
    bundle = _load_bundle_file(path)
    check_bundle(bundle, path)
    return bundle


def bundle_models(bundle: dict, device) -> list:
    """One argus FreesoundModel per fold state dict of a bundle (inference only: no loss, no optimizer)."""
    models = []
    for state_dict in bundle["state_dicts"]:
        model = FreesoundModel({"nn_module": (bundle["model"]["name"], dict(bundle["model"]["kwargs"])),
                                "loss": None, "optimizer": None, "device": str(device), "amp": bundle["amp"]})
        model.get_nn_module().load_state_dict(state_dict)
        model.eval()
        models.append(model)
    return models


def load_bundle(path, device, step=None):
    """A Tagger of an export.py bundle, or the Ensemble of an ensemble bundle."""
    bundle = _load_bundle_file(path)
    if is_ensemble_bundle(bundle):
        return ensemble_from_bundle(bundle, device, step, source=path)
    check_bundle(bundle, path)
    member = Member(bundle["name"], bundle_models(bundle, device), bundle["crop_size"],
                    int(step or bundle["tile_step"]))
    thresholds = bundle.get("thresholds")  # bundles written before thresholds were recorded: none
    return Tagger([member], bundle["classes"], _audio_config(bundle["audio_config"], path),
                  thresholds=None if thresholds is None else thresholds_from_record(thresholds, bundle["classes"],
                                                                                    path))


def blend(taggers) -> Tagger:
    """One Tagger over all members of several; they must share classes (in order) and audio settings."""
    taggers = list(taggers)
    first = taggers[0]
    for other in taggers[1:]:
        names = f"{first.members[0].name} and {other.members[0].name}"
        if other.classes != first.classes:
            raise BadSetting(f"cannot blend {names}: their class lists differ")
        if other.audio_config != first.audio_config:
            raise BadSetting(f"cannot blend {names}: they were trained on different audio settings")
    return Tagger([m for t in taggers for m in t.members], first.classes, first.audio_config,
                  thresholds=first.thresholds if len(taggers) == 1 else None)  # a blend's: see load_tagger


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
                batch_size=128, amp=None):
    """The blended Tagger of experiment folders and bundles, or the Ensemble of a named ensemble (or of an
    ensemble bundle given alone). `amp` None keeps the models' own default (see tag.py --amp)."""
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
        if any(isinstance(t, Ensemble) for t in taggers) and len(taggers) > 1:
            raise BadSetting("an ensemble bundle is a whole blend: give it alone to --model")
        tagger = taggers[0] if isinstance(taggers[0], Ensemble) else blend(taggers)
        if len(taggers) > 1 and not bundles:  # several experiments: thresholds of their blend
            tagger.thresholds = experiments_thresholds(data_dir, experiments, tagger.classes)
    if amp is not None:  # else the tagger's own default (see --amp's help)
        tagger.amp = amp
    return tagger
