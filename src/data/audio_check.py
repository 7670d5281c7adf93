"""Read-check of an audio file before it enters a data set: does the repo's reader get sound out of it?

Training would otherwise stop on the file hours later (the feature cache decodes every clip),
or learn from a clip of pure digital silence.
"""
from pathlib import Path

import numpy as np
import soundfile as sf

from src.audio.frontend import AudioReadError, decode_audio


def audio_problem(path) -> str:
    """Why `path` is not usable audio ('' when it is): empty file, undecodable, no samples, NaN, all zero.

    Decoded by src.audio.frontend.decode_audio, at the file's own rate (a check needs no resampling).
    """
    path = Path(path)
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        rate = sf.info(str(path)).samplerate
    except Exception as exc:  # libsndfile's errors vary by format; its message says what it found
        return f"cannot decode audio ({exc})"
    try:
        audio = decode_audio(path, rate)
    except AudioReadError as exc:
        return str(exc).split(": ", 1)[-1] if str(exc).startswith(str(path)) else str(exc)
    if not np.any(audio):
        return "silent: every sample is 0"
    return ""
