"""Progress of long phases: the hook that evaluation and training call, and plain lines for logs.

A ``Progress`` is called as ``progress(total, description)`` and opens a phase of ``total``
steps; the context manager yields the function that counts one step. A terminal shows a
bar (``cli.reporter``); a log gets :class:`PlainProgress` lines; a library call gets nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

Advance = Callable[[], None]
Progress = Callable[[int, str], AbstractContextManager[Advance]]


def format_duration(seconds: float) -> str:
    """``3m12s`` or ``1h05m``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@contextlib.contextmanager
def no_progress(total: int, description: str) -> Iterator[Advance]:
    """A phase that reports nothing."""
    yield lambda: None


def progress_line(description: str, done: int, total: int, elapsed: float) -> str:
    """``PGD-20: 12/40, 1m02s so far, ETA 2m35s``."""
    eta = elapsed / max(done, 1) * (total - done)
    return f"{description}: {done}/{total}, {format_duration(elapsed)} so far, ETA {format_duration(eta)}"


class PlainProgress:
    """Progress as plain lines for a log: one every ``interval`` seconds of a phase, none for short phases."""

    def __init__(
        self, write: Callable[[str], None], interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.write, self.interval, self.clock = write, interval, clock

    @contextlib.contextmanager
    def __call__(self, total: int, description: str) -> Iterator[Advance]:
        started = last = self.clock()
        done = 0

        def advance() -> None:
            nonlocal done, last
            done += 1
            now = self.clock()
            if now - last >= self.interval and done < total:
                last = now
                self.write(progress_line(description, done, total, now - started))

        yield advance
