import librosa
import numpy as np
import pytest
import soundfile as sf

from src.audio import AudioReadError, decode_audio, log_mel, read_audio, trim_to_min_length
from src.config import AUDIO
from tests.conftest import tone


def reference_log_mel(y):
    """The original's front end written out with librosa calls only."""
    mel = librosa.feature.melspectrogram(y=y, sr=44100, n_fft=2560, hop_length=690, n_mels=128,
                                         fmin=20, fmax=22050, power=2.0)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80).astype(np.float32)


@pytest.mark.parametrize("seconds,frames", [(0.5, 32), (1.0, 64), (2.0, 128), (10.0, 640), (3.7, 237)])
def test_frame_count(seconds, frames):
    y = tone(seconds)
    assert log_mel(y).shape == (128, frames) == (128, 1 + len(y) // 690)


def test_log_mel_matches_librosa_on_real_signals():
    rng = np.random.default_rng(0)
    chirp = librosa.chirp(fmin=100, fmax=15000, sr=44100, duration=2.0).astype(np.float32)
    noise = (0.1 * rng.standard_normal(44100)).astype(np.float32)
    for y in (tone(1.5, 1000), chirp, noise, chirp[:30000] + tone(30000 / 44100, 300)):
        ours, ref = log_mel(y), reference_log_mel(y)
        assert ours.dtype == np.float32
        assert np.abs(ours - ref).max() < 0.01
        assert ref.max() - ours.min() <= 80.0 + 1e-3  # dynamic range clipped at 80 dB


@pytest.mark.parametrize("fmt,subtype,ext", [("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"),
                                             ("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg")])
def test_read_audio_formats_match_librosa_load(write_wav, fmt, subtype, ext):
    y = tone(1.2, 660)
    path = write_wav(f"clip.{ext}", y, subtype=subtype, format=fmt)
    ours = read_audio(path)
    ref, _ = librosa.effects.trim(librosa.load(path, sr=44100, mono=True)[0], top_db=60)
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


def test_short_sound_takes_half_second_of_untrimmed_signal_around_it():
    burst = tone(0.1, 1000)
    y = np.concatenate([np.full(44100, 1e-6, np.float32), burst, np.full(44100, 1e-6, np.float32)])
    out = trim_to_min_length(y)
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


def test_very_short_clip_is_zero_padded_evenly():
    y = tone(0.2)
    out = trim_to_min_length(y)
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
