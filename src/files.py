"""Files that are whole or absent: atomic writes of files and folders, stale temporaries swept, JSON and
checkpoints read safely."""
import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path

import torch

from src.errors import WRITE_ERRNOS, BadCheckpoint, BadInput, InputFileNotFound


# Every temporary name of the atomic writers is `.<final name>.fsat-tmp-<pid>@<host>-<random><suffix>`:
# recognisable, so that what a killed writer (kill -9, power cut) left behind can be removed by a later
# run without ever touching a user's own hidden files, and owned, so that only temporaries whose process
# is gone are removed (the host keeps a run on another machine sharing the folder safe).
TEMP_MARK = ".fsat-tmp-"
_TEMP_NAME = re.compile(r"^\..+" + re.escape(TEMP_MARK) + r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)-[A-Za-z0-9_]+")
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:16]
# Folders this process has already swept: one listing per folder, not one per write.
_swept = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True


def remove_stale_temps(folder) -> list:
    """Delete the temporaries that dead processes of this host left in `folder` (see TEMP_MARK); returns them.

    Only names this module makes are considered, and only those whose writer's pid is not running
    here: a live writer's temporary, another machine's, and every other file stay.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no folder yet (or unreadable): nothing to sweep
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or match["host"] != _HOST or int(match["pid"]) == os.getpid() \
                or _pid_alive(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def _temp_beside(path: Path, suffix: str) -> Path:
    """An unused temporary name in `path`'s folder (nothing is created there); the first use of a folder
    in this process sweeps it of the temporaries of killed runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    if folder not in _swept:
        remove_stale_temps(folder)
        _swept.add(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}{os.getpid()}@{_HOST}-", suffix=suffix,
                                   dir=path.parent)
    except OSError as exc:  # a read-only or full folder: name the output, not a temporary never made
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
    os.close(fd)
    os.unlink(tmp)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    An interrupted write leaves no half-written file under the final name.
    Works for files and for directories (the caller creates either). A directory
    replaces an existing one; for folders that others may be reading, use
    `atomic_new_dir`, which never replaces.
    """
    path = Path(path)
    tmp = _temp_beside(path, suffix or path.suffix)
    with _published_or_removed(tmp, path):
        yield tmp
        if tmp.is_dir():
            _replace_dir(tmp, path)
        else:
            os.replace(tmp, path)


@contextlib.contextmanager
def _published_or_removed(tmp: Path, path: Path):
    """Around writing `tmp` and renaming it to `path`: a write error comes out naming `path`
    (`write_error_naming`), and `tmp` is removed unless the rename took it, whatever stopped the write."""
    try:
        yield
    except Exception as exc:
        named = write_error_naming(exc, tmp, path)
        if named is None:
            raise
        raise named from exc
    finally:
        if tmp.exists():
            _remove(tmp)


def write_oserror(exc):
    """The OSError of WRITE_ERRNOS in `exc` or what caused it (torch.save to an open file raises a RuntimeError
    whose __context__ is the OSError), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def write_error_naming(exc, tmp: Path, path: Path):
    """An OSError like the write error in `exc`, naming the final `path` (or the file inside it) instead of
    the temporary name, which is gone by the time the message is read; None when `exc` is no write error.
    Library writers (np.save, DataFrame.to_csv, torch.save on a file) raise it without any file name."""
    error = write_oserror(exc)
    if error is None:
        return None
    name = str(error.filename) if error.filename is not None else ""
    if name.startswith(str(tmp)):
        name = str(path) + name[len(str(tmp)):]
    elif not name:
        name = str(path)
    elif name == str(path) and error is exc:
        return None  # already names the final path
    return type(error)(error.errno, error.strerror or os.strerror(error.errno), name)


# rename(2) of a folder onto a non-empty folder fails with one of these (Linux says ENOTEMPTY).
_DIR_TAKEN = (errno.ENOTEMPTY, errno.EEXIST)


def _replace_dir(tmp: Path, path: Path):
    """Rename folder `tmp` to `path`, moving any existing `path` aside first and deleting it afterwards.

    Safe against another process doing the same at the same time (each moves the
    old folder to its own unique name, and a folder that appears in between is
    moved aside too), but a reader may briefly find no `path`. Ctrl-C or SIGTERM
    between the two renames would leave neither folder under `path` (the new one
    is deleted as a temporary on the way out): they are held back until both are done.
    """
    while True:
        try:
            os.rename(tmp, path)  # succeeds when `path` is absent (or an empty folder)
            return
        except OSError as exc:
            if exc.errno not in _DIR_TAKEN:
                raise
        old = _temp_beside(path, ".old")
        try:
            with signals_deferred():
                try:
                    os.rename(path, old)
                except FileNotFoundError:  # someone else moved it aside meanwhile: try again
                    continue
                try:
                    os.rename(tmp, path)
                    return
                except OSError as exc:
                    if exc.errno in _DIR_TAKEN:  # another process published meanwhile: move theirs aside too
                        continue
                    os.rename(old, path)  # put the previous folder back
                    raise
        finally:
            if old.exists():
                _remove(old)


@contextlib.contextmanager
def signals_deferred(signals=(signal.SIGINT, signal.SIGTERM)):
    """Hold `signals` back during the block; one that arrives is handled as soon as it ends (its handler then
    raises KeyboardInterrupt, or the process ends as the signal's default says). For steps that must not be
    cut in two (a folder swapped by two renames). Python-level handlers, not the thread's signal mask: the
    kernel hands a process's signal to any thread that does not block it, and torch has several.
    Only the main thread can set handlers; elsewhere this is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {signum: signal.signal(signum, lambda number, frame: caught.append(number)) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught[0])


@contextlib.contextmanager
def atomic_new_dir(path):
    """Yield a new empty temporary folder beside `path`; rename it to `path` only on success.

    Unlike `atomic_path`, an existing `path` is never replaced, so a published
    folder stays exactly as its readers found it. If `path` exists by the end
    (e.g. another process published it first), the new folder is deleted and
    FileExistsError is raised: the caller decides whether that counts as success.
    """
    path = Path(path)
    tmp = _temp_beside(path, "")
    tmp.mkdir()
    with _published_or_removed(tmp, path):
        yield tmp
        if path.exists():
            raise FileExistsError(errno.EEXIST, "already exists", str(path))
        try:
            os.rename(tmp, path)  # atomic; fails if a non-empty `path` appeared since the check
        except OSError as exc:
            if exc.errno in _DIR_TAKEN:
                raise FileExistsError(errno.EEXIST, "already exists", str(path)) from None
            raise


def _remove(p: Path):
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()


def write_csv_atomic(df, path, **kwargs):
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, **kwargs)


def write_json_atomic(obj, path):
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path, what="JSON file", kind=dict):
    """The JSON value in `path`, which must be a `kind` (dict: an object; None: anything).

    The one reader of the repo's JSON files (config.json, corrections, thresholds, ...): a missing,
    empty, truncated, non-UTF-8 or wrongly shaped file is a user error naming the file, never a
    bare JSONDecodeError / UnicodeDecodeError / KeyError further on.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFound(f"{path}: no such {what}")
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM (some Windows editors) is not damage
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: this {what} is not UTF-8 text (byte offset {exc.start})") from exc
    except ValueError as exc:  # JSONDecodeError: empty, truncated, garbage
        raise BadInput(f"{path}: this {what} is not valid JSON ({exc}); damaged or truncated?") from exc
    except RecursionError as exc:  # absurdly deep nesting ([[[[...) is damage, not data
        raise BadInput(f"{path}: this {what} nests too deeply to be one of this repo's files") from exc
    if kind is not None and not isinstance(value, kind):
        raise BadInput(f"{path}: this {what} must hold a JSON {'object' if kind is dict else kind.__name__}, "
                       f"found {type(value).__name__}")
    return value


def torch_save_atomic(save, path, suffix=".pth"):
    """`save(handle)` writes a torch file (torch.save(obj, handle), model.save(handle), torch.jit.save(m, handle))
    into a temporary file renamed onto `path` when complete. Through an open file, not a path: given a path,
    torch reports a full disk as a bare RuntimeError ("unexpected pos"); through a file, the OSError saying
    why is kept as its cause, and atomic_path reports it naming `path`."""
    with atomic_path(path, suffix=suffix) as tmp, open(tmp, "wb") as handle:
        save(handle)


def _reason(exc: Exception) -> str:
    """The informative line of torch's (long, multi-line) weights-only error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "WeightsUnpickler error" in line or "Unsupported" in line]
    return (useful or lines or [type(exc).__name__])[0]


def safe_torch_load(path, what="checkpoint"):
    """`torch.load(path, weights_only=True)` on CPU; every torch file of the repo is read through here."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFound(f"{path}: no such {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled code, a truncated file, or not a torch file at all
        raise BadCheckpoint(f"{path}: cannot load this {what} safely ({type(exc).__name__}: {_reason(exc)}); "
                            f"it is read with torch.load(weights_only=True), which runs no pickled code") from exc
