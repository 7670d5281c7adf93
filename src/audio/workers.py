"""The feature cache's worker processes: what each runs, and how a pool of them is started and stopped.

`process_pool(n)` is a `concurrent.futures.ProcessPoolExecutor` of `n` processes forked from the caller, after
warming the front end in the caller so every worker starts with librosa's lazily loaded modules and the cached
filterbank (~1 s each otherwise). An executor, not `multiprocessing.Pool`: stopping a Pool part-way
(`terminate()`) races with workers waiting on its task queue's lock and can wait forever; CI's test run once
hung 80 minutes in it, and tests/test_cache_workers.py's early-stop test hung once with it. The executor's
`shutdown(cancel_futures=True)` drops the clips not started, lets the few in flight finish, and a worker that
dies is reported (BrokenProcessPool), never waited for.

Each worker ignores Ctrl-C (it reaches every process of the terminal's group; the parent, interrupted, shuts the
pool down, and a worker would only add a traceback), dies on SIGTERM as the signal's default says (a forked
worker would otherwise inherit the caller's Python handler, which runs only between bytecodes), and uses one
BLAS / OpenMP thread: there is one worker per core already.

"fork", not "forkserver" or "spawn": those re-import the caller's main script in every worker of every pool
(multiprocessing's rule for processes it does not fork from the caller; in Python 3.11 the fork server cannot
preload it), ~1 s of torch imports per worker for train_folds.py, which made a pool of 2 slower than one process
on the demo's 600 clips (`bench/frontend.py`: 268 against 675 clips/s).
"""
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from src.audio import fast_frontend
from src.audio import frontend as reference
from src.audio.frontend import AudioReadError
from src.config import AUDIO, AudioConfig

# Modules with audio_to_log_mel(path, config) -> float32 (n_mels, frames), raising AudioReadError
# naming the file, and trim_to_min_length / log_mel on arrays.
FRONTENDS = {"fast": fast_frontend, "librosa": reference}


def check_frontend(frontend: str) -> str:
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown front end {frontend!r}; choose one of {', '.join(FRONTENDS)}")
    return frontend


def extract(job):
    """One pool job: (path, AudioConfig, front end name) -> (log-mel, None), or (None, the error naming the file)."""
    path, config, frontend = job
    try:
        return FRONTENDS[frontend].audio_to_log_mel(path, config), None
    except AudioReadError as exc:
        return None, str(exc)


def warm_up(frontend: str, config: AudioConfig = AUDIO):
    """Run the front end once on silence: librosa loads modules lazily and the fast front end builds its
    filterbank on first use (~1 s together), so a timed run or a forked worker should not pay for them."""
    module = FRONTENDS[check_frontend(frontend)]
    module.log_mel(module.trim_to_min_length(np.zeros(config.min_samples, np.float32), config), config)


def _setup_worker():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threadpool_limits(1)


def process_pool(workers: int, frontend: str = "fast", config: AudioConfig = AUDIO) -> ProcessPoolExecutor:
    """An executor of `workers` processes forked from this one, warmed for `frontend` (see the module docstring).
    Shut it down with `shutdown(cancel_futures=True)` when stopping early."""
    warm_up(frontend, config)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_setup_worker)
