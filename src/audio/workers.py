"""The feature cache's worker processes: what each runs, and where they come from.

`process_pool(n)` gives a `multiprocessing` pool whose workers are forked from a
fork server ("forkserver"): a fresh, single-threaded Python process, started by
the first pool of a process and reused by every later one, that has imported and
warmed the front end (`src.audio.warm_workers`). Workers are not forked from the
caller itself: by the time a cache is built, a training script or a test run has
threads of its own (torch's intra-op pool, tqdm's monitor, the handler threads of
an earlier pool), and a process forked from a multi-threaded one inherits every
lock those threads held at that instant; a worker that then needs one waits
forever. Python 3.14 made the fork server its default on Linux for this reason.
The server costs ~0.5 s once per process (its imports; the warm-up it does would
otherwise be paid by the caller), and each job (a path, the AudioConfig, the
front end's name) is pickled to the worker instead of inherited.

Each worker:
- ignores Ctrl-C: it reaches every process of the terminal's group, and the
  parent, interrupted, terminates the pool (a worker would only add a traceback);
- dies on SIGTERM, as the signal's default says, whatever it is doing: that is
  how `Pool.terminate()` stops it. A Python-level handler (such as the one
  `src.cli` installs) runs only between bytecodes, so a worker stuck inside C
  code would never see it, and the pool's terminate would wait on it forever;
- uses one BLAS / OpenMP thread: there is one worker per core already.
"""
import multiprocessing
import signal

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


def process_pool(workers: int):
    """A pool of `workers` processes from the fork server (see the module docstring); use it as a context
    manager, which terminates the workers on leaving."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["src.audio.warm_workers"])
    return context.Pool(workers, initializer=_setup_worker)


# ----------------------------------------------------------------------------- for the benchmarks
# getrusage(RUSAGE_CHILDREN) counts a process's children once it has waited for them; pool workers are the fork
# server's children, so a benchmark that measures CPU time reads them through the server. multiprocessing has no
# public API for its fork server: these two use its one instance's private fields, unchanged since Python 3.8.

def fork_server_pid():
    """The pid of this process's fork server, or None when none has started."""
    from multiprocessing import forkserver
    return forkserver._forkserver._forkserver_pid


def stop_fork_server():
    """Stop the fork server, if any, and wait for it: its CPU time and that of every worker it reaped then count
    in this process's RUSAGE_CHILDREN. The next pool starts a new server."""
    from multiprocessing import forkserver
    forkserver._forkserver._stop()
