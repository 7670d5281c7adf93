"""src.files atomic writes of folders: a replace that survives a competitor, a publish that never replaces."""
import os
from pathlib import Path

import pytest

from src.files import atomic_new_dir, atomic_path


def _fill(folder, text):
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text(text)


def test_atomic_path_replaces_a_folder_that_appears_at_the_last_moment(tmp_path, monkeypatch):
    target = tmp_path / "out"
    real = {"rename": os.rename, "replace": os.replace}
    competitors = ["theirs"]

    def competitor_first(name):
        def move(src, dst):
            if Path(dst) == target and competitors:
                _fill(target, competitors.pop())  # another process publishes just before our rename
            return real[name](src, dst)
        return move

    monkeypatch.setattr(os, "rename", competitor_first("rename"))
    monkeypatch.setattr(os, "replace", competitor_first("replace"))
    with atomic_path(target, suffix="") as tmp:  # used to fail: OSError Directory not empty
        _fill(tmp, "mine")
    assert (target / "a.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary or .old folder left


def test_atomic_path_replaces_an_existing_folder(tmp_path):
    target = tmp_path / "out"
    _fill(target, "old")
    with atomic_path(target, suffix="") as tmp:
        _fill(tmp, "new")
    assert (target / "a.txt").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_new_dir_publishes_and_never_replaces(tmp_path):
    target = tmp_path / "cache"
    with atomic_new_dir(target) as tmp:
        assert not target.exists()  # nothing under the final name until the block succeeds
        (tmp / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    inode = (target / "a.txt").stat().st_ino
    with pytest.raises(FileExistsError):
        with atomic_new_dir(target) as tmp:
            (tmp / "a.txt").write_text("second")
    assert (target / "a.txt").stat().st_ino == inode and (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_atomic_new_dir_leaves_nothing_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_new_dir(tmp_path / "cache") as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_signal_while_a_folder_is_swapped_leaves_the_new_folder_in_place(tmp_path, monkeypatch):
    """Between moving the old folder aside and renaming the new one in, `out` does not exist: Ctrl-C there used
    to leave neither (the new folder was then deleted as a temporary). The signal now waits for the swap."""
    import signal

    target = tmp_path / "out"
    _fill(target, "old")
    real_rename = os.rename

    def ctrl_c_after_moving_aside(src, dst):
        real_rename(src, dst)
        if Path(src) == target:  # the old folder has just been moved aside
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "rename", ctrl_c_after_moving_aside)
    # Python's own Ctrl-C handler (a test run started as a background job inherits SIGINT ignored).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with atomic_path(target, suffix="") as tmp:
                _fill(tmp, "new")
    finally:
        signal.signal(signal.SIGINT, before)
    assert (target / "a.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary or .old folder left
