"""train_folds.py --jobs: train folds in parallel single-threaded child processes.

Why: the thin CPU experiments (`small`, `demo`, `demo_skip`: base_size 4-8, batches augmented
by the model) run convolutions too small for torch's intra-op threads to scale; on a CPU one
single-threaded process per core trains about twice as many folds per hour as one process
using every core; more processes than cores (time-shared) then keep every core busy to the
end. `choose_jobs` decides how many processes (`--jobs auto`), and `run_fold_jobs` runs one
child per fold, N at a time.

Each child is train_folds.py itself, given one fold, `--threads 1 --workers 0` and an
internal flag that makes it skip the shared work its parent did (feature cache, experiment
folder, locks): the fold trains through exactly the code a lone
`train_folds.py --folds K --threads 1 --workers 0` runs, so its results are the same.
The parent forwards each child's lines prefixed with `[fold K]` (whole lines, one writer
at a time), and on the first failure stops the other children with SIGINT (they keep
their last_state.pth, so --resume continues them) and reports which fold failed.
"""
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque

from argus.callbacks import Callback

from src.errors import BadSetting, UserError

# A network this thin (model base_size; the 2019 members have 64) gains little from a second torch thread.
THIN_BASE_SIZE = 16
# --jobs auto: at most this many fold processes per core (each holds its data and network: ~0.7 GB for `small`).
MAX_JOBS_PER_CORE = 4
# The children's environment: one thread in every library that might start a pool, and lines sent at once.
CHILD_ENV = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class FoldFailed(UserError):
    """A child's fold stopped on a user error (its one-line message is repeated, naming the fold)."""


class FoldCrashed(ChildProcessError):
    """A child's fold stopped on a bug or a signal (its traceback was forwarded above)."""


def parse_jobs(value: str):
    """--jobs: 'auto' or a positive number of processes."""
    if value == "auto":
        return value
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        import argparse
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive number of processes, got {value!r}")
    return jobs


def thin_network(experiment: dict) -> bool:
    """Whether single-threaded processes suit the experiment on a CPU: a thin network (base_size <= 16)
    whose batches are augmented by the model (augment="device"), so that the children's DataLoader,
    which has no workers, only cuts crops. `small`, `demo` and `demo_skip`; not the 2019 members."""
    _, kwargs = experiment["model"]
    return kwargs.get("base_size", 64) <= THIN_BASE_SIZE and experiment["augment"] == "device"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_jobs(requested, *, device, distributed: bool, threads=None, workers=None):
    """Refuse a number of processes N > 1 where it cannot work as asked: on CUDA, under torchrun, or with
    --threads / --workers other than the children's 1 thread and 0 workers. (Before anything is written.)"""
    if requested == "auto" or requested <= 1:
        return
    if device.type != "cpu":
        raise BadSetting(f"--jobs {requested}: parallel fold processes train on the CPU; on {device} "
                         f"use --jobs 1 (or torchrun for several GPUs)")
    if distributed:
        raise BadSetting(f"--jobs {requested} cannot run under torchrun; use --jobs 1")
    if threads not in (None, 1) or workers not in (None, 0):
        raise BadSetting(f"--jobs {requested} trains each fold with one thread and no loader workers; "
                         f"leave --threads and --workers out, or use --jobs 1")


def choose_jobs(requested, *, folds: int, device, distributed: bool, experiment: dict, threads=None,
                workers=None, cores=None) -> int:
    """How many processes train the `folds` folds still to train (1: this process trains them itself).

    'auto' for a thin network on the CPU (`thin_network`): one process per fold, up to
    MAX_JOBS_PER_CORE per core (1 on a one-core machine). More processes than cores time-share them:
    with one process per core, 5 folds on 2 cores end with the fifth fold alone on one core while the
    other idles (3 fold-times); 5 time-shared processes finish together (2.5 fold-times), for about
    6% more CPU time per fold (switching). 'auto' is 1 on CUDA, under torchrun, for the full-size
    experiments, and when --threads or --workers (other than 0) configure one process.
    A number N: min(N, folds), where `check_jobs` lets it run.
    """
    if requested == "auto":
        configured = threads is not None or (workers or 0) > 0
        if device.type != "cpu" or distributed or configured or not thin_network(experiment):
            return 1
        cores = cores or available_cores()
        return 1 if cores == 1 else max(1, min(folds, MAX_JOBS_PER_CORE * cores))
    check_jobs(requested, device=device, distributed=distributed, threads=threads, workers=workers)
    return max(1, min(requested, folds))


class StopRequested(Callback):
    """A child's stop check after every training step and epoch (a `fit_fold` callback).

    SIGINT raises KeyboardInterrupt wherever the child is, which stops it at once, unless
    Python swallows it: raised inside a weakref callback or a __del__ (the garbage collector
    runs them anywhere), it is printed as "Exception ignored" and training carries on.
    The handler also records the request, so that this check raises it again.
    """
    requested = False

    def iteration_complete(self, state):
        if StopRequested.requested:
            raise KeyboardInterrupt

    epoch_complete = iteration_complete


def _stop(signum, frame):
    StopRequested.requested = True
    raise KeyboardInterrupt


def become_child(parent_pid: int) -> bool:
    """In a child: SIGINT stops the fold (as a Ctrl-C does; see `StopRequested`), also where the parent's
    shell ignored SIGINT (a background job of a script, which the child would inherit); and on Linux the
    child gets SIGINT when its parent dies, killed or not, so that no orphan trains on. False: the parent
    is gone already."""
    signal.signal(signal.SIGINT, _stop)
    try:
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGINT))
    except (OSError, AttributeError):  # not Linux: the parent's own stop is all there is
        pass
    return os.getppid() == parent_pid  # else the parent died before the request took effect


class _Job:
    """One child process training one fold; its output forwarded line by line with a [fold K] prefix."""

    def __init__(self, fold, command, write_lock, finished: queue.Queue):
        self.fold, self.prefix = fold, f"[fold {fold}] "
        self.errors = deque(maxlen=50)  # the last stderr lines, for the parent's report
        # A session of its own: a Ctrl-C on the terminal reaches the parent only, which stops the children
        # once (a second SIGINT would interrupt the child's clean stop).
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **CHILD_ENV}, start_new_session=True,
                                        errors="replace")
        self._write_lock = write_lock
        readers = [threading.Thread(target=self._forward, args=(self.process.stdout, "stdout", None), daemon=True),
                   threading.Thread(target=self._forward, args=(self.process.stderr, "stderr", self.errors),
                                    daemon=True)]
        for reader in readers:
            reader.start()

        def watch():
            for reader in readers:  # every line printed before the parent hears of the exit
                reader.join()
            self.returncode = self.process.wait()
            finished.put(self)
        threading.Thread(target=watch, daemon=True).start()

    def _forward(self, pipe, stream: str, keep):
        for line in pipe:
            line = line.rstrip("\n")
            if keep is not None:
                keep.append(line)
            with self._write_lock:  # whole lines, one writer at a time
                print(self.prefix + line, file=getattr(sys, stream), flush=True)
        pipe.close()

    def stop(self):
        """SIGINT: the child ends its fold as after a Ctrl-C (last_state.pth kept for --resume)."""
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    def failure(self) -> Exception:
        """What the parent raises for this failed child: the child's one-line error, or its exit."""
        marker = ": error: "
        for line in reversed(self.errors):
            if self.returncode == 2 and marker in line:
                return FoldFailed(f"fold {self.fold} failed: {line.split(marker, 1)[1]}")
        how = f"exit status {self.returncode}" if self.returncode > 0 else f"signal {-self.returncode}"
        return FoldCrashed(f"fold {self.fold} failed ({how}); its output is above, each line prefixed "
                           f"'{self.prefix.strip()}'")


def run_fold_jobs(folds, jobs: int, command_of) -> None:
    """Run `command_of(fold)` for every fold, `jobs` processes at a time; return when all succeeded.

    On the first failure no new fold starts, the running ones are stopped (SIGINT), and the failure
    is raised (`FoldFailed` for a user error, `FoldCrashed` otherwise). A KeyboardInterrupt in the
    parent stops every child, waits for them, and is raised again. (A parent killed outright takes
    its children with it: `become_child`.)
    """
    pending, running, failed = list(folds), {}, None
    finished, write_lock = queue.Queue(), threading.Lock()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                fold = pending.pop(0)
                running[fold] = _Job(fold, command_of(fold), write_lock, finished)
            job = finished.get()
            del running[job.fold]
            if job.returncode != 0 and failed is None:
                failed = job
                pending.clear()
                for other in running.values():
                    other.stop()
    except KeyboardInterrupt:
        for job in running.values():
            job.stop()
        for job in running.values():
            job.process.wait()
        raise
    if failed is not None:
        raise failed.failure()
