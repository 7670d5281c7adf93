"""Settings shared by every script: the audio front end and the data root.

The audio settings are the ones of the original 2019 solution (see
docs/recipe.md): 44.1 kHz mono, 128 mel bands, n_fft 2560, hop 690 (about 64
frames a second), frames padded by reflection at the clip's edges (librosa
0.6.3's default) and the short-clip rule the 2019 code ran (see src/audio/frontend.py).
They live in one frozen dataclass whose short hash keys the on-disk feature
cache, so changing any of them can never reuse stale features.
"""
import dataclasses
import hashlib
import json
import os
from pathlib import Path


DATA_DIR_ENV = "FSAT_DATA_DIR"


PAD_MODES = ("reflect", "constant")
SHORT_CLIP_RULES = ("original2019", "centred")
# The values of the newer fields that records without them were computed with (see from_dict).
LEGACY_AUDIO_FIELDS = {"pad_mode": "constant", "short_clip": "centred"}


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    sampling_rate: int = 44100
    n_fft: int = 2560            # 128 * 20
    hop_length: int = 690        # 345 * 2 -> ~64 frames per second
    n_mels: int = 128
    fmin: float = 20.0
    fmax: float = 22050.0
    trim_top_db: float = 60.0    # librosa.effects.trim threshold
    min_seconds: float = 0.5     # clips shorter than this after trimming are extended
    ref: float = 1.0             # power_to_db reference
    amin: float = 1e-10          # power_to_db floor
    top_db: float = 80.0         # dynamic range kept below the max
    # How the centred STFT frames and the trim's RMS frames are padded at the clip's edges:
    # "reflect" as librosa 0.6.3 did in 2019, "constant" (zeros) as librosa >= 0.10 does by default.
    # Only the first and last 1-2 frames of a clip differ (by 1-3.5 dB).
    pad_mode: str = "reflect"
    # What happens to a clip shorter than min_seconds after trimming (src/audio/frontend.py,
    # extend_to_min_length): "original2019" is what the 2019 code ran, "centred" a 0.5 s window
    # of the untrimmed clip centred on the sound (what that code meant to do).
    short_clip: str = "original2019"

    def __post_init__(self):
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"AudioConfig.pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        if self.short_clip not in SHORT_CLIP_RULES:
            raise ValueError(f"AudioConfig.short_clip must be one of {SHORT_CLIP_RULES}, got {self.short_clip!r}")

    @property
    def min_samples(self) -> int:
        return int(round(self.min_seconds * self.sampling_rate))

    @property
    def frames_per_second(self) -> float:
        return self.sampling_rate / self.hop_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "AudioConfig":
        """The settings a `to_dict()` record describes.

        Records written before `pad_mode` / `short_clip` existed were made with
        constant padding and the centred window, so those are filled in for them
        (not today's defaults): a model keeps the front end it was trained with.
        """
        return cls(**{**LEGACY_AUDIO_FIELDS, **values})

    def short_hash(self) -> str:
        """Stable 10-hex-digit hash of the settings (keys the feature cache)."""
        return stable_hash(self.to_dict())


AUDIO = AudioConfig()


def stable_hash(obj, length: int = 10) -> str:
    """Hash of any JSON-serialisable object, independent of dict order and of the Python run."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha1(blob).hexdigest()[:length]


def resolve_data_dir(cli_value=None) -> Path:
    """Data root: the `--data-dir` option, else $FSAT_DATA_DIR, else ./data."""
    if cli_value:
        return Path(cli_value)
    return Path(os.environ.get(DATA_DIR_ENV, "data"))
