"""Audio front end: decode a file into a mono 44.1 kHz signal, then a log-mel image.

`read_audio` follows the original's rules: trim leading/trailing silence
(librosa-style, top_db 60); a clip shorter than 0.5 s after trimming takes
0.5 s of the untrimmed signal around the trimmed part, and one still shorter
is zero-padded evenly on both sides. Unlike the original, a file that cannot
be decoded (or holds no samples) raises `AudioReadError` naming the file; it
is never silently replaced by zeros.
"""
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from src.config import AUDIO, AudioConfig


class AudioReadError(RuntimeError):
    """A file could not be turned into audio samples."""


def decode_audio(path, sampling_rate: int = AUDIO.sampling_rate) -> np.ndarray:
    """Decode any WAV/FLAC/OGG/MP3 libsndfile can read: mono mix-down, resampled, float32."""
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"{path}: no such file")
    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile errors carry no file name of their own
        raise AudioReadError(f"{path}: cannot decode audio ({exc})") from exc
    if audio.shape[0] == 0:
        raise AudioReadError(f"{path}: the file holds no audio samples")
    audio = audio.mean(axis=1)
    if not np.all(np.isfinite(audio)):
        raise AudioReadError(f"{path}: decoded samples contain NaN or infinity")
    if sr != sampling_rate:
        audio = librosa.resample(audio, orig_sr=sr, target_sr=sampling_rate, res_type="soxr_hq")
    return np.ascontiguousarray(audio, dtype=np.float32)


def trim_to_min_length(audio: np.ndarray, config: AudioConfig = AUDIO) -> np.ndarray:
    """Trim silence, keeping at least `config.min_seconds` (see module docstring)."""
    _, (start, end) = librosa.effects.trim(audio, top_db=config.trim_top_db)
    return extend_to_min_length(audio, int(start), int(end), config)


def extend_to_min_length(audio: np.ndarray, start: int, end: int, config: AudioConfig = AUDIO) -> np.ndarray:
    """`audio[start:end]` (the non-silent part), extended to `config.min_seconds`.

    The rules are the module docstring's. Shared by this reference front end and
    `src.fast_frontend`, which finds (start, end) faster but must apply the same rules.
    """
    need = config.min_samples
    if end - start >= need:
        return audio[start:end]
    if len(audio) <= need:
        pad = need - len(audio)
        return np.pad(audio, (pad // 2, pad - pad // 2))
    # Centre a window of `need` samples on the trimmed part, shifted to stay inside the clip.
    centre = (start + end) // 2
    left = min(max(centre - need // 2, 0), len(audio) - need)
    return audio[left:left + need]


def read_audio(path, config: AudioConfig = AUDIO) -> np.ndarray:
    """Decoded, trimmed, float32 mono audio at `config.sampling_rate`."""
    return trim_to_min_length(decode_audio(path, config.sampling_rate), config)


def log_mel(audio: np.ndarray, config: AudioConfig = AUDIO) -> np.ndarray:
    """Power mel spectrogram in dB, float32 of shape (n_mels, 1 + len(audio) // hop)."""
    mel = librosa.feature.melspectrogram(
        y=audio, sr=config.sampling_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax, power=2.0)
    db = librosa.power_to_db(mel, ref=config.ref, amin=config.amin, top_db=config.top_db)
    return db.astype(np.float32)


def audio_to_log_mel(path, config: AudioConfig = AUDIO) -> np.ndarray:
    return log_mel(read_audio(path, config), config)
