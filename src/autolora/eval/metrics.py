"""The headline metrics, defined once: the key a summary stores and the label a table shows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One test accuracy: ``key`` in summaries and evaluation JSON, ``label`` in tables."""

    key: str
    label: str


CLEAN = Metric("clean_acc", "clean")
PGD = Metric("pgd_acc", "PGD")
AUTOATTACK = Metric("autoattack_acc", "AutoAttack")
CORRUPTIONS = Metric("corruption_acc", "corruptions")
METRICS: tuple[Metric, ...] = (CLEAN, PGD, AUTOATTACK, CORRUPTIONS)
METRIC_KEYS: tuple[str, ...] = tuple(m.key for m in METRICS)


def pgd_label(steps: int | None) -> str:
    """``PGD-20``: PGD's label names its steps, since PGD-10 and PGD-20 are not the same number."""
    return f"{PGD.label}-{steps}" if steps else PGD.label
