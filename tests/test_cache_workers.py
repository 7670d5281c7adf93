"""The feature cache's process pool (src/audio/workers.py): where its workers come from, how they stop, and
that a build which fails half-way stops its pool there and then."""
import os
import signal
import threading
import time

import pytest

import src.audio.cache as cache
from src.audio.workers import fork_server_pid, process_pool
from tests.helpers import tone


def pool_threads():
    """The handler threads of live multiprocessing pools in this process."""
    return [t.name for t in threading.enumerate() if "_handle_" in t.name]


def test_workers_come_from_the_fork_server_not_from_the_caller():
    """A worker forked from this (multi-threaded) process would inherit the locks its threads hold."""
    with process_pool(2) as pool:
        parents = {pool.apply(os.getppid) for _ in range(4)}
    assert os.getpid() not in parents and parents == {fork_server_pid()}


def _announce_then_sleep(path):
    open(path, "w").close()
    time.sleep(120)


def test_terminate_stops_busy_workers_whatever_handler_the_caller_has(tmp_path):
    """Pool.terminate() stops its workers with SIGTERM: each must die of it even when the caller had a Python
    handler that only records the signal (src.utils.signals_deferred installs one) and the worker is busy."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        pool = process_pool(2)
        marks = [tmp_path / f"busy{i}" for i in range(2)]
        for mark in marks:
            pool.apply_async(_announce_then_sleep, (str(mark),))
        deadline = time.monotonic() + 60
        while not all(m.exists() for m in marks) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(m.exists() for m in marks)
        workers = list(pool._pool)
        stopping = threading.Thread(target=pool.terminate, daemon=True)
        stopping.start()
        stopping.join(timeout=30)
        assert not stopping.is_alive(), "Pool.terminate() is still waiting for its workers"
        assert [w.exitcode for w in workers] == [-signal.SIGTERM] * 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_build_that_fails_half_way_stops_its_pool_at_once(tmp_path, write_wav, monkeypatch):
    """The consumer of the pool's results fails on the 2nd clip (here a log-mel refused as not finite): the pool is
    terminated before the error leaves load_features, not whenever the garbage collector finds it."""
    names = [write_wav(f"clip{i}.wav", tone(1.0, 300 + 100 * i)).name for i in range(12)]
    checked = []

    def refuse_the_second(fname, spec, config):
        checked.append(fname)
        if len(checked) == 2:
            raise ValueError(f"{fname}: not finite")
    monkeypatch.setattr(cache, "_check_spec", refuse_the_second)
    assert pool_threads() == []
    with pytest.raises(ValueError, match="clip1.wav") as info:
        cache.load_features(names, tmp_path, tmp_path / "features", name="train", workers=2, progress=False)
    assert info.value is not None and pool_threads() == []  # the traceback (frames, generator) still referenced
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == []  # no spool, lock or temporary folder


def test_unset_workers_start_a_pool_only_for_enough_clips(tmp_path, write_wav, monkeypatch):
    paths = [write_wav(f"clip{i}.wav", tone(0.5, 400 + 100 * i)) for i in range(3)]
    pools = []

    def counting_pool(workers):
        pools.append(workers)
        return process_pool(workers)
    monkeypatch.setattr(cache, "process_pool", counting_pool)
    alone = cache.compute_log_mels(paths, progress=False)
    assert pools == []  # 3 clips: in this process
    monkeypatch.setattr(cache, "POOL_MIN_CLIPS", 3)
    pooled = cache.compute_log_mels(paths, progress=False)
    per_core = [os.cpu_count()] if os.cpu_count() > 1 else []  # one core: no pool
    assert pools == per_core and all((a == b).all() for a, b in zip(alone, pooled))
    cache.compute_log_mels(paths[:2], workers=2, progress=False)  # an explicit size is always a pool
    assert pools == per_core + [2]
