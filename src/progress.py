"""Progress reports that suit where stderr goes: every progress bar of the repo comes from `progress`.

- stderr is a terminal: a tqdm bar, redrawn in place (per file, clip, batch...);
- stderr is anything else (CI, nohup, a log file, a pipe): no bar, whose
  carriage-return redraws would fill the log, but one line when the stage
  (or training epoch) ends, `<desc>: <done>/<total> <unit> in <seconds> s`;
- `enabled=False` (the scripts' --no-progress): neither.
"""
import sys
import time

from tqdm import tqdm


def stderr_is_terminal() -> bool:
    """Whether sys.stderr is an interactive terminal (False for files, pipes, captured or closed streams)."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class StageLine:
    """tqdm's interface (iterate, update, close, with-block) without a bar: one line on stderr at the end."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", enabled=True):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit, self.enabled = iterable, total, desc, unit, enabled
        self.n, self.closed, self.start = 0, False, time.monotonic()

    def __iter__(self):
        # Counted when handed out: a consumer that stops once it has all it expects (zip with a shorter
        # list, islice) never resumes the generator after its last item.
        try:
            for item in self.iterable:
                self.n += 1
                yield item
        finally:
            self.close()

    def __len__(self):
        return len(self.iterable) if self.total is None else self.total

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n=1):
        self.n += n

    def line(self) -> str:
        done = f"{self.n:g}" if self.total is None else f"{self.n:g}/{self.total:g}"
        prefix = f"{self.desc}: " if self.desc else ""
        return f"{prefix}{done} {self.unit} in {time.monotonic() - self.start:.1f} s"

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.enabled:
            print(self.line(), file=sys.stderr, flush=True)


def progress(iterable=None, *, total=None, desc="", unit="it", enabled=True, **tqdm_options):
    """A tqdm bar when stderr is a terminal, else a `StageLine`; silent when not `enabled`.

    Use it like tqdm: wrap an iterable, or call `update` and `close`.
    `tqdm_options` (e.g. leave=False) only apply to the terminal bar.
    """
    if enabled and stderr_is_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, **tqdm_options)
    return StageLine(iterable, total=total, desc=desc, unit=unit, enabled=enabled)
