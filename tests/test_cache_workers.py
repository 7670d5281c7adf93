"""The feature cache's process pool (src/audio/workers.py): how its workers stop, and that a build which fails
half-way stops its pool there and then."""
import multiprocessing
import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

import src.audio.cache as cache
from src.audio.workers import process_pool
from tests.helpers import tone


def test_workers_die_of_sigterm_whatever_handler_the_caller_has():
    """A forked worker inherits the caller's handlers; one that only records SIGTERM (src.files.signals_deferred
    installs one) must not keep a worker alive."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        pool = process_pool(2)
        assert list(pool.map(abs, [-1, -2])) == [1, 2]
        workers = list(pool._processes.values())
        assert len(workers) == 2
        for worker in workers:
            os.kill(worker.pid, signal.SIGTERM)
        with pytest.raises(BrokenProcessPool):  # reported, never waited for
            pool.submit(abs, -3).result(timeout=20)
        pool.shutdown(wait=True)  # the executor has joined its workers (so no join here to race with it)
        assert {w.exitcode for w in workers} == {-signal.SIGTERM}
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_build_that_fails_half_way_stops_its_pool_at_once(tmp_path, write_wav, monkeypatch):
    """The consumer of the pool's results fails on the 2nd clip (here a log-mel refused as not finite): the pool is
    shut down, its workers gone, before the error leaves load_features, not whenever the garbage collector runs."""
    names = [write_wav(f"clip{i}.wav", tone(1.0, 300 + 100 * i)).name for i in range(12)]
    checked = []

    def refuse_the_second(fname, spec, config):
        checked.append(fname)
        if len(checked) == 2:
            raise ValueError(f"{fname}: not finite")
    monkeypatch.setattr(cache, "_check_spec", refuse_the_second)
    before = set(multiprocessing.active_children())
    with pytest.raises(ValueError, match="clip1.wav") as info:
        cache.load_features(names, tmp_path, tmp_path / "features", name="train", workers=2, progress=False)
    assert info.value is not None and set(multiprocessing.active_children()) == before  # traceback still held
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == []  # no spool, lock or temporary folder
