"""Live tagging: a rolling buffer over any chunk source (microphone or a replayed file)."""
import numpy as np

from src.audio.fast_frontend import log_mel
from src.tagging.files import top_k
from src.predict.ensemble import Ensemble


def live_tags(tagger: Ensemble, chunks, buffer_seconds=4.0, interval=1.0, batch_size=128):
    """Yield (time in seconds, probs) every `interval` seconds of a chunk stream.

    Each prediction sees the last `buffer_seconds` of audio (less at the
    start), turned into a log-mel exactly like a clip -- without silence
    trimming, which would make the buffer's length and timing jump around.
    Chunks are split at interval boundaries, so the result at time t depends
    only on the audio up to t, whatever the chunk size of the source.
    """
    config = tagger.audio_config
    rate = config.sampling_rate
    size, step = int(round(buffer_seconds * rate)), int(round(interval * rate))
    if size < 1 or step < 1:
        raise ValueError(f"buffer_seconds and interval must be positive, got {buffer_seconds} and {interval}")
    buffer = np.zeros(0, np.float32)
    heard, next_at = 0, step
    for chunk in chunks:
        chunk = np.asarray(chunk, np.float32)
        while len(chunk):
            take = min(len(chunk), next_at - heard)
            buffer = np.concatenate([buffer, chunk[:take]])[-size:]
            heard += take
            chunk = chunk[take:]
            if heard == next_at:
                yield heard / rate, tagger.predict([log_mel(buffer, config)], batch_size)[0]
                next_at += step


def format_live(seconds, probs, classes, k) -> str:
    return f"{seconds:8.1f} s  " + "  ".join(f"{label} {prob:.2f}" for label, prob in top_k(probs, classes, k))
