"""One run at a time on a piece of work: an exclusive, non-blocking lock file held while the work runs.

    with exclusive_lock(exp_dir / ".fold_3.lock", "fold 3 of experiment demo"):
        ...train fold 3...

A second run that asks for the same lock while the first holds it stops at once
with `Locked`, whose one-line message names the work and the holder's pid
(written into the lock file). The lock is an `fcntl.flock` on the file, so the
kernel releases it when its holder exits in any way, SIGKILL included: a crashed
run never leaves a stale lock behind. A child process that inherits the lock's
file descriptor (subprocess `pass_fds`) shares the lock, and keeps it held if
its parent dies first.

The file is removed when the lock is released, so finished work leaves no trace.
Removing it opens a race (a second run may have opened the old file just before
it was unlinked, and then lock that orphaned file while a third run creates and
locks a new one), which is why `exclusive_lock` checks, once locked, that the
path still names the file it locked, and starts again if not.
"""
import contextlib
import fcntl
import os
from pathlib import Path

from src.errors import UserError


class Locked(UserError, BlockingIOError):
    """The work is locked by another running process (the message names the work and the holder's pid)."""


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid else "a process that has not written its pid yet"


@contextlib.contextmanager
def exclusive_lock(path, what: str):
    """Hold an exclusive lock on file `path` (created, with its folder, if absent) for the block.

    `what` names the locked work in the error a second run gets, e.g. "fold 3 of experiment demo".
    Yields the open file descriptor (pass it to a child process that should share the lock).
    Raises `Locked` at once, without waiting, when another process holds the lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Locked(f"{what} is in use by another run ({_holder(path)}; lock file {path}): "
                         f"wait for that run to end, or stop it first") from None
        try:
            same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # its holder removed it between our open and our lock
            same_file = False
        if same_file:
            break
        os.close(fd)  # we locked an unlinked file: try again with the current one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield fd
    finally:
        # Unlink while still holding the lock, so that nobody can lock this file and believe it current.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
