"""Stage 1, audio: decode a file, trim silence, log-mel image; the feature cache; streamed audio.

    frontend.py       read_audio / log_mel with librosa (the reference front end)
    fast_frontend.py  the same maths several times faster (the feature cache uses it)
    cache.py          on-disk, checked cache of a CSV's log-mels
    streaming.py      long files and live sources as chunks, in flat memory
    deltas.py         delta features, the one implementation (numpy per clip, per batch, traced module)
"""
