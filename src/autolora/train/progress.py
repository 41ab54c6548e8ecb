"""How a run reports progress: per-epoch lines, messages and a per-batch bar."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

log = logging.getLogger("autolora")


class Reporter(Protocol):
    def epoch(self, row: dict[str, Any], eta_seconds: float | None) -> None: ...

    def message(self, text: str) -> None: ...

    def warning(self, text: str) -> None: ...

    def batches(self, total: int, description: str) -> contextlib.AbstractContextManager[Callable[[], None]]: ...


def format_epoch(row: dict[str, Any], eta_seconds: float | None) -> str:
    """One line per epoch: LR, scalars, loss, validation accuracy, time and ETA."""
    parts = [f"epoch {row['epoch']:>3}", f"lr {row['lr']:.3g}"]
    if row.get("lambda1") is not None:
        parts.append(f"λ1 {row['lambda1']:.3f} λ2 {row['lambda2']:.3f}")
    if row.get("train_loss") is not None:
        parts.append(f"loss {row['train_loss']:.4f}")
    if row.get("val_clean_acc") is not None:
        parts.append(f"val clean {100 * row['val_clean_acc']:.1f}% robust {100 * row['val_robust_acc']:.1f}%")
    parts.append(f"{row['seconds']:.1f}s")
    if row.get("event"):
        parts.append(f"[{row['event']}]")
    if eta_seconds is not None:
        parts.append(f"ETA ≤{format_duration(eta_seconds)}")
    return "  ".join(parts)


def format_duration(seconds: float) -> str:
    """``3m12s`` or ``1h05m``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class LogReporter:
    """Reports through the ``autolora`` logger (the library's default)."""

    def epoch(self, row: dict[str, Any], eta_seconds: float | None) -> None:
        log.info(format_epoch(row, eta_seconds))

    def message(self, text: str) -> None:
        log.info(text)

    def warning(self, text: str) -> None:
        log.warning(text)

    @contextlib.contextmanager
    def batches(self, total: int, description: str) -> Iterator[Callable[[], None]]:
        yield lambda: None


class SilentReporter(LogReporter):
    """Reports nothing (for worker processes)."""

    def epoch(self, row: dict[str, Any], eta_seconds: float | None) -> None:
        pass

    def message(self, text: str) -> None:
        pass
