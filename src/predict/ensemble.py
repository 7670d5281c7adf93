"""The whole ensemble as one predictor: log-mels -> blended probabilities, in memory.

The numbers are the final submission's, computed as the files on disk compute
them (predict_folds.py -> stacking_train.py -> blend.py):

1. each first-level experiment: every fold model's mean over a clip's tiles
   (`Predictor`, tiles of many clips share batches), then the geometric mean
   over the fold models;
2. each stacking model: its input experiments' clip probabilities side by side
   (in the stacking experiment's input order: the features its MLP was trained
   on), through every fold MLP, then the geometric mean over the folds;
3. the (weighted) geometric mean of the ensemble's members.

An `Ensemble` is built from a bundle (`ensemble_from_bundle`): plain dicts,
lists, strings, numbers and tensors, read with `torch.load(weights_only=True)`
(`read_ensemble_bundle`). Its networks are plain torch modules wrapped in
`InferenceModel`, so this module, the Predictor and the networks need neither
argus nor the experiment folders: the offline Kaggle kernel (make_kernel.py)
embeds them as they are. Bundles are written by `export.py --ensemble`
(`src.tagging.bundles.make_ensemble_bundle`).

It is the one inference type: one experiment's folds (a one-level ensemble, blended as blend.py
blends: geometric mean over each experiment's folds, then across experiments), several experiments,
or a whole named ensemble, all built from a bundle dict (src/tagging/bundles.py), so tag.py, demo.py,
the Python API (src/tagging/audio_tagger.py) and the kernel tag files, long files and timelines with
it (`predict`, `classes`, `audio_config`, `members`, `combine`, `describe`, `thresholds`), and it counts
the clips it predicted and the time taken (`throughput`).
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from src.config import AudioConfig
from src.errors import BadCheckpoint, BadSetting, InputFileNotFound
from src.models import create_model, main_output
from src.predict.prediction_sets import geometric_mean
from src.precision import TEST_AMP, autocast, describe_precisions, resolve_precision
from src.predict.predictor import Predictor, Throughput, prediction_precisions
from src.files import safe_torch_load

BUNDLE_FORMAT = "fsat2019-ensemble-bundle"
BUNDLE_VERSION = 1


class InferenceModel:
    """One trained network for prediction only, with the parts of argus' `FreesoundModel` that
    `Predictor` and stacking use: `nn_module`, `device`, `precision` and `autocast()` (its experiment's
    amp as src/precision.py resolves it for training on this device: the card's bf16/fp16 on CUDA,
    fp32 on CPU), `prepare_input`, `prediction_transform` (sigmoid of the main head), `predict`.
    """

    def __init__(self, net: torch.nn.Module, device, amp: str = "bf16"):
        self.device = torch.device(device)
        self.amp = amp
        self.precision = resolve_precision(amp, self.device, training=True)
        self.nn_module = net.to(self.device).eval()

    def eval(self):
        self.nn_module.eval()
        return self

    def autocast(self):
        return autocast(self.device, self.precision)

    def prepare_input(self, input: torch.Tensor) -> torch.Tensor:
        return input

    def prediction_transform(self, prediction) -> torch.Tensor:
        return torch.sigmoid(main_output(prediction).float())

    @torch.no_grad()
    def predict(self, input: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            prediction = self.nn_module(input.to(self.device, non_blocking=True))
        return self.prediction_transform(prediction)


@dataclass
class FirstLevel:
    """The fold models of a first-level experiment and the tiles they see."""
    name: str
    models: list
    folds: list
    tile_size: int
    step: int


@dataclass
class Stacking:
    """The fold MLPs of a stacking experiment and its input experiments (feature order)."""
    name: str
    models: list
    folds: list
    inputs: list


class Ensemble:
    """Blended class probabilities of log-mels: first level, stacking, geometric mean of the members."""

    def __init__(self, name, first_level, stacking, members, weights, classes, audio_config: AudioConfig,
                 batch_size: int = 128, amp=TEST_AMP, thresholds=None):
        self.name, self.first_level, self.stacking = name, list(first_level), list(stacking)
        self.blend, self.weights = list(members), None if weights is None else [float(w) for w in weights]
        self.classes, self.audio_config, self.batch_size = list(classes), audio_config, int(batch_size)
        # First-level precision: fp32 by default, as the 2019 kernel made every test prediction; or a
        # setting of src/precision.py ('auto', 'bf16', 'fp16'), or None for each model's own.
        self.amp = amp
        # Yes/no threshold per class, chosen on the blended out-of-fold predictions; None: not recorded
        self.thresholds = None if thresholds is None else np.asarray(thresholds, np.float64)
        known = [e.name for e in self.first_level]
        repeated = sorted({n for n in known if known.count(n) > 1})
        if repeated:
            raise BadSetting(f"{name}: {repeated} given more than once: blend each experiment once")
        for model in self.stacking:
            missing = [n for n in model.inputs if n not in known]
            if missing:
                raise BadSetting(f"{name}: stacking model {model.name!r} needs first-level experiment(s) {missing}")
        missing = [n for n in self.blend if n not in known + [s.name for s in self.stacking]]
        if missing:
            raise BadSetting(f"{name}: member(s) {missing} have no models")
        if self.weights is not None and len(self.weights) != len(self.blend):
            raise BadSetting(f"{name}: {len(self.weights)} weight(s) for {len(self.blend)} member(s)")
        self.counter = Throughput()  # clips predicted and time taken by predict()

    @property
    def members(self) -> list:
        """The first-level experiments (what tiles are cut for)."""
        return self.first_level

    @property
    def n_models(self) -> int:
        return sum(len(m.models) for m in self.first_level + self.stacking)

    @property
    def device(self):
        return self.first_level[0].models[0].device

    def fold_means(self, specs, batch_size=None) -> dict:
        """{first-level experiment: [each fold model's (n_clips, C) mean over the clips' tiles]}."""
        return {e.name: self.predictor(e, batch_size).predict(specs)[2] for e in self.first_level}

    def predictor(self, experiment: FirstLevel, batch_size=None) -> Predictor:
        return Predictor(experiment.models, experiment.tile_size, experiment.step, batch_size or self.batch_size,
                         amp=self.amp)

    def member_probs(self, fold_means: dict) -> dict:
        """{experiment: (n_clips, C)} for every first-level and stacking experiment, from `fold_means`."""
        probs = {name: geometric_mean(means) for name, means in fold_means.items()}
        for model in self.stacking:
            features = np.concatenate([probs[n] for n in model.inputs], axis=1).astype(np.float32)
            folds = [predict_features(m, features, self.batch_size) for m in model.models]
            probs[model.name] = geometric_mean(folds)
        return probs

    def combine(self, fold_means: dict) -> np.ndarray:
        """The blended (n_clips, C) probabilities from the first-level fold models' clip means."""
        probs = self.member_probs(fold_means)
        return geometric_mean([probs[n] for n in self.blend], self.weights)

    def predict(self, specs, batch_size=None) -> np.ndarray:
        """(len(specs), C) float32 blended probabilities of a list of (n_mels, frames) log-mels."""
        return self.counter.timed(lambda s: self.combine(self.fold_means(s, batch_size)), specs, self.device)

    def throughput(self) -> str:
        return self.counter.report(self.device)

    @property
    def precision(self) -> str:
        """What the first-level networks run in ('fp32', 'bf16', ...)."""
        models = [m for e in self.first_level for m in e.models]
        return describe_precisions(prediction_precisions(models, self.amp, self.device))

    def describe(self) -> str:
        if not self.stacking and self.weights is None and self.blend == [e.name for e in self.first_level]:
            # experiments (one or several) as tag.py --experiment / --model loads them
            parts = [f"{e.name} ({len(e.models)} fold model{'s' * (len(e.models) != 1)}, tiles {e.tile_size} "
                     f"every {e.step} frames)" for e in self.first_level]
            return " + ".join(parts) + f"; {len(self.classes)} classes; {self.device}, {self.precision}"
        weights = "equal weights" if self.weights is None else "weights " + " ".join(f"{w:g}" for w in self.weights)
        first = ", ".join(f"{e.name} ({len(e.models)} folds, tiles {e.tile_size} every {e.step})"
                          for e in self.first_level)
        second = ", ".join(f"{s.name} ({len(s.models)} folds)" for s in self.stacking) or "none"
        return (f"ensemble {self.name}: geometric mean ({weights}) of {', '.join(self.blend)}; first level: {first}; "
                f"stacking: {second}; {self.n_models} models, {len(self.classes)} classes; {self.device}, "
                f"{self.precision}")

    def __repr__(self):
        return f"Ensemble({self.describe()})"


def predict_features(model, features: np.ndarray, batch_size: int) -> np.ndarray:
    """Sigmoid probabilities (n, C) of a stacking model (argus or `InferenceModel`) for (n, F) features,
    in batches: what stacking_train.py predicts on disk and the ensemble in memory."""
    out = [model.predict(torch.from_numpy(features[i:i + batch_size])).float().cpu().numpy()
           for i in range(0, len(features), batch_size)]
    return np.concatenate(out)


# ----------------------------------------------------------------------------- bundles

def read_ensemble_bundle(path) -> dict:
    """An ensemble bundle, read with `torch.load(weights_only=True)` (no pickled code can run)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFound(f"{path}: no such ensemble bundle (write one with export.py --ensemble)")
    bundle = safe_torch_load(path, what="ensemble bundle")
    check_ensemble_bundle(bundle, path)
    return bundle


def is_ensemble_bundle(bundle) -> bool:
    return isinstance(bundle, dict) and bundle.get("format") == BUNDLE_FORMAT


def check_ensemble_bundle(bundle, source="bundle"):
    if not is_ensemble_bundle(bundle):
        raise BadCheckpoint(f"{source}: not a model bundle written by export.py")
    if bundle.get("version") != BUNDLE_VERSION:
        raise BadCheckpoint(f"{source}: ensemble bundle version {bundle.get('version')}, this code reads "
                            f"{BUNDLE_VERSION}")


def _models(part: dict, device) -> list:
    """One InferenceModel per fold state dict of a bundle part."""
    if not part["state_dicts"] or len(part["state_dicts"]) != len(part["folds"]):
        raise ValueError(f"{part['name']}: {len(part['state_dicts'])} fold weights for folds {part['folds']}")
    models = []
    for state_dict in part["state_dicts"]:
        net = create_model(part["model"]["name"], **part["model"]["kwargs"])
        net.load_state_dict(state_dict)
        models.append(InferenceModel(net, device, part["amp"]))
    return models


# What building an Ensemble raises when torch read a bundle file whose content is not the bundle format:
# a part missing or of the wrong type, weights that do not fit their network (damaged or hand-edited).
BUNDLE_DAMAGE = (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError)


def damaged_bundle(source, exc) -> BadCheckpoint:
    reason = str(exc).splitlines()[0][:200] if str(exc) else ""
    return BadCheckpoint(f"{source}: damaged model bundle, its models cannot be rebuilt "
                         f"({type(exc).__name__}: {reason})")


def check_bundle_models(bundle: dict, source="bundle"):
    """Rebuild every network of a bundle once on the CPU, one experiment at a time (so the memory beyond
    the bundle is one experiment's fold models, not the whole ensemble's): a BadCheckpoint naming
    `source` if any part is damaged. For writers of things that load the bundle elsewhere (make_kernel.py)."""
    check_ensemble_bundle(bundle, source)
    try:
        parts = [*bundle["first_level"], *bundle["stacking"]]
        for part in parts:
            _models(part, "cpu")
        missing = [m for m in bundle["ensemble"]["members"] if m not in {p["name"] for p in parts}]
        if missing:
            raise KeyError(f"members {missing} have no models")
    except BUNDLE_DAMAGE as exc:
        raise damaged_bundle(source, exc) from exc


def ensemble_from_bundle(bundle: dict, device="cpu", step=None, batch_size: int = 128, source="bundle",
                         amp="bundle") -> Ensemble:
    """The Ensemble of a bundle dict on `device`; `step` overrides every first-level test tile step;
    `amp` is the first level's precision setting (src/precision.py; None: each model's own), by default
    the bundle's `test_amp` (fp32 in bundles written before it was recorded, as the 2019 kernel ran)."""
    check_ensemble_bundle(bundle, source)
    try:
        first = [FirstLevel(p["name"], _models(p, device), list(p["folds"]), int(p["crop_size"]),
                            int(step or p["tile_step"])) for p in bundle["first_level"]]
        second = [Stacking(p["name"], _models(p, device), list(p["folds"]), list(p["inputs"]))
                  for p in bundle["stacking"]]
        members, weights = bundle["ensemble"]["members"], bundle["ensemble"]["weights"]
        classes, name = list(bundle["classes"]), str(bundle["name"])
        thresholds = bundle.get("thresholds")  # bundles written before thresholds were recorded: none
        if thresholds is not None:
            thresholds = [float(dict(zip(thresholds["classes"], thresholds["thresholds"]))[c]) for c in classes]
    except BUNDLE_DAMAGE as exc:
        raise damaged_bundle(source, exc) from exc
    try:
        config = AudioConfig.from_dict(bundle["audio_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadCheckpoint(f"{source}: audio settings do not match AudioConfig ({exc})") from exc
    if amp == "bundle":
        amp = bundle.get("test_amp", TEST_AMP)
    try:
        return Ensemble(name, first, second, members, weights, classes, config, batch_size, amp, thresholds)
    except BadSetting as exc:  # the bundle's parts disagree with its blend spec: name the file
        raise BadCheckpoint(f"{source}: inconsistent model bundle ({exc})") from exc


def load_ensemble_bundle(path, device="cpu", step=None, batch_size: int = 128, amp="bundle") -> Ensemble:
    return ensemble_from_bundle(read_ensemble_bundle(path), device, step, batch_size, source=path, amp=amp)
