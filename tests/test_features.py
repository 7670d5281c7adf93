import contextlib
import fcntl
import io
import json
import multiprocessing
import os
import shutil
import sys

import numpy as np
import pytest

import src.audio.cache as features
from src.audio.frontend import AudioReadError, audio_to_log_mel
from src.config import AUDIO, AudioConfig
from src.audio.cache import (FeatureCacheError, cache_key, checksum, load_features, read_feature_cache,
                          write_feature_cache)
from tests.helpers import tone


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
    folders = list(cache.iterdir())  # the folder only: the builder's lock file is gone
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


def test_cache_holds_exactly_the_computed_log_mels_written_as_np_save_writes_them(tmp_path, clips):
    """The build streams the log-mels through a spool file into frames.npy clip by clip (never all of them,
    nor the whole array, in memory): the result is byte for byte the np.save of the clips side by side."""
    computed = features.compute_log_mels([tmp_path / n for n in clips], workers=2, progress=False)
    built = load_features(clips, tmp_path, tmp_path / "features", name="train", workers=2, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(computed, built.specs))
    folder = next((tmp_path / "features").iterdir())  # and no spool file left beside it
    assert [p.name for p in (tmp_path / "features").iterdir()] == [folder.name]
    reference = io.BytesIO()
    np.save(reference, np.concatenate(computed, axis=1))
    assert (folder / "frames.npy").read_bytes() == reference.getvalue()
    assert json.loads((folder / "index.json").read_text())["frames_crc32"] == \
        checksum(np.concatenate(computed, axis=1))
    # write_feature_cache from a list of arrays: the same bytes
    write_feature_cache(tmp_path / "again", clips, computed, AUDIO)
    assert (tmp_path / "again" / "frames.npy").read_bytes() == reference.getvalue()


def test_a_killed_builds_spool_is_deleted_by_the_next_build(tmp_path, clips):
    cache = tmp_path / "features"
    cache.mkdir()
    folder = cache / f"train-{cache_key(clips, AUDIO)}"
    stale = folder.with_name(f".{folder.name}.spool-999999")
    stale.write_bytes(b"\0" * 4096)
    other = cache / ".test-x.spool-999999"  # another cache's: not ours to touch
    other.write_bytes(b"\0")
    load_features(clips, tmp_path, cache, name="train", workers=1, progress=False)
    assert sorted(p.name for p in cache.iterdir()) == sorted([folder.name, other.name])


def test_build_keeps_only_the_clips_in_flight_in_memory(tmp_path, clips, monkeypatch):
    """Each computed log-mel goes to the spool as it arrives: none is referenced once the next one comes."""
    import weakref
    alive, compute = [], features._log_mel_results

    def tracking(*args, **kwargs):
        for spec, err in compute(*args, **kwargs):
            alive.append(weakref.ref(spec))
            yield spec, err
            del spec
            # the consumer's loop variable may hold the last one until the next arrives; no older one lives
            assert all(ref() is None for ref in alive[:-1])
    monkeypatch.setattr(features, "_log_mel_results", tracking)
    load_features(clips, tmp_path, tmp_path / "features", name="train", workers=1, progress=False)
    assert len(alive) == len(clips) and all(ref() is None for ref in alive)


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


def _build_in_child(cache, audio_dir, names, marker, barrier, results, rank):
    """Race body: count every clip the front end computes in `marker`, then load the cache."""
    compute = features._log_mel_results  # what load_features computes missing features with

    def counting_compute(paths, *args, **kwargs):
        with open(marker, "a") as handle:
            handle.write("".join(f"{p.name}\n" for p in paths))
        return compute(paths, *args, **kwargs)

    features._log_mel_results = counting_compute
    try:
        barrier.wait(timeout=60)
        loaded = load_features(names, audio_dir, cache, name="train", workers=1, progress=False)
        results.put((rank, loaded.fnames, [np.array(s) for s in loaded.specs]))
    except BaseException as exc:
        results.put((rank, repr(exc), None))


def test_racing_builders_compute_once_and_agree(tmp_path, clips):
    ctx = multiprocessing.get_context("fork")
    n_procs = 3
    for trial in range(3):
        cache, marker = tmp_path / f"features{trial}", tmp_path / f"computed{trial}.txt"
        barrier, results = ctx.Barrier(n_procs), ctx.Queue()
        procs = [ctx.Process(target=_build_in_child, args=(cache, tmp_path, clips, marker, barrier, results, rank))
                 for rank in range(n_procs)]
        try:
            for proc in procs:
                proc.start()
            got = sorted((results.get(timeout=120) for _ in procs), key=lambda result: result[0])
            for proc in procs:
                proc.join(timeout=60)
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
        assert all(proc.exitcode == 0 for proc in procs)
        assert all(specs is not None for _, _, specs in got), got
        first = got[0][2]
        for _, fnames, specs in got:
            assert fnames == clips and all(np.array_equal(a, b) for a, b in zip(first, specs))
        # the front end ran exactly once per clip, in one process; the others waited for its cache
        assert sorted(marker.read_text().split()) == sorted(clips)
        assert [p.name for p in cache.iterdir()] == [next(cache.iterdir()).name]  # one folder, no lock left


def _wait_in_child(cache, audio_dir, names, stderr_path, marker, results):
    features._log_mel_results = lambda *args, **kwargs: marker.write_text("computed")
    with open(stderr_path, "w", buffering=1) as err, contextlib.redirect_stderr(err):
        loaded = load_features(names, audio_dir, cache, name="train", workers=1, progress=False)
    results.put([np.array(s) for s in loaded.specs])


def test_waiting_builder_says_so_and_uses_the_finished_cache(tmp_path, clips):
    specs = [audio_to_log_mel(tmp_path / name) for name in clips]
    cache = tmp_path / "features"
    folder = cache / f"train-{cache_key(clips, AUDIO)}"
    cache.mkdir()
    ctx = multiprocessing.get_context("fork")
    stderr_path, marker, results = tmp_path / "child.err", tmp_path / "computed", ctx.Queue()
    child = ctx.Process(target=_wait_in_child, args=(cache, tmp_path, clips, stderr_path, marker, results))
    try:
        with open(folder.with_name(f".{folder.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # we play the process that builds the cache
            child.start()
            for _ in range(600):  # until the child reports that it waits (at most a minute)
                if "waiting" in (stderr_path.read_text() if stderr_path.exists() else ""):
                    break
                child.join(timeout=0.1)
            message = stderr_path.read_text()
            assert str(folder) in message and "another process is building" in message
            write_feature_cache(folder, clips, specs, AUDIO)
            fcntl.flock(lock, fcntl.LOCK_UN)  # explicitly: the forked child shares this open file
        got = results.get(timeout=60)
        child.join(timeout=60)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0 and not marker.exists()  # it computed nothing
    assert all(np.array_equal(a, b) for a, b in zip(specs, got))


def test_a_published_cache_is_never_replaced(tmp_path, clips):
    specs = [audio_to_log_mel(tmp_path / name) for name in clips]
    folder = tmp_path / "features" / "train-x"
    write_feature_cache(folder, clips, specs, AUDIO)
    reader = read_feature_cache(folder, clips, AUDIO)
    inode = (folder / "frames.npy").stat().st_ino
    # A second builder that lost the race (here: other values, to tell them apart) publishes nothing.
    write_feature_cache(folder, clips, [s + 1 for s in specs], AUDIO)
    assert (folder / "frames.npy").stat().st_ino == inode
    assert sorted(p.name for p in folder.parent.iterdir()) == ["train-x"]  # its temporary folder is gone
    again = read_feature_cache(folder, clips, AUDIO)
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(specs, reader.specs, again.specs))
    # A folder that exists without being a cache is reported, not overwritten.
    (tmp_path / "features" / "train-y").mkdir()
    (tmp_path / "features" / "train-y" / "mine.txt").write_text("user file")
    with pytest.raises(FeatureCacheError, match="no index.json"):
        write_feature_cache(tmp_path / "features" / "train-y", clips, specs, AUDIO)
    assert (tmp_path / "features" / "train-y" / "mine.txt").read_text() == "user file"


def test_nonfinite_features_are_not_cached(tmp_path, clips):
    specs = [audio_to_log_mel(tmp_path / name) for name in clips]
    specs[2][3, 4] = np.nan
    with pytest.raises(ValueError, match=clips[2]):
        write_feature_cache(tmp_path / "features" / "train-x", clips, specs, AUDIO)
    assert not (tmp_path / "features" / "train-x").exists()


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _overwrite(path, at, data):
    with open(path, "r+b") as handle:
        handle.seek(at)
        handle.write(data)


def _data_start(path):
    """Offset of the array data in a .npy file (after the header)."""
    return path.stat().st_size - np.load(path, mmap_mode="r").nbytes


def _rewrite_offsets(folder, offsets):
    """Save new offsets AND their checksum, so the structural checks are what must catch them."""
    np.save(folder / "offsets.npy", offsets)
    index = json.loads((folder / "index.json").read_text())
    index["offsets_crc32"] = checksum(offsets)
    (folder / "index.json").write_text(json.dumps(index))


def _shifted(folder):
    offsets = np.load(folder / "offsets.npy")
    offsets[1:-1] += 1  # still starts at 0, rises and ends at the frame count: only the checksum sees it
    np.save(folder / "offsets.npy", offsets)


CORRUPTIONS = {
    "truncated frames": ("frames.npy cannot be read", lambda d: _truncate(d / "frames.npy")),
    "truncated offsets": ("offsets.npy cannot be read", lambda d: _truncate(d / "offsets.npy")),
    "garbage header": ("frames.npy cannot be read", lambda d: _overwrite(d / "frames.npy", 0, os.urandom(16))),
    "garbage bytes": ("frames.npy does not match its checksum",
                      lambda d: _overwrite(d / "frames.npy", _data_start(d / "frames.npy") + 400, os.urandom(64))),
    "NaN bytes": ("frames.npy does not match its checksum",
                  lambda d: _overwrite(d / "frames.npy", _data_start(d / "frames.npy") + 800,
                                       np.full(8, np.nan, np.float32).tobytes())),
    "shifted offsets": ("offsets.npy does not match its checksum", _shifted),
    "frames of 64 bands": (r"frames.npy holds float32 \(64, ", lambda d: np.save(d / "frames.npy",
                                                                           np.load(d / "frames.npy")[:64])),
    "frames as float64": ("frames.npy holds float64", lambda d: np.save(d / "frames.npy",
                                                                      np.load(d / "frames.npy").astype(np.float64))),
    "offsets not from 0": ("rise from 0", lambda d: _rewrite_offsets(d, np.r_[3, np.load(d / "offsets.npy")[1:]])),
    "offsets decreasing": ("without decreasing", lambda d: _rewrite_offsets(d, np.load(d / "offsets.npy")[[0, 2, 1, 3, 4]])),
    "offsets too short": (r"expected int64 \(5,\)", lambda d: _rewrite_offsets(d, np.load(d / "offsets.npy")[:-1])),
    "offsets as float": ("offsets.npy holds float64", lambda d: _rewrite_offsets(d, np.load(d / "offsets.npy") * 1.0)),
    "missing frames": ("missing frames.npy", lambda d: (d / "frames.npy").unlink()),
    "missing index": ("missing index.json", lambda d: (d / "index.json").unlink()),
    "garbage index": ("index.json is not valid JSON", lambda d: (d / "index.json").write_bytes(b"\xff{garbage")),
    "older format": ("cache format none", lambda d: (d / "index.json").write_text(json.dumps(
        {k: v for k, v in json.loads((d / "index.json").read_text()).items() if k != "format"}))),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_cache_is_refused_naming_folder_problem_and_fix(tmp_path, clips, corruption):
    problem, corrupt = CORRUPTIONS[corruption]
    cache = tmp_path / "features"
    load_features(clips, tmp_path, cache, name="train", workers=1, progress=False)
    folder = next(cache.iterdir())
    corrupt(folder)
    with pytest.raises(FeatureCacheError, match=problem) as info:
        load_features(clips, tmp_path, cache, name="train", workers=1, progress=False)
    assert str(folder) in str(info.value) and f"rm -r {folder}" in str(info.value)
    assert info.value.folder == folder
    assert [p.name for p in cache.iterdir()] == [folder.name]  # reported, not rebuilt or replaced


def test_cache_of_another_mel_band_count_is_refused(tmp_path, clips):
    cache = tmp_path / "features"
    bands64 = load_features(clips, tmp_path, cache, name="train", config=AudioConfig(n_mels=64), workers=1,
                            progress=False)
    assert bands64.specs[0].shape[0] == 64
    # The 64-band folder copied under the name of the 128-band cache (say, by a sync gone wrong).
    shutil.copytree(next(cache.iterdir()), cache / f"train-{cache_key(clips, AUDIO)}")
    with pytest.raises(FeatureCacheError, match="64 mel bands.*expected .*128 mel bands"):
        load_features(clips, tmp_path, cache, name="train", workers=1, progress=False)


def test_cache_of_other_file_names_is_refused(tmp_path, clips):
    cache = tmp_path / "features"
    load_features(clips, tmp_path, cache, name="train", workers=1, progress=False)
    folder = next(cache.iterdir())
    assert read_feature_cache(folder).fnames == clips  # fnames and config are optional
    with pytest.raises(FeatureCacheError, match="not the 4 asked for"):
        read_feature_cache(folder, fnames=clips[::-1], config=AUDIO)
