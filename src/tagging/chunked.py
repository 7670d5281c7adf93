"""Tagging one long file in flat memory: the whole-file prediction of `tag_files`, computed from chunks.

The whole-file path decodes the file, trims its silence, computes the log-mel
of the trimmed part (clipped 80 dB below its maximum), pads it with its
minimum so tiles cover it, and averages each fold model's tile probabilities.
Each step depends on the whole file only through a few numbers, so a long file
is streamed three times (`src.audio.streaming.stream_audio`, a few seconds of audio
in memory at a time):

1. trim: the energy of every 512-sample block (8 bytes kept per 512 samples)
   gives the trim's start and end (librosa's framing: 2048-sample frames every
   512 samples, padded at both ends by `AudioConfig.pad_mode`), decided in
   float64 as `src.audio.fast_frontend.trim_bounds` does. The reference decides in
   float32; the two can differ only when the first or last non-silent frame
   lies within about 0.04 dB of the 60 dB threshold.
2. range: the trimmed part through `StreamingLogMel` (frames equal to
   `log_mel`'s before the dB clipping): its frame count, maximum and minimum.
3. tiles, per member: the trimmed part again, clipped at max - top_db, padded
   the way `pad_for_tiles` pads, cut into tiles; each fold model's tile
   probabilities are summed, and the clip's probabilities are the geometric
   mean over models of their tile means, as in `Ensemble.predict` (`tagger.combine`: an ensemble
   continues with its stacking models and blend).

So the result equals the whole-file path's up to float rounding (tested
within 1e-5). Two cases are read into memory instead, both bounded: a file
whose trimmed part is shorter than `in_memory_seconds` (the whole-file path on
that part), and a long file that is silent except for less than 0.5 s (the
whole-file path on the whole file, whose short-clip rule picks samples around
the sound: rare, and the one case whose memory grows with the file).
"""
import numpy as np

from src.audio.fast_frontend import TRIM_AMIN, log_mel, read_audio
from src.audio.frontend import TRIM_FRAME_LENGTH, TRIM_HOP_LENGTH
from src.predict.predictor import pad_for_tiles
from src.audio.streaming import stream_audio, stream_log_mel
from src.tagging.timeline import sliding_windows


def _trim_padded_stream(path, config, chunk_seconds, counter):
    """The decoded file padded by frame_length // 2 at both ends as the trim's RMS framing pads it
    (`config.pad_mode`: zeros, or a reflection of the first/last samples), chunk by chunk."""
    half = TRIM_FRAME_LENGTH // 2
    carry, started = np.zeros(0, np.float32), False
    for chunk in stream_audio(path, config.sampling_rate, chunk_seconds):
        counter[0] += len(chunk)
        data = np.concatenate([carry, chunk])
        if not started:
            if len(data) <= half:
                carry = data
                continue
            yield np.zeros(half, np.float32) if config.pad_mode == "constant" else data[half:0:-1]
            started = True
        # hold back the last half + 1 samples: the end's reflection is made of them
        cut = max(len(data) - (half + 1), 0)
        if cut:
            yield data[:cut]
        carry = data[cut:]
    if not started or len(carry) < half + 1:
        raise ValueError(f"{path}: too short to stream ({counter[0]} samples)")
    yield carry
    yield np.zeros(half, np.float32) if config.pad_mode == "constant" else carry[-2:-(half + 2):-1]


def stream_trim_bounds(path, config, chunk_seconds=10.0) -> tuple:
    """(start, end, n_samples): the part of the decoded file the trim keeps (`src.audio.frontend.trim_bounds`),
    from one streamed pass, with `src.audio.fast_frontend.trim_bounds`'s float64 block energies."""
    hop, counter = TRIM_HOP_LENGTH, [0]
    parts, carry = [], np.zeros(0)
    for piece in _trim_padded_stream(path, config, chunk_seconds, counter):
        data = np.concatenate([carry, piece.astype(np.float64)])
        whole = len(data) // hop * hop
        parts.append(np.square(data[:whole]).reshape(-1, hop).sum(axis=1))
        carry = data[whole:]
    n, k = counter[0], TRIM_FRAME_LENGTH // hop
    n_frames = 1 + n // hop  # librosa's centred framing; its frames end within the padded stream
    blocks = np.concatenate(parts)[:n_frames + k - 1]
    energy = np.convolve(blocks, np.ones(k), mode="valid")  # frame t = blocks t .. t + k - 1
    power = np.maximum(energy / TRIM_FRAME_LENGTH, TRIM_AMIN)
    loud = np.flatnonzero(power / power.max() > 10.0 ** (-config.trim_top_db / 10.0))
    if len(loud) == 0:
        return 0, 0, n
    return int(loud[0]) * hop, min(n, (int(loud[-1]) + 1) * hop), n


def stream_range(path, config, start, end, chunk_seconds=10.0):
    """Yield the decoded samples start..end of a file, chunk by chunk."""
    position = 0
    for chunk in stream_audio(path, config.sampling_rate, chunk_seconds):
        a, b = max(start - position, 0), min(end - position, len(chunk))
        if a < b:
            yield chunk[a:b]
        position += len(chunk)
        if position >= end:
            break


def _log_mel_blocks(path, config, start, end, chunk_seconds):
    return stream_log_mel(stream_range(path, config, start, end, chunk_seconds), config)


def tile_padding(frames: int, tile_size: int, step: int) -> tuple:
    """(left, right) frames that `pad_for_tiles` adds, read off a padded ramp 1..frames (frames >= 2).

    Asking pad_for_tiles itself keeps this path in step with however the
    whole-file path pads (it pads with the minimum, here the ramp's 1).
    """
    ramp = pad_for_tiles(np.arange(1, frames + 1, dtype=np.float32)[None], tile_size, step)[0]
    left = int(np.argmax(ramp > 1)) - 1
    return left, len(ramp) - left - frames


def _clipped_padded_blocks(path, config, start, end, chunk_seconds, floor, pad_value, left, right):
    n_mels = config.n_mels
    if left:
        yield np.full((n_mels, left), pad_value, np.float32)
    for block in _log_mel_blocks(path, config, start, end, chunk_seconds):
        yield np.maximum(block, floor) if floor is not None else block
    if right:
        yield np.full((n_mels, right), pad_value, np.float32)


def tag_long_file(tagger, path, batch_size=128, chunk_seconds=10.0, in_memory_seconds=60.0) -> np.ndarray:
    """Class probabilities of a file, equal to `tag_files`'s, with a few seconds of audio in memory at a time."""
    config = tagger.audio_config
    try:
        start, end, n = stream_trim_bounds(path, config, chunk_seconds)
    except ValueError:  # fewer samples than one trim frame: nothing to stream
        start = end = 0
    if end - start < config.min_samples:  # the short-clip rule needs samples around the sound
        return tagger.predict([log_mel(read_audio(path, config), config)], batch_size)[0]
    if end - start <= in_memory_seconds * config.sampling_rate:
        audio = np.concatenate(list(stream_range(path, config, start, end, chunk_seconds)))
        return tagger.predict([log_mel(audio, config)], batch_size)[0]

    # pass 2: the frame count and dB range of the whole trimmed log-mel
    frames, top, bottom = 0, -np.inf, np.inf
    for block in _log_mel_blocks(path, config, start, end, chunk_seconds):
        frames += block.shape[1]
        top, bottom = max(top, float(block.max())), min(bottom, float(block.min()))
    floor = np.float32(top - config.top_db) if config.top_db is not None else None
    pad_value = np.float32(max(bottom, floor) if floor is not None else bottom)

    # pass 3, per member: tiles of the clipped, padded log-mel; tile probabilities summed per model
    fold_means = {}
    for member in tagger.members:
        predictor = tagger.predictor(member, batch_size)
        left, right = tile_padding(frames, member.tile_size, member.step)
        blocks = _clipped_padded_blocks(path, config, start, end, chunk_seconds, floor, pad_value, left, right)
        sums, count, batch = None, 0, []

        def flush():
            nonlocal sums, count
            outputs = predictor.predict_tiles(batch)  # each window is exactly one tile
            parts = [out.astype(np.float64).sum(axis=0) for out in outputs]
            sums = parts if sums is None else [s + p for s, p in zip(sums, parts)]
            count += len(batch)
            batch.clear()

        for _, window in sliding_windows(blocks, member.tile_size, member.step):
            batch.append(np.ascontiguousarray(window))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
        fold_means[member.name] = [(s / count).astype(np.float32)[None] for s in sums]
    # the ensemble's combination of the fold models' clip means
    return tagger.combine(fold_means)[0]
