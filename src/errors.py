"""Typed errors for problems with what the user gave us (files, CSVs, audio, settings).

Scripts report a `UserError` as one line, `script.py: error: <message>`, and
exit with status 2 (`src.cli.run`); any other exception is a bug and keeps its
traceback. The subclasses are also the built-in exception a caller would
expect (`except FileNotFoundError` / `except ValueError` keep working), and
every message names the file or setting it is about.
"""
import errno

# A write that fails for one of these reasons is the machine's state, not a bug: src.cli.run reports the
# OSError in one line naming the file (full disk, quota, read-only file system, no permission).
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class UserError(Exception):
    """A problem with the user's input, reported in one line without a traceback."""


class InputFileNotFound(UserError, FileNotFoundError):
    """A file or folder the user named (or that a previous step should have written) does not exist."""


class BadInput(UserError, ValueError):
    """A file exists but its content is unusable: malformed CSV, bad names, NaN values, wrong columns."""


class BadSetting(UserError, ValueError):
    """An option or setting that cannot work (unknown fold, impossible size, mismatched experiments)."""


class ResultsExist(UserError, FileExistsError):
    """An output folder already holds results (or files) that the run would replace; the message names the way on
    (--resume / --overwrite)."""


class BadCheckpoint(UserError, ValueError):
    """A checkpoint that cannot be loaded safely (not a torch file, truncated, or holding pickled code)."""


class Busy(UserError, BlockingIOError):
    """Another process holds the lock on an output this run would write (src/locks.py); the message names
    the output and that process's pid."""
