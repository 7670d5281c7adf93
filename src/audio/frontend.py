"""Audio front end: decode a file into a mono 44.1 kHz signal, then a log-mel image.

This module is the reference, written with librosa calls; `src.audio.fast_frontend`
computes the same numbers faster. Two settings of `AudioConfig` choose between
what the 2019 code ran (the defaults) and the newer behaviour:

- `pad_mode`: the centred STFT frames and the RMS frames of the silence trim are
  padded at the clip's edges by reflection ("reflect", librosa 0.6.3 in 2019) or
  with zeros ("constant", librosa >= 0.10's default).
- `short_clip`: a clip shorter than 0.5 s after trimming (librosa-style trim,
  top_db 60) is extended to 0.5 s. "centred" takes 0.5 s of the untrimmed signal
  centred on the trimmed part (shifted to stay inside the clip). "original2019"
  does what the 2019 code ran: it centred its window on half the trimmed
  LENGTH instead of on the trimmed part, so it takes the untrimmed samples
  [0, trimmed_length // 2 + 0.25 s) (clipped to the clip) and zero-pads them
  evenly on both sides to 0.5 s; a sound that starts late in a short clip can
  be lost. See `extend_to_min_length` for the integer arithmetic.

Clips 0.5 s or longer after trimming are the trimmed part under both rules; a
whole clip shorter than 0.5 s is zero-padded evenly under both. Unlike the
original, a file that cannot be decoded (or holds no samples, or is a WAV cut short inside its
samples) raises `AudioReadError` naming the file; it is never silently replaced by zeros.
"""
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from src.config import AUDIO, AudioConfig
from src.errors import UserError


# File extensions taken as audio when a folder is searched (a file named directly is always tried).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".w64", ".rf64", ".caf", ".au")


class AudioReadError(UserError, RuntimeError):
    """A file could not be turned into audio samples (a user error: scripts report it in one line)."""


# A RIFF chunk size that streaming writers put in a header before the length is known; such a file is not
# truncated, just written without going back to the header.
UNKNOWN_RIFF_SIZES = (0, 0xFFFFFFFF)


def check_wav_complete(path) -> None:
    """Refuse a RIFF/WAVE file cut short inside its samples (a half-copied or half-downloaded clip).

    libsndfile decodes such a file without complaint, as the shorter clip the bytes present hold,
    so a damaged training clip would silently become a different one. The header's `data` chunk
    says how many bytes of samples follow; fewer in the file means it was cut. Other formats
    fail to decode when cut (FLAC loses sync, Ogg holds no complete page) and are not checked here.
    """
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        size = Path(path).stat().st_size
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk = handle.read(8)
            length = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                if length not in UNKNOWN_RIFF_SIZES and position + 8 + length > size:
                    raise AudioReadError(f"{path}: truncated WAV file: its header announces {length} bytes of "
                                         f"samples, the file holds {size - position - 8}")
                return
            position += 8 + length + (length & 1)  # chunks are padded to an even length


def decode_audio(path, sampling_rate: int = AUDIO.sampling_rate) -> np.ndarray:
    """Decode any WAV/FLAC/OGG/MP3 libsndfile can read: mono mix-down, resampled, float32."""
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"{path}: no such file")
    check_wav_complete(path)
    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile errors carry no file name of their own
        raise AudioReadError(f"{path}: cannot decode audio ({exc})") from exc
    return mono_at_rate(audio, sr, sampling_rate, source=path)


def mono_at_rate(audio, sr: int, sampling_rate: int = AUDIO.sampling_rate, source="waveform") -> np.ndarray:
    """A waveform (n_samples,) or (n_samples, channels) at rate `sr` as the models hear a decoded file:
    channels mixed down to mono, resampled to `sampling_rate` (soxr_hq), float32."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2:
        raise AudioReadError(f"{source}: audio must be (n_samples,) or (n_samples, channels), got {audio.shape}")
    if audio.shape[0] == 0:
        raise AudioReadError(f"{source}: the file holds no audio samples")
    audio = audio.mean(axis=1)
    if not np.all(np.isfinite(audio)):
        raise AudioReadError(f"{source}: decoded samples contain NaN or infinity")
    if int(sr) != sampling_rate:
        audio = librosa.resample(audio, orig_sr=int(sr), target_sr=sampling_rate, res_type="soxr_hq")
    return np.ascontiguousarray(audio, dtype=np.float32)


# The silence trim's framing (librosa.effects.trim's defaults, in 2019 and today).
TRIM_FRAME_LENGTH = 2048
TRIM_HOP_LENGTH = 512


def trim_bounds(audio: np.ndarray, config: AudioConfig = AUDIO) -> tuple:
    """(start, end) of the non-silent part, as librosa's trim finds it, with `config.pad_mode` framing.

    librosa.effects.trim: frames whose mean square (RMS squared) is more than
    `config.trim_top_db` below the loudest frame's are silent; the kept part runs
    from the first non-silent frame's start to the last one's end (frame t starts
    at t * hop, as librosa counts centred frames). librosa 0.11's trim pads the
    RMS frames with zeros and has no pad_mode, so the frames are computed here
    with `librosa.feature.rms(pad_mode=...)`; with "constant" the result is
    `librosa.effects.trim`'s exactly.
    """
    rms = librosa.feature.rms(y=audio, frame_length=TRIM_FRAME_LENGTH, hop_length=TRIM_HOP_LENGTH,
                              center=True, pad_mode=config.pad_mode)[0]
    db = librosa.power_to_db(rms ** 2, ref=np.max, top_db=None)
    loud = np.flatnonzero(db > -config.trim_top_db)
    if len(loud) == 0:
        return 0, 0
    start = int(loud[0]) * TRIM_HOP_LENGTH
    end = min(len(audio), (int(loud[-1]) + 1) * TRIM_HOP_LENGTH)
    return start, end


def trim_to_min_length(audio: np.ndarray, config: AudioConfig = AUDIO) -> np.ndarray:
    """Trim silence, keeping at least `config.min_seconds` (see module docstring)."""
    start, end = trim_bounds(audio, config)
    return extend_to_min_length(audio, start, end, config)


def extend_to_min_length(audio: np.ndarray, start: int, end: int, config: AudioConfig = AUDIO) -> np.ndarray:
    """`audio[start:end]` (the non-silent part), extended to `config.min_samples` by `config.short_clip`.

    The rules are the module docstring's. Shared by this reference front end and
    `src.audio.fast_frontend`, which finds (start, end) faster but must apply the same rules.
    """
    need = config.min_samples
    if end - start >= need:
        return audio[start:end]
    if config.short_clip == "original2019":
        # The 2019 code, step by step: its window was centred on half the trimmed length L
        # (end - start), not on the trimmed part. With L < need, L // 2 - need // 2 is <= 0, so
        # the window always starts at sample 0; it ends at L // 2 + need // 2 <= need - 1
        # (clipped to the clip), so it is always at least one sample short and always
        # zero-padded: need - len(window) zeros, the smaller half (pad // 2) in front.
        centre = (end - start) // 2
        left, right = max(0, centre - need // 2), min(len(audio), centre + need // 2)
        window = audio[left:right]
        pad = need - len(window)
        return np.pad(window, (pad // 2, pad - pad // 2))
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
        n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax, power=2.0, pad_mode=config.pad_mode)
    db = librosa.power_to_db(mel, ref=config.ref, amin=config.amin, top_db=config.top_db)
    return db.astype(np.float32)


def audio_to_log_mel(path, config: AudioConfig = AUDIO) -> np.ndarray:
    return log_mel(read_audio(path, config), config)
