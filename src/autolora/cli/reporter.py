"""Terminal output: epoch lines, a transient batch bar with ETA, warnings and one-line errors."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..progress import PlainProgress
from ..train.progress import EpochTable

out = Console()
err = Console(stderr=True)


def warn(text: str) -> None:
    """A ``warning: ...`` line on stderr."""
    err.print("[yellow]warning:[/] " + escape(text), highlight=False, soft_wrap=True)


def _plain_line(text: str) -> None:
    err.print(text, markup=False, highlight=False, soft_wrap=True)


class RichReporter:
    """Prints one line per epoch, and the progress of long phases: a bar with ETA on a terminal,
    a plain line every few seconds in a log."""

    def __init__(self, log_interval: float = 10.0) -> None:
        self.table = EpochTable()
        self.log_interval = log_interval  # seconds between plain progress lines when stderr is not a terminal

    def epoch(self, row: dict[str, Any], eta_seconds: float | None) -> None:
        self.message(self.table(row, eta_seconds))

    def message(self, text: str) -> None:
        out.print(text, markup=False, highlight=False, soft_wrap=True)

    def warning(self, text: str) -> None:
        warn(text)

    @contextlib.contextmanager
    def batches(self, total: int, description: str) -> Iterator[Callable[[], None]]:
        if not err.is_terminal:
            with PlainProgress(_plain_line, self.log_interval)(total, description) as advance:
                yield advance
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task(description, total=total)
            yield lambda: progress.advance(task)


class _WarningHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


def configure_logging() -> None:
    """Library warnings go to stderr as ``warning: ...`` lines."""
    logger = logging.getLogger("autolora")
    if not any(isinstance(h, _WarningHandler) for h in logger.handlers):
        handler = _WarningHandler(level=logging.WARNING)
        logger.addHandler(handler)
        logger.propagate = False
    # pyautoattack's sanity warnings are collected into the evaluation JSON and shown from there.
    logging.getLogger("auto-attack").propagate = False


def fail(message: str, code: int = 2) -> None:
    err.print("[red]error:[/] " + escape(message), highlight=False, soft_wrap=True)
    sys.exit(code)
