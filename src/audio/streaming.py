"""Audio as a stream of chunks: long files in flat memory, and live/replay chunk sources.

Three pieces, each holding only a few seconds of audio at a time (the log-mel maths
is the feature cache's front end, `src.audio.fast_frontend`, applied to the frames
complete so far):

- `stream_audio(path)`: decode a file block by block with soundfile, mix to
  mono and resample to the model's rate with soxr's *streaming* resampler.
  The resampler keeps its filter state between chunks, so the output is the
  same, sample for sample, as resampling the whole file at once (what
  `src.audio.frontend.decode_audio` does) -- chunk edges create no clicks or gaps.
- `StreamingLogMel`: turns audio chunks into log-mel frames identical to
  `src.audio.frontend.log_mel` on the whole signal. It keeps the unconsumed tail of the
  audio (the samples the next STFT frames still need, fewer than n_fft) as
  overlap, and pads n_fft/2 samples at both ends exactly as the whole-file
  STFT does (`AudioConfig.pad_mode`: the reflection of the first/last samples,
  or zeros), so it yields frame t centred on sample t * hop whatever the
  chunking. With reflection the first frames wait for n_fft/2 + 1 samples. The one thing it cannot know in advance is
  the loudest frame of the whole file, so it returns dB values *before* the
  `top_db` clipping; callers clip per window (`clip_top_db`), which is what a
  model trained on short clips saw anyway.
- `MaxPoolTimeline`: a fixed-size, max-pooled low-resolution copy of a
  spectrogram of unknown length, for drawing hour-long files.

Chunk sources for live tagging (`demo.py`): `FileSource` replays a file in
real time (or as fast as possible) and `MicrophoneSource` records the default
input device through the optional `sounddevice` package. Both yield mono
float32 chunks at the model's sampling rate, so the tagging code after them is
the same.
"""
import queue
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from src.audio.fast_frontend import framed_power, mel_db
from src.audio.frontend import AudioReadError, check_wav_complete
from src.config import AUDIO, AudioConfig


class StreamResampler:
    """Stateful mono resampler (soxr 'HQ', the quality `decode_audio` uses); identity when rates match."""

    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self._stream = None
        if self.in_rate != self.out_rate:
            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if self._stream is None:
            return chunk
        return self._stream.resample_chunk(chunk, last=last)

    def __repr__(self):
        return f"StreamResampler(in_rate={self.in_rate}, out_rate={self.out_rate})"


def audio_info(path):
    """(sampling rate, duration in seconds) from the file header; duration may be an estimate for MP3."""
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioReadError(f"{path}: cannot decode audio ({exc})") from exc
    return info.samplerate, info.duration


# libsndfile 1.2.2 decodes the first ~2 MPEG frames after every read call of an MP3 differently from
# a whole-file read (a glitch of up to 0.2 in amplitude after each chunk edge, measured on a sine).
# Seeking back this many samples (8 frames of 1152) and discarding them gives the whole-file samples exactly.
MP3_SEEK_LEAD = 8 * 1152


def _read_block(handle, position, blocksize, lead):
    """The next `blocksize` frames from `position`; with `lead`, decoded from `lead` frames earlier."""
    if lead and position:
        start = max(0, position - lead)
        handle.seek(start)
        return handle.read(blocksize + position - start, dtype="float32", always_2d=True)[position - start:]
    return handle.read(blocksize, dtype="float32", always_2d=True)


def stream_audio(path, sampling_rate: int = AUDIO.sampling_rate, chunk_seconds: float = 10.0):
    """Yield mono float32 chunks of `path` at `sampling_rate`, about `chunk_seconds` each.

    Raises `AudioReadError` (naming the file) if it cannot be opened, fails to
    decode mid-way, holds no samples or contains NaN/infinity.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"{path}: no such file")
    check_wav_complete(path)
    try:
        handle = sf.SoundFile(str(path))
    except Exception as exc:
        raise AudioReadError(f"{path}: cannot decode audio ({exc})") from exc
    with handle:
        resample = StreamResampler(handle.samplerate, sampling_rate)
        blocksize = max(1, int(round(chunk_seconds * handle.samplerate)))
        lead = MP3_SEEK_LEAD if handle.format == "MP3" and handle.seekable() else 0
        total = 0
        while True:
            try:
                block = _read_block(handle, total, blocksize, lead)
            except Exception as exc:
                raise AudioReadError(f"{path}: decoding failed after {total / handle.samplerate:.1f} s "
                                     f"({exc})") from exc
            if len(block) == 0:
                break
            if not np.all(np.isfinite(block)):
                raise AudioReadError(f"{path}: decoded samples contain NaN or infinity")
            total += len(block)
            out = resample(block.mean(axis=1))  # mono mix-down first, as decode_audio does
            if len(out):
                yield out
        if total == 0:
            raise AudioReadError(f"{path}: the file holds no audio samples")
        tail = resample(np.zeros(0, np.float32), last=True)
        if len(tail):
            yield tail


def clip_top_db(spec: np.ndarray, top_db: float = AUDIO.top_db) -> np.ndarray:
    """power_to_db's dynamic-range clipping, relative to this array's own maximum."""
    return np.maximum(spec, spec.max() - top_db) if top_db is not None else spec


class StreamingLogMel:
    """Incremental log-mel: push audio chunks, get dB frames equal to `log_mel` (before top_db clipping).

    Memory is the mel filter bank plus fewer than n_fft samples of overlap,
    whatever the length of the stream.
    """

    def __init__(self, config: AudioConfig = AUDIO):
        self.config = config
        self.n_fft, self.hop = config.n_fft, config.hop_length
        # The centred STFT pads n_fft // 2 samples on the left: frame t is centred on sample t * hop.
        # Zeros can go in now; a reflection needs the first n_fft // 2 + 1 samples (see _pad_head).
        self._reflect = config.pad_mode == "reflect"
        self._head_padded = not self._reflect
        self._buffer = np.zeros(0 if self._reflect else self.n_fft // 2, np.float32)
        self._tail = np.zeros(0, np.float32)  # the last n_fft // 2 + 1 samples, to reflect at the end
        self.n_samples = 0     # audio samples pushed so far
        self.n_frames = 0      # frames returned so far
        self.finished = False

    def push(self, audio: np.ndarray) -> np.ndarray:
        """Add samples; return the (n_mels, k) dB frames that are now complete (k may be 0)."""
        if self.finished:
            raise RuntimeError("StreamingLogMel.push after finish()")
        audio = np.asarray(audio, np.float32)
        self.n_samples += len(audio)
        self._buffer = np.concatenate([self._buffer, audio])
        if self._reflect:
            self._tail = np.concatenate([self._tail, audio])[-(self.n_fft // 2 + 1):]
            self._pad_head()
        if not self._head_padded:
            return self._take_frames(0)
        return self._take_frames(self._complete_frames(len(self._buffer)))

    def _pad_head(self):
        """Once n_fft // 2 + 1 samples are in, put their reflection (np.pad 'reflect') in front."""
        half = self.n_fft // 2
        if not self._head_padded and len(self._buffer) > half:
            self._buffer = np.concatenate([self._buffer[half:0:-1], self._buffer])
            self._head_padded = True

    def finish(self) -> np.ndarray:
        """The last frames (right edge padded like the whole-file STFT); total frames = 1 + n_samples // hop."""
        self.finished = True
        remaining = 1 + self.n_samples // self.hop - self.n_frames
        half = self.n_fft // 2
        if not self._head_padded:
            # Fewer than n_fft // 2 + 1 samples in all: no frame was taken, pad the whole signal
            # as np.pad does (for reflection of a very short signal, repeated back and forth).
            self._buffer = np.pad(self._buffer, half, mode="reflect" if len(self._buffer) else "constant")
            self._head_padded = True
        elif self._reflect:
            self._buffer = np.concatenate([self._buffer, self._tail[-2::-1][:half]])
        else:
            self._buffer = np.concatenate([self._buffer, np.zeros(half, np.float32)])
        return self._take_frames(remaining)

    def _complete_frames(self, length: int) -> int:
        return 0 if length < self.n_fft else 1 + (length - self.n_fft) // self.hop

    def _take_frames(self, count: int) -> np.ndarray:
        if count <= 0:
            return np.zeros((self.config.n_mels, 0), np.float32)
        # The whole-file front end's pieces (src/audio/fast_frontend.py), on the frames now complete.
        segment = self._buffer[:(count - 1) * self.hop + self.n_fft]
        db = mel_db(framed_power(segment, self.n_fft, self.hop), self.config)
        self._buffer = self._buffer[count * self.hop:]  # the overlap the next frames still need
        self.n_frames += count
        return db.astype(np.float32)


def stream_log_mel(chunks, config: AudioConfig = AUDIO, state: StreamingLogMel = None):
    """Yield (n_mels, k) dB blocks (before top_db clipping) for an iterable of audio chunks.

    Pass a `StreamingLogMel` as `state` to read `n_samples` / `n_frames` afterwards.
    """
    state = state or StreamingLogMel(config)
    for chunk in chunks:
        frames = state.push(chunk)
        if frames.shape[1]:
            yield frames
    frames = state.finish()
    if frames.shape[1]:
        yield frames


class MaxPoolTimeline:
    """Low-resolution copy of a streamed spectrogram, max-pooled over time, in bounded memory.

    Columns cover `factor` frames each. When `capacity` columns are filled,
    neighbouring pairs are merged (max) and `factor` doubles, so at most
    `capacity` columns (plus one partial column) are ever held, whatever the
    length of the stream, and the final image has between capacity/2 and
    capacity columns (once the stream is long enough). Max rather than mean
    pooling keeps short loud events visible in an hour-long picture.
    """

    def __init__(self, n_mels: int = AUDIO.n_mels, capacity: int = 2048):
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be an even number >= 2, got {capacity}")
        self.capacity, self.factor = int(capacity), 1
        self._columns = np.empty((n_mels, self.capacity), np.float32)
        self._count = 0                # full columns stored
        self._partial = None           # running max of the current unfinished column
        self._partial_frames = 0
        self.n_frames = 0

    def add(self, frames: np.ndarray):
        frames = np.asarray(frames, np.float32)
        self.n_frames += frames.shape[1]
        while frames.shape[1]:
            take = self.factor - self._partial_frames
            if self._partial_frames == 0 and frames.shape[1] >= self.factor:
                # as many whole columns as fit before the next halving, in one reshape
                groups = min(frames.shape[1] // self.factor, self.capacity - self._count)
                block = frames[:, :groups * self.factor].reshape(frames.shape[0], groups, self.factor).max(axis=2)
                self._columns[:, self._count:self._count + groups] = block
                self._count += groups
                frames = frames[:, groups * self.factor:]
            else:
                part = frames[:, :take].max(axis=1)
                self._partial = part if self._partial is None else np.maximum(self._partial, part)
                self._partial_frames += min(take, frames.shape[1])
                frames = frames[:, take:]
                if self._partial_frames == self.factor:
                    self._columns[:, self._count] = self._partial
                    self._count += 1
                    self._partial, self._partial_frames = None, 0
            if self._count == self.capacity:
                self._halve()

    def _halve(self):
        pairs = self._columns.reshape(self._columns.shape[0], self.capacity // 2, 2).max(axis=2)
        self._columns[:, :self.capacity // 2] = pairs
        self._count = self.capacity // 2
        self.factor *= 2
        # a partial column of the old factor is still a valid prefix of a column of the new factor

    def image(self) -> np.ndarray:
        """(n_mels, columns) pooled image; the last column may cover fewer than `factor` frames."""
        columns = self._columns[:, :self._count]
        if self._partial is not None:
            columns = np.concatenate([columns, self._partial[:, None]], axis=1)
        return columns.copy()

    def __repr__(self):
        return f"MaxPoolTimeline(capacity={self.capacity}, factor={self.factor}, frames={self.n_frames})"


# --- chunk sources for live tagging --------------------------------------------------------------


class FileSource:
    """Replay a file as a stream of chunks, paced to real time unless `realtime=False`."""

    def __init__(self, path, sampling_rate: int = AUDIO.sampling_rate, chunk_seconds: float = 0.1,
                 realtime: bool = True):
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        self.path, self.sampling_rate = Path(path), int(sampling_rate)
        self.chunk_seconds, self.realtime = float(chunk_seconds), bool(realtime)

    def __iter__(self):
        start, played = time.monotonic(), 0
        for chunk in stream_audio(self.path, self.sampling_rate, self.chunk_seconds):
            if self.realtime:
                # a chunk is "heard" once its last sample has played: sleep until then
                ahead = start + (played + len(chunk)) / self.sampling_rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            played += len(chunk)
            yield chunk

    def __repr__(self):
        return f"FileSource({str(self.path)!r}, chunk_seconds={self.chunk_seconds}, realtime={self.realtime})"


SOUNDDEVICE_HINT = ("live tagging from the microphone needs the optional 'sounddevice' package "
                    "(pip install sounddevice; it uses the PortAudio library, e.g. apt-get install "
                    "libportaudio2); or replay a file with --file PATH")


def import_sounddevice():
    """The `sounddevice` module, imported only when a microphone is used."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the package is there but PortAudio is not
        raise RuntimeError(f"{SOUNDDEVICE_HINT} ({exc})") from exc
    return sounddevice


class MicrophoneSource:
    """Chunks from an input device (default: the system's default microphone), mono, at `sampling_rate`.

    Records at the device's own default rate (every device supports it) and
    resamples with the same streaming resampler as files.
    """

    def __init__(self, sampling_rate: int = AUDIO.sampling_rate, chunk_seconds: float = 0.1, device=None):
        self.sampling_rate, self.chunk_seconds, self.device = int(sampling_rate), float(chunk_seconds), device
        self._sd = import_sounddevice()  # fail here, with the install hint, before anything else starts

    def __iter__(self):
        sd = self._sd
        chunks = queue.Queue()

        def callback(indata, frames, time_info, status):
            # PortAudio's thread: copy and hand over; never block here
            chunks.put(indata.mean(axis=1).astype(np.float32))

        try:
            info = sd.query_devices(self.device, kind="input")
            rate = int(info["default_samplerate"])
            stream = sd.InputStream(device=self.device, channels=1, samplerate=rate, dtype="float32",
                                    blocksize=max(1, int(self.chunk_seconds * rate)), callback=callback)
        except (sd.PortAudioError, ValueError) as exc:
            raise RuntimeError(f"cannot open input device {self.device or '(default)'}: {exc}") from exc
        resample = StreamResampler(rate, self.sampling_rate)
        with stream:
            while True:
                out = resample(chunks.get())
                if len(out):
                    yield out

    def __repr__(self):
        return f"MicrophoneSource(device={self.device!r}, chunk_seconds={self.chunk_seconds})"
