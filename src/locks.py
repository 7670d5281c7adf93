"""One writer at a time: an advisory lock on an output, taken before a run starts writing it.

    with exclusive_lock(lock_file, "predictions of demo in data/predictions/demo"):
        ...  # compute, then write the output

`exclusive_lock` takes an `fcntl.flock` on `lock_file` without waiting: when another
process holds it, the run stops at once with `Busy`, naming the output and that
process's pid, instead of two runs writing the same output at the same time.

The kernel releases a flock when its holder's file descriptor closes, which
includes any way a process can die (an exception, Ctrl-C, SIGKILL, a crash). So a
lock file left behind is never "stale": it holds no lock, and the next run takes it.
No cleanup of old lock files is needed, and none is done: deleting a lock file
would let a third process lock a new file of the same name while a second one
still holds the old, deleted one. The file stays, holding the last holder's pid.

Lock files are hidden (their names start with a dot) and sit beside the output,
never inside a folder that is swapped in whole, so readers of the output do not
see them. flock works on local file systems; on NFS it depends on the mount.
"""
import contextlib
import fcntl
import os
from pathlib import Path

from src.errors import Busy


def lock_file_beside(output) -> Path:
    """The lock file of an output file or folder: `.NAME.lock` in the same folder."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


def _holder(handle) -> str:
    """The pid the current holder wrote into the lock file ('unknown' if it has not written it yet)."""
    handle.seek(0)
    text = handle.read().strip()
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def exclusive_lock(path, what):
    """Hold an exclusive advisory lock on the file `path` (created if needed) for the `with` block.

    `what` names the output the lock protects, for the message. Raises `Busy` at once when
    another process holds the lock. The lock ends with the block, or with the process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # "a+": create without truncating, so a refused process can still read the holder's pid.
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"{what}: another process (pid {_holder(handle)}) is writing it now (lock {path}); "
                       f"wait for it to finish, then run again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
