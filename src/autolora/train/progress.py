"""How a run reports progress: per-epoch lines, messages and a per-batch bar."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..progress import PlainProgress, format_duration, no_progress

log = logging.getLogger("autolora")


class Reporter(Protocol):
    def epoch(self, row: dict[str, Any], eta_seconds: float | None) -> None: ...

    def message(self, text: str) -> None: ...

    def warning(self, text: str) -> None: ...

    def batches(self, total: int, description: str) -> contextlib.AbstractContextManager[Callable[[], None]]: ...


# One epoch per line, in columns under this header (79 characters): a log reads as a table.
EPOCH_HEADER = "epoch       lr      λ1     λ2     loss  val clean  val robust     time      ETA"


def _cell(value: float | None, spec: str, width: int, unit: str = "") -> str:
    return f"{value:{width - len(unit)}{spec}}{unit}" if value is not None else f"{'-':>{width}}"


def format_epoch(row: dict[str, Any], eta_seconds: float | None) -> str:
    """The epoch's row under :data:`EPOCH_HEADER`; the schedule's event, if any, on a second line."""
    clean, robust = (None if row.get(k) is None else 100 * row[k] for k in ("val_clean_acc", "val_robust_acc"))
    eta = f"≤{format_duration(eta_seconds)}" if eta_seconds is not None else ""
    line = (
        f"{row['epoch']:>5}{row['lr']:>9.3g}{_cell(row.get('lambda1'), '.3f', 8)}{_cell(row.get('lambda2'), '.3f', 7)}"
        f"{_cell(row.get('train_loss'), '.4f', 9)}{_cell(clean, '.1f', 11, '%')}{_cell(robust, '.1f', 12, '%')}"
        f"{row['seconds']:>8.1f}s{eta:>9}"
    )
    return line + (f"\n{'':>5}  ↳ {row['event']}" if row.get("event") else "")


class EpochTable:
    """Epoch lines under one :data:`EPOCH_HEADER`, shown before the first of them."""

    def __init__(self) -> None:
        self.header_shown = False

    def __call__(self, row: dict[str, Any], eta_seconds: float | None) -> str:
        text = format_epoch(row, eta_seconds)
        if self.header_shown:
            return text
        self.header_shown = True
        return f"{EPOCH_HEADER}\n{text}"


class LogReporter:
    """Reports through the ``autolora`` logger (the library's default)."""

    def __init__(self) -> None:
        self.table = EpochTable()

    def epoch(self, row: dict[str, Any], eta_seconds: float | None) -> None:
        log.info(self.table(row, eta_seconds))

    def message(self, text: str) -> None:
        log.info(text)

    def warning(self, text: str) -> None:
        log.warning(text)

    def batches(self, total: int, description: str) -> contextlib.AbstractContextManager[Callable[[], None]]:
        return PlainProgress(log.info)(total, description)


class SilentReporter(LogReporter):
    """Reports nothing (for worker processes)."""

    def epoch(self, row: dict[str, Any], eta_seconds: float | None) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def batches(self, total: int, description: str) -> contextlib.AbstractContextManager[Callable[[], None]]:
        return no_progress(total, description)
