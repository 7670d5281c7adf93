import librosa
import numpy as np
import pytest
import soundfile as sf

from src.audio.frontend import (AudioReadError, decode_audio, extend_to_min_length, log_mel, read_audio, trim_bounds,
                       trim_to_min_length)
from src.config import AUDIO, AudioConfig
from src.audio.cache import cache_key
from tests.helpers import reference_trim_bounds, tone

# The newer behaviour, still selectable: zero-padded frames, a centred 0.5 s window.
CONSTANT_CENTRED = AudioConfig(pad_mode="constant", short_clip="centred")
ORIGINAL_2019 = AudioConfig(pad_mode="reflect", short_clip="original2019")


def reference_log_mel(y, pad_mode="reflect"):
    """The original's front end written out with librosa calls only (librosa 0.6.3 padded by reflection)."""
    mel = librosa.feature.melspectrogram(y=y, sr=44100, n_fft=2560, hop_length=690, n_mels=128,
                                         fmin=20, fmax=22050, power=2.0, pad_mode=pad_mode)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80).astype(np.float32)


def test_defaults_are_the_2019_front_end():
    assert AUDIO == ORIGINAL_2019
    with pytest.raises(ValueError, match="pad_mode"):
        AudioConfig(pad_mode="wrap")
    with pytest.raises(ValueError, match="short_clip"):
        AudioConfig(short_clip="centered")


def test_cache_key_follows_pad_mode_and_short_clip_rule():
    keys = {config.short_hash() for config in (AUDIO, CONSTANT_CENTRED, AudioConfig(pad_mode="constant"),
                                               AudioConfig(short_clip="centred"))}
    assert len(keys) == 4
    assert cache_key(["a.wav"], AUDIO, {}) != cache_key(["a.wav"], CONSTANT_CENTRED, {})


def test_records_without_the_new_fields_keep_the_front_end_they_were_made_with():
    old_record = {k: v for k, v in AUDIO.to_dict().items() if k not in ("pad_mode", "short_clip")}
    assert AudioConfig.from_dict(old_record) == CONSTANT_CENTRED
    assert AudioConfig.from_dict(AUDIO.to_dict()) == AUDIO


@pytest.mark.parametrize("seconds,frames", [(0.5, 32), (1.0, 64), (2.0, 128), (10.0, 640), (3.7, 237)])
def test_frame_count(seconds, frames):
    y = tone(seconds)
    assert log_mel(y).shape == (128, frames) == (128, 1 + len(y) // 690)


@pytest.mark.parametrize("config", [AUDIO, CONSTANT_CENTRED], ids=["reflect", "constant"])
def test_log_mel_matches_librosa_on_real_signals(config):
    rng = np.random.default_rng(0)
    chirp = librosa.chirp(fmin=100, fmax=15000, sr=44100, duration=2.0).astype(np.float32)
    noise = (0.1 * rng.standard_normal(44100)).astype(np.float32)
    for y in (tone(1.5, 1000), chirp, noise, chirp[:30000] + tone(30000 / 44100, 300)):
        ours, ref = log_mel(y, config), reference_log_mel(y, config.pad_mode)
        assert ours.dtype == np.float32
        assert np.abs(ours - ref).max() < 0.01
        assert ref.max() - ours.min() <= 80.0 + 1e-3  # dynamic range clipped at 80 dB


def test_pad_mode_changes_only_the_edge_frames():
    chirp = librosa.chirp(fmin=100, fmax=15000, sr=44100, duration=1.0).astype(np.float32)
    reflect, constant = log_mel(chirp, AUDIO), log_mel(chirp, CONSTANT_CENTRED)
    # Frames centred within n_fft / 2 = 1280 samples of an edge (frames 0, 1 and the last two) see the padding.
    edge = np.abs(reflect - constant).max(axis=0)
    assert edge[0] > 0.5 and edge[-1] > 0.5
    assert np.array_equal(reflect[:, 2:-2], constant[:, 2:-2])


@pytest.mark.parametrize("fmt,subtype,ext", [("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"),
                                             ("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg")])
def test_read_audio_formats_match_librosa_load(write_wav, fmt, subtype, ext):
    y = tone(1.2, 660)
    path = write_wav(f"clip.{ext}", y, subtype=subtype, format=fmt)
    ours = read_audio(path)
    loaded = librosa.load(path, sr=44100, mono=True)[0]
    start, end = reference_trim_bounds(loaded)
    ref = loaded[start:end]
    assert ours.dtype == np.float32 and ours.ndim == 1
    assert len(ours) == len(ref)
    assert np.abs(ours - ref).max() < 1e-4


def test_stereo_is_mixed_down_and_rates_resampled(write_wav):
    left, right = tone(1.0, 440, amp=0.4), tone(1.0, 440, amp=0.2)
    path = write_wav("stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    assert np.allclose(decode_audio(path), (left + right) / 2, atol=1e-6)

    path = write_wav("low.wav", tone(1.0, 440, sr=22050), sr=22050, subtype="FLOAT")
    y = decode_audio(path)
    assert abs(len(y) - 44100) <= 1
    # Resampled tone keeps its pitch: spectral peak at 440 Hz.
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 44100 / len(y) - 440) < 2


def test_trim_removes_silence_around_sound():
    y = np.concatenate([np.zeros(44100, np.float32), tone(1.0), np.zeros(44100, np.float32)])
    trimmed = trim_to_min_length(y)
    assert 44100 <= len(trimmed) <= 44100 + 2 * 2048  # librosa trims at frame resolution
    assert np.abs(trimmed).max() == pytest.approx(np.abs(y).max())


def edge_sensitive_clip():
    """A quiet level between loud ones, chosen so the trim's edge frames decide differently by pad mode.

    Quiet mean square 1.2e-6 against a loud 1.0 (threshold 1e-6). With zero padding the first frame
    holds half of it (0.6e-6) and the second 3/4 (0.9e-6): silent; reflected, every frame is 1.2e-6.
    """
    quiet = np.full(8192, np.sqrt(1.2e-6), np.float32)
    return np.concatenate([quiet, np.ones(8192, np.float32), quiet])  # 48 hops of 512


def test_trim_bounds_follow_pad_mode():
    y = edge_sensitive_clip()
    assert trim_bounds(y, AUDIO) == reference_trim_bounds(y, "reflect") == (0, len(y))
    constant = trim_bounds(y, CONSTANT_CENTRED)
    assert constant == reference_trim_bounds(y, "constant") == (1024, len(y) - 512)
    # With zero padding the result is exactly librosa 0.11's own effects.trim.
    assert constant == tuple(int(i) for i in librosa.effects.trim(y, top_db=60)[1])


def test_trim_bounds_match_reflect_padded_rms_reference():
    rng = np.random.default_rng(3)
    for n in (3000, 22050, 44100, 70001):
        envelope = np.zeros(n)
        start = int(rng.integers(0, n // 2))
        envelope[start:start + int(rng.integers(1000, n // 2))] = 1.0
        y = ((envelope + 1e-5) * rng.standard_normal(n)).astype(np.float32)
        for config in (AUDIO, CONSTANT_CENTRED):
            assert trim_bounds(y, config) == reference_trim_bounds(y, config.pad_mode)


NEED = AUDIO.min_samples  # 22050 samples = 0.5 s; NEED // 2 = 11025 = 0.25 s


@pytest.mark.parametrize("start,end,length", [(13000, 17640, 17640), (0, 0, 30000), (5, 22054, 40000),
                                              (30000, 30001, 40000), (100, 9000, 12000)])
def test_original2019_short_clip_rule_exact_samples(start, end, length):
    """Untrimmed samples [0, L // 2 + NEED // 2) clipped to the clip, zero-padded evenly, smaller half first."""
    y = np.arange(1, length + 1, dtype=np.float32)  # every sample distinct and non-zero
    out = extend_to_min_length(y, start, end, ORIGINAL_2019)
    kept = min(length, (end - start) // 2 + NEED // 2)
    pad = NEED - kept
    assert pad >= 1  # L <= NEED - 1 leaves the window at least one sample short: always zero-padded
    assert len(out) == NEED
    expected = np.concatenate([np.zeros(pad // 2), y[:kept], np.zeros(pad - pad // 2)]).astype(np.float32)
    assert np.array_equal(out, expected)


def test_original2019_extremes_worked_out():
    y = np.ones(50000, np.float32)
    # L = 0: samples [0, 11025), then 11025 zeros: 5512 in front, 5513 behind.
    out = extend_to_min_length(y, 7, 7, ORIGINAL_2019)
    assert np.flatnonzero(out)[[0, -1]].tolist() == [5512, 5512 + 11025 - 1]
    # L = NEED - 1 = 22049: samples [0, 11024 + 11025 = 22049), one zero behind.
    out = extend_to_min_length(y, 1000, 1000 + NEED - 1, ORIGINAL_2019)
    assert out[-1] == 0 and np.all(out[:-1] == 1)
    # L = NEED: the trimmed part itself, under both rules.
    for config in (ORIGINAL_2019, CONSTANT_CENTRED):
        assert np.array_equal(extend_to_min_length(y, 1000, 1000 + NEED, config), y[1000:1000 + NEED])


def test_late_sound_in_short_clip_is_lost_by_the_2019_rule_and_kept_by_the_centred_one():
    # 0.4 s clip: 0.3 s of digital silence, then a 0.1 s tone.
    y = np.concatenate([np.zeros(13230, np.float32), tone(0.1, 1000)])
    start, end = trim_bounds(y, AUDIO)
    assert 13230 - 2048 <= start <= 13230 and end == len(y)
    out = trim_to_min_length(y, AUDIO)
    kept = (end - start) // 2 + NEED // 2  # about 0.31 s: the window ends ~0.01 s into the tone
    pad = NEED - kept
    assert len(out) == NEED and kept - 13230 < 0.2 * 4410
    assert np.array_equal(out[pad // 2:pad // 2 + kept], y[:kept])
    assert not out[:pad // 2].any() and not out[pad // 2 + kept:].any()
    assert np.sum(out ** 2) < 0.5 * np.sum(y ** 2)  # most of the tone is gone
    # The centred rule zero-pads the whole (shorter than 0.5 s) clip evenly: the tone survives.
    centred = trim_to_min_length(y, CONSTANT_CENTRED)
    pad = NEED - len(y)
    assert np.array_equal(centred, np.pad(y, (pad // 2, pad - pad // 2)))


def test_short_sound_in_long_clip_2019_rule_keeps_the_clip_start():
    burst = tone(0.1, 1000)
    y = np.concatenate([np.full(44100, 1e-6, np.float32), burst, np.full(44100, 1e-6, np.float32)])
    start, end = trim_bounds(y, AUDIO)
    out = trim_to_min_length(y, AUDIO)
    kept = (end - start) // 2 + NEED // 2
    pad = NEED - kept
    assert len(out) == NEED and kept < 44100  # the window ends before the burst: only near-silence
    assert np.array_equal(out[pad // 2:pad // 2 + kept], y[:kept])
    assert np.abs(out).max() <= 1e-6


def test_short_sound_takes_half_second_of_untrimmed_signal_around_it_when_centred():
    burst = tone(0.1, 1000)
    y = np.concatenate([np.full(44100, 1e-6, np.float32), burst, np.full(44100, 1e-6, np.float32)])
    out = trim_to_min_length(y, CONSTANT_CENTRED)
    assert len(out) == AUDIO.min_samples
    # The window is a slice of the untrimmed signal (no zero padding) holding the whole burst,
    # roughly centred on it.
    energy = np.sum(out ** 2)
    assert np.isclose(energy, np.sum(y ** 2), rtol=1e-3)
    burst_start = 44100
    offsets = [k for k in range(burst_start - len(out) + len(burst), burst_start + 1)
               if np.array_equal(y[k:k + len(out)], out)]
    assert offsets, "output is not a window of the input containing the burst"
    assert abs((offsets[0] + len(out) / 2) - (burst_start + len(burst) / 2)) < 2048


@pytest.mark.parametrize("config", [AUDIO, CONSTANT_CENTRED], ids=["original2019", "centred"])
def test_very_short_clip_is_zero_padded_evenly(config):
    y = tone(0.2)  # sound throughout: the trim keeps all of it, both rules pad the whole clip
    out = trim_to_min_length(y, config)
    assert len(out) == AUDIO.min_samples
    pad = AUDIO.min_samples - len(y)
    assert np.all(out[:pad // 2] == 0) and np.all(out[len(out) - (pad - pad // 2):] == 0)
    assert np.array_equal(out[pad // 2:pad // 2 + len(y)], y)


def test_corrupt_empty_and_missing_files_raise_with_the_name(tmp_path, write_wav):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    empty = write_wav("empty.wav", np.zeros(0, np.float32))
    for path, message in [(corrupt, "cannot decode"), (empty, "no audio samples"),
                          (tmp_path / "missing.wav", "no such file")]:
        with pytest.raises(AudioReadError, match=message) as info:
            read_audio(path)
        assert path.name in str(info.value)


def test_zero_byte_file_raises(tmp_path):
    path = tmp_path / "zero.ogg"
    path.write_bytes(b"")
    with pytest.raises(AudioReadError, match="zero.ogg"):
        read_audio(path)
