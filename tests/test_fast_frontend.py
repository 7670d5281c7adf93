"""The fast front end must reproduce the librosa reference (src.audio.frontend): trim indices exactly,
log-mels within 0.01 dB, frame counts, the 0.5 s rules and the file-naming errors."""
import json

import librosa
import numpy as np
import pytest

from src.audio import fast_frontend
from src.audio import frontend as audio
from src.audio.frontend import AudioReadError
from src.config import AUDIO, AudioConfig
from src.audio.cache import compute_log_mels, load_features
from tests.helpers import reference_trim_bounds, tone

SR = AUDIO.sampling_rate
TOLERANCE_DB = 0.01
# The default (2019: reflection-padded frames, the original's short-clip rule) and the newer behaviour.
CONFIGS = {"reflect": AUDIO, "constant": AudioConfig(pad_mode="constant", short_clip="centred")}


def chirp(seconds, fmin=50.0, fmax=18000.0):
    return librosa.chirp(fmin=fmin, fmax=fmax, sr=SR, duration=seconds).astype(np.float32) * 0.5


def silence_padded(seconds_before, sound, seconds_after, level=1e-6, seed=0):
    """Sound with leading/trailing near-silence (tiny noise, below the 60 dB trim threshold)."""
    rng = np.random.default_rng(seed)
    quiet = lambda s: (level * rng.standard_normal(int(s * SR))).astype(np.float32)  # noqa: E731
    return np.concatenate([quiet(seconds_before), sound, quiet(seconds_after)])


def signals():
    rng = np.random.default_rng(0)
    noise = lambda s, a=0.1: (a * rng.standard_normal(int(s * SR))).astype(np.float32)  # noqa: E731
    return {
        "tone": tone(1.5, 1000),
        "low_tone": tone(2.0, 45, amp=0.9),
        "chirp": chirp(3.0),
        "noise": noise(1.0),
        "quiet_noise": noise(1.0, 1e-4),
        "dc_offset": 0.9 + noise(1.0, 1e-3),
        # Energy below fmin (no mel band sees it) with quiet content: a float32 FFT misses by 0.026 dB here.
        "rumble_5hz": 0.9 * np.sin(2 * np.pi * 5 * np.arange(2 * SR) / SR).astype(np.float32) + noise(2.0, 1e-4),
        "tone_plus_hiss": tone(2.0, 200, amp=0.9) + noise(2.0, 1e-4),
        "silence_padded": silence_padded(1.0, tone(0.5, 3000), 1.5),
        "short_0.3s": tone(0.3, 800),
        "long_20s": chirp(20.0, 30, 20000) + noise(20.0, 0.01),
        "digital_silence": np.zeros(SR, np.float32),
        "one_frame": tone(0.01, 2000),
    }


@pytest.mark.filterwarnings("ignore:n_fft=.*is too large")  # librosa, on the 441-sample clip
@pytest.mark.parametrize("pad_mode", list(CONFIGS))
@pytest.mark.parametrize("name", list(signals()))
def test_log_mel_matches_librosa_reference(name, pad_mode):
    y = signals()[name]
    config = CONFIGS[pad_mode]
    ref = audio.log_mel(y, config)
    assert np.abs(ref - librosa.power_to_db(librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=2560, hop_length=690, n_mels=128, fmin=20, fmax=22050, pad_mode=pad_mode),
        top_db=80)).max() < TOLERANCE_DB
    ours = fast_frontend.log_mel(y, config)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (AUDIO.n_mels, 1 + len(y) // AUDIO.hop_length)
    assert np.abs(ours - ref).max() < TOLERANCE_DB
    # The 80 dB floor is relative to the clip's own maximum, in both.
    assert ours.max() - ours.min() <= AUDIO.top_db + 1e-3


@pytest.mark.parametrize("pad_mode", list(CONFIGS))
@pytest.mark.parametrize("name", ["tone", "chirp", "silence_padded", "short_0.3s", "long_20s", "digital_silence",
                                  "late_in_short_clip"])
def test_trimmed_features_match_reference_pipeline(name, pad_mode):
    config = CONFIGS[pad_mode]
    y = signals()[name] if name in signals() else np.concatenate([np.zeros(13230, np.float32), tone(0.1)])
    ref = audio.trim_to_min_length(y, config)
    ours = fast_frontend.trim_to_min_length(y, config)
    assert np.array_equal(ours, ref)  # same indices, same 0.5 s rules
    assert len(ours) >= AUDIO.min_samples
    assert np.abs(fast_frontend.log_mel(ours, config) - audio.log_mel(ref, config)).max() < TOLERANCE_DB


def _random_clip(rng):
    """Bursts of varied level, length and fades over varied floors: boundaries land anywhere."""
    n = int(rng.integers(1, 3 * SR))
    y = (10 ** rng.uniform(-9, -3) * rng.standard_normal(n)).astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):
        length = int(rng.integers(1, max(2, n // 2)))
        start = int(rng.integers(0, n - length + 1))
        burst = 10 ** rng.uniform(-4, 0) * rng.standard_normal(length)
        burst *= np.minimum(1.0, np.linspace(0, rng.uniform(1, 50), length))  # fade in of random steepness
        y[start:start + length] += burst.astype(np.float32)
    return y


def test_trim_bounds_equal_librosa_on_many_signals():
    """Reflection: the reflect-padded RMS reference (librosa 0.6.3's trim); zeros: librosa 0.11's trim."""
    rng = np.random.default_rng(1)
    clips = [_random_clip(rng) for _ in range(300)]
    clips += [np.zeros(n, np.float32) for n in (1, 511, 512, 2047, 2048, 5000)]   # digital silence
    clips += [np.full(3000, 0.25, np.float32), np.full(10, 1e-7, np.float32)]   # constant, below amin
    clips += [signals()["silence_padded"], signals()["one_frame"], np.array([0.5, -0.1, 1e-6], np.float32)]
    for y in clips:
        assert fast_frontend.trim_bounds(y, CONFIGS["reflect"]) == reference_trim_bounds(y), f"length {len(y)}"
        expected = tuple(int(i) for i in librosa.effects.trim(y, top_db=60)[1])
        assert fast_frontend.trim_bounds(y, CONFIGS["constant"]) == expected, f"length {len(y)}"


@pytest.mark.parametrize("pad_mode", list(CONFIGS))
def test_frames_on_the_threshold_are_decided_by_librosa(monkeypatch, pad_mode):
    # A loud block, then a tail whose RMS is exactly 60 dB below: float32 rounding decides it.
    config = CONFIGS[pad_mode]
    loud = np.ones(4096, np.float32)
    tail = np.full(8192, 1e-3, np.float32)
    y = np.concatenate([loud, tail])
    calls = []
    original = audio.trim_bounds

    def counting_trim(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(audio, "trim_bounds", counting_trim)
    assert fast_frontend.trim_bounds(y, config) == reference_trim_bounds(y, pad_mode)
    assert calls, "a frame on the threshold must be handed to the librosa reference"
    calls.clear()
    fast_frontend.trim_bounds(np.concatenate([loud, tail * 0.5]), config)  # 66 dB below: clear-cut
    assert not calls


@pytest.mark.parametrize("subtype,sr", [("PCM_16", 44100), ("FLOAT", 44100), ("PCM_16", 22050)])
def test_read_audio_equals_reference(write_wav, subtype, sr):
    y = silence_padded(0.4, tone(0.8, 660, sr=sr), 0.3)
    path = write_wav("clip.wav", y, sr=sr, subtype=subtype)
    assert np.array_equal(fast_frontend.read_audio(path), audio.read_audio(path))
    ours, ref = fast_frontend.audio_to_log_mel(path), audio.audio_to_log_mel(path)
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < TOLERANCE_DB


def test_errors_name_the_file(tmp_path, write_wav):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    empty = write_wav("empty.wav", np.zeros(0, np.float32))
    for path in (corrupt, empty, tmp_path / "missing.wav"):
        with pytest.raises(AudioReadError) as info:
            fast_frontend.audio_to_log_mel(path)
        assert path.name in str(info.value)
    good = write_wav("good.wav", tone(0.7))
    with pytest.raises(AudioReadError) as info:
        compute_log_mels([good, corrupt, empty], workers=2, frontend="fast", progress=False)
    assert "2 of 3" in str(info.value) and "corrupt.wav" in str(info.value) and "empty.wav" in str(info.value)


def test_compute_log_mels_front_ends_agree_and_share_the_cache(tmp_path, write_wav):
    names = [write_wav(f"c{i}.wav", silence_padded(0.2 * i, tone(0.3 + 0.4 * i, 300 * (i + 1)), 0.3)).name
             for i in range(4)]
    paths = [tmp_path / n for n in names]
    fast = compute_log_mels(paths, workers=2, frontend="fast", progress=False)
    ref = compute_log_mels(paths, workers=1, frontend="librosa", progress=False)
    for a, b in zip(fast, ref):
        assert a.shape == b.shape and np.abs(a - b).max() < TOLERANCE_DB
    with pytest.raises(ValueError, match="front end"):
        compute_log_mels(paths, frontend="torch")

    # The cache key ignores the front end: a cache made by 'fast' serves 'librosa' (audio deleted).
    cache = tmp_path / "features"
    first = load_features(names, tmp_path, cache, name="train", workers=2, progress=False)
    folder = next(cache.iterdir())
    assert json.loads((folder / "index.json").read_text())["frontend"] == "fast"
    for p in paths:
        p.unlink()
    again = load_features(names, tmp_path, cache, name="train", frontend="librosa", progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(first.specs, again.specs))
