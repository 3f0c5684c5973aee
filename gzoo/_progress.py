"""Progress of long jobs on stderr, with or without a terminal: the one progress reporter of
training, simulations, GIFs and data sets.

On a terminal it is a one-line ``\\r`` bar redrawn at most ten times a second. Without one (a
pipe, ``nohup``, a CI log) it writes a plain line every ``interval`` seconds (default 5,
``GZOO_PROGRESS_SECONDS`` to change it), so a log shows that a long job is alive; a job that
ends sooner prints nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]

_BAR = 24


def _line_interval() -> float:
    try:
        return max(float(os.environ.get("GZOO_PROGRESS_SECONDS", "5")), 0.0)
    except ValueError:
        return 5.0


class Progress:
    """``with Progress("simulate", total) as p: ... p.update(done, "detail")``.

    Args:
        label: what is running (starts every line).
        total: the count ``done`` runs up to.
        enabled: ``False`` prints nothing; ``None`` or ``True`` report as described above.
        stream: where to write (stderr).
        interval: seconds between lines without a terminal (module docstring).
        clock: the time source (tests pass a fake one).
    """

    def __init__(self, label: str, total: int, *, enabled: bool | None = None,
                 stream: TextIO | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total = label, max(int(total), 1)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled is not False
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if callable(isatty) else False
        self.interval = (0.1 if self.tty else _line_interval()) if interval is None else interval
        self.clock = clock
        self.start = clock()
        self.last = self.start if not self.tty else -float("inf")
        self.width = 0
        self.lines = 0

    def update(self, done: int, detail: str = "", *, force: bool = False) -> None:
        """Report ``done`` of ``total``; at most once per interval unless ``force`` (which
        redraws the bar on a terminal and is ignored without one)."""
        if not self.enabled:
            return
        now = self.clock()
        if not (force and self.tty) and now - self.last < self.interval:
            return
        self.last = now
        done = min(max(int(done), 0), self.total)
        extra = f" {detail}" if detail else ""
        if self.tty:
            filled = _BAR * done // self.total
            line = (f"{self.label} [{'#' * filled}{'.' * (_BAR - filled)}] "
                    f"{done}/{self.total}{extra}")
            self.width = max(self.width, len(line))
            self.stream.write("\r" + line.ljust(self.width))
        else:
            self.stream.write(f"{self.label}: {done}/{self.total} "
                              f"({100 * done / self.total:.0f} %){extra} "
                              f"[{now - self.start:.0f} s]\n")
            self.lines += 1
        self.stream.flush()

    def close(self, detail: str = "") -> None:
        """End the bar's line (terminal); without a terminal, a last line if any was written."""
        if not self.enabled:
            return
        if self.tty and self.width:
            self.stream.write("\n")
        elif not self.tty and self.lines:
            extra = f" {detail}" if detail else ""
            self.stream.write(f"{self.label}: done{extra} [{self.clock() - self.start:.0f} s]\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
