"""Tagging from Python: load trained models, tag files or waveforms, get yes/no tags and embeddings.

    from src.tagging import AudioTagger

    tagger = AudioTagger.from_experiment("demo", data_dir="data/demo")  # or .from_bundle("model.pt"),
    probs = tagger.tag(["a.wav", "b.flac"])          # .from_ensemble("demo", data_dir="data/demo")
    tagger.labels(probs)                             # yes/no tags per clip (recorded thresholds)
    tagger.top_k(probs, 3)                           # [(tag, probability)] per clip
    probs = tagger.tag(waveform, sample_rate=22050)  # a NumPy waveform, resampled as files are
    features = tagger.embed("a.wav")                 # (n_clips, n_models, D) pooled features

Files go through exactly what `tag.py` does (decode, mono, resample, trim, log-mel; files over a
minute in chunks); a waveform (n_samples,) or (n_samples, channels) at `sample_rate` is mixed down,
resampled and trimmed the same way. Probabilities combine the models as tag.py does.

Embeddings (`embed`): for every first-level fold model, the features its head sees (the network's
pooled feature vector, `embedding` of src/models) averaged over the clip's tiles. Folds are not
combined: independently trained networks do not share a feature space, so the array is
(n_clips, n_models, D), models in the order `describe()` lists them (each experiment's folds in
turn); `embed(...).mean(axis=1)` or `[:, 0]` gives one vector per clip. All models must have the same D.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from src.audio.fast_frontend import log_mel, read_audio, trim_to_min_length
from src.audio.frontend import AudioReadError, mono_at_rate
from src.errors import BadInput, BadSetting
from src.tagging.files import tag_files
from src.tagging.loading import load_models
from src.thresholds import DEFAULT_THRESHOLD, labels_of


class AudioTagger:
    """Trained models (one experiment, a blend, a bundle or a whole ensemble) behind a few calls."""

    def __init__(self, models):
        self.models = models  # src.predict.ensemble.Ensemble: one experiment, a blend or a named ensemble

    @classmethod
    def from_bundle(cls, path, device="auto", amp=None) -> "AudioTagger":
        """An export.py bundle (one experiment's folds, or a whole ensemble)."""
        return cls(load_models(bundles=[path], device=device, amp=amp))

    @classmethod
    def from_experiment(cls, name, data_dir=None, device="auto", amp=None) -> "AudioTagger":
        """<data_dir>/experiments/NAME (a list of names blends them, as tag.py --experiment A --experiment B)."""
        names = [name] if isinstance(name, str) else list(name)
        return cls(load_models(experiments=names, data_dir=data_dir, device=device, amp=amp))

    @classmethod
    def from_ensemble(cls, name, data_dir=None, device="auto", amp=None) -> "AudioTagger":
        """A named ensemble of src/ensembles.py from its experiment folders."""
        return cls(load_models(ensemble=name, data_dir=data_dir, device=device, amp=amp))

    @property
    def classes(self) -> list:
        return self.models.classes

    @property
    def thresholds(self) -> np.ndarray:
        """(C,) yes/no thresholds: the recorded ones (chosen on out-of-fold predictions), else 0.5."""
        if self.models.thresholds is None:
            return np.full(len(self.classes), DEFAULT_THRESHOLD)
        return self.models.thresholds

    def describe(self) -> str:
        return self.models.describe()

    def tag(self, clips, sample_rate=None, batch_size=128) -> pd.DataFrame:
        """Probabilities, rows = clips (indexed by path, or waveform_0, waveform_1, ...), columns = classes.

        `clips`: a path, a list of paths, or with `sample_rate` a waveform or a list of waveforms."""
        if sample_rate is None:
            paths = _paths(clips)
            results, failures = tag_files(self.models, paths, batch_size, progress=False)
            if failures:
                raise AudioReadError("; ".join(reason for _, reason in failures))
            index, probs = [str(p) for p, _ in results], [p for _, p in results]
        else:
            specs = self._waveform_log_mels(clips, sample_rate)
            index, probs = [f"waveform_{i}" for i in range(len(specs))], self.models.predict(specs, batch_size)
        return pd.DataFrame(np.asarray(probs, np.float32).reshape(len(index), len(self.classes)),
                            index=pd.Index(index, name="clip"), columns=self.classes)

    def labels(self, probs: pd.DataFrame, threshold=None) -> pd.Series:
        """Each clip's yes/no tags (most probable first): classes at or above their threshold (`thresholds`),
        or at or above `threshold` for every class."""
        cuts = self.thresholds if threshold is None else np.full(len(self.classes), float(threshold))
        return pd.Series(labels_of(probs[self.classes].to_numpy(), self.classes, cuts), index=probs.index,
                         name="labels", dtype=object)

    def top_k(self, probs: pd.DataFrame, k=5) -> pd.Series:
        """Each clip's k most probable (tag, probability), most probable first."""
        values = probs[self.classes].to_numpy()
        order = np.argsort(-values, axis=1, kind="stable")[:, :k]
        return pd.Series([[(self.classes[j], float(row[j])) for j in top] for row, top in zip(values, order)],
                         index=probs.index, name="top", dtype=object)

    def embed(self, clips, sample_rate=None, batch_size=128) -> np.ndarray:
        """(n_clips, n_models, D) float32: each fold model's pooled features, mean over a clip's tiles
        (see the module docstring). Whole files are read into memory (no chunking for long ones)."""
        if sample_rate is None:
            config = self.models.audio_config
            specs = [log_mel(read_audio(path, config), config) for path in _paths(clips)]
        else:
            specs = self._waveform_log_mels(clips, sample_rate)
        per_model = [m for member in self.models.members
                     for m in self.models.predictor(member, batch_size).embed(specs)]
        sizes = sorted({m.shape[1] for m in per_model})
        if len(sizes) > 1:
            raise BadSetting(f"the models' embeddings differ in size ({sizes}): embed one experiment at a time")
        return np.stack(per_model, axis=1)

    def _waveform_log_mels(self, clips, sample_rate) -> list:
        config = self.models.audio_config
        waveforms = [clips] if isinstance(clips, np.ndarray) else list(clips)
        if not waveforms or not all(isinstance(w, np.ndarray) for w in waveforms):
            raise BadInput("with sample_rate, give a NumPy waveform or a list of them")
        return [log_mel(trim_to_min_length(mono_at_rate(w, sample_rate, config.sampling_rate, f"waveform_{i}"),
                                           config), config) for i, w in enumerate(waveforms)]

    def __repr__(self):
        return f"AudioTagger({self.describe()})"


def _paths(clips) -> list:
    """A path or a list of paths -> [Path]."""
    if isinstance(clips, np.ndarray):
        raise BadInput("a waveform needs its sample_rate")
    paths = [clips] if isinstance(clips, (str, Path)) else list(clips)
    if not paths:
        raise BadInput("no clips to tag")
    return [Path(p) for p in paths]
