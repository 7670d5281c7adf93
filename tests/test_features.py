import os

import numpy as np
import pytest

from src.audio import AudioReadError, audio_to_log_mel
from src.config import AUDIO, AudioConfig
from src.features import cache_key, load_features, read_feature_cache
from tests.conftest import tone


@pytest.fixture
def clips(write_wav):
    names = []
    for i, (seconds, freq) in enumerate([(0.7, 300), (2.3, 1200), (1.1, 5000), (0.3, 800)]):
        names.append(write_wav(f"clip{i}.wav", tone(seconds, freq)).name)
    return names


def test_cache_computes_then_loads_same_arrays(tmp_path, clips):
    cache = tmp_path / "features"
    first = load_features(clips, tmp_path, cache, name="train", workers=2)
    assert first.fnames == clips
    for name, spec in zip(clips, first.specs):
        # the cache's fast front end equals the librosa reference within 0.01 dB
        reference = audio_to_log_mel(tmp_path / name)
        assert spec.shape == reference.shape and spec.dtype == np.float32
        assert np.abs(spec - reference).max() < 0.01
    folders = list(cache.iterdir())
    assert len(folders) == 1 and sorted(p.name for p in folders[0].iterdir()) == \
        ["frames.npy", "index.json", "offsets.npy"]
    # The second load reads the cache (audio gone) and maps it read-only.
    for name in clips:
        os.remove(tmp_path / name)
    second = load_features(clips, tmp_path, cache, name="train")
    assert all(np.array_equal(a, b) for a, b in zip(first.specs, second.specs))
    assert np.array_equal(second["clip1.wav"], first.specs[1])
    with pytest.raises(ValueError):
        second.specs[0][0, 0] = 1.0  # memory-mapped read-only: transforms must copy


def test_cache_key_changes_with_settings_corrections_and_files(clips):
    base = cache_key(clips, AUDIO, {})
    assert cache_key(clips, AudioConfig(n_mels=64), {}) != base
    assert cache_key(clips, AUDIO, {"clip0.wav": "remove"}) != base
    assert cache_key(clips[:-1], AUDIO, {}) != base
    assert cache_key(list(clips), AUDIO, None) == base


def test_bad_files_are_all_named_and_no_cache_is_left(tmp_path, clips):
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    cache = tmp_path / "features"
    with pytest.raises(AudioReadError) as info:
        load_features(clips + ["bad.wav", "gone.wav"], tmp_path, cache, name="train", workers=2)
    assert "2 of 6" in str(info.value) and "bad.wav" in str(info.value) and "gone.wav" in str(info.value)
    assert not cache.exists() or not any(cache.iterdir())


def test_inconsistent_cache_is_refused(tmp_path, clips):
    cache = tmp_path / "features"
    load_features(clips, tmp_path, cache, name="train", workers=1)
    folder = next(cache.iterdir())
    np.save(folder / "offsets.npy", np.array([0, 5]))
    with pytest.raises(ValueError, match="inconsistent"):
        read_feature_cache(folder)
