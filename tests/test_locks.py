"""src/locks.py: one holder at a time, a clear refusal naming the holder, nothing left behind."""
import os
import subprocess
import sys

import pytest

from src.errors import UserError
from src.locks import Locked, exclusive_lock

HOLD = ("import sys, time\n"
        "from src.locks import exclusive_lock\n"
        "with exclusive_lock(sys.argv[1], 'the work'):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n")   # until the test closes our stdin


def test_a_second_holder_is_refused_with_the_holders_pid(tmp_path):
    path = tmp_path / "sub" / ".work.lock"
    with exclusive_lock(path, "fold 3 of experiment demo"):
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(Locked, match=rf"fold 3 of experiment demo is in use by another run \(pid {os.getpid()}"):
            with exclusive_lock(path, "fold 3 of experiment demo"):
                pass
    assert not path.exists()          # released: the file is gone
    with exclusive_lock(path, "again"):  # and the lock can be taken again
        pass
    assert issubclass(Locked, UserError)  # reported as one line by src.cli.run


def test_another_process_holding_the_lock_is_named(tmp_path):
    path = tmp_path / ".work.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Locked, match=f"pid {holder.pid}"):
            with exclusive_lock(path, "the work"):
                pass
    finally:
        holder.stdin.close()
        holder.wait()
    with exclusive_lock(path, "the work"):  # its exit released it
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / ".work.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert path.exists()                    # SIGKILL: no clean-up ran, the file is still there...
    with exclusive_lock(path, "the work"):  # ...but the kernel released the lock
        assert path.read_text().strip() == str(os.getpid())
