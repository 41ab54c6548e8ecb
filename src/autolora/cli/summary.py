"""Short result tables on the terminal, each with the threat model, n and input it was measured at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from ..eval.metrics import AUTOATTACK, CLEAN, CORRUPTIONS, PGD, pgd_label
from ..report.report import format_eps, percent
from .reporter import out


def _columns(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, header) of the accuracies present, headed by their attack settings."""
    steps = (results.get("pgd") or {}).get("steps", 20)
    aa_n = (results.get("autoattack") or {}).get("n", results.get("n"))
    subset = f" (n={aa_n})" if aa_n != results.get("n") else ""
    labels = {
        CLEAN.key: f"{CLEAN.label} %",
        PGD.key: f"{pgd_label(steps)} %",
        AUTOATTACK.key: f"{AUTOATTACK.label}{subset} %",
        CORRUPTIONS.key: f"{CORRUPTIONS.label} %",
    }
    return [(key, label) for key, label in labels.items() if key in results]


def accuracy_table(results: dict[str, Any], title: str) -> Table:
    """One row of accuracies (in %) of an evaluation's results."""
    table = Table(title=title, min_width=len(title) + 4)
    columns = _columns(results)
    for _, label in columns:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_row(*(percent(results[key]) for key, _ in columns))
    return table


def settings_line(results: dict[str, Any]) -> str:
    """``eps 0.1 (Linf), n=360 test images, input 1x28x28 (mean 0.286, std 0.353)``."""
    text = f"eps {format_eps(results['eps'])} ({results['norm']}), n={results['n']} test images"
    spec = results.get("input")
    if spec:
        floats = {k: ",".join(f"{v:.4g}" for v in spec[k]) for k in ("mean", "std")}
        size = f"{spec['channels']}x{spec['size']}x{spec['size']}"
        text += f", input {size} (mean {floats['mean']}, std {floats['std']})"
    return text


def print_summary(summary: dict[str, Any], run: Path) -> None:
    """The test accuracies of a finished training run, its length and where it was written.

    Its warnings (a guessed input spec, the evaluation's checks) were logged when they arose.
    """
    if not summary:
        return
    results = summary.get("evaluation") or {}
    out.print(accuracy_table(results or summary, f"{summary['method']} on {summary['dataset']}"))
    if results:
        out.print(settings_line(results), highlight=False)
    out.print(
        f"{summary['epochs']} epochs (best on validation: {summary['best_epoch']}), stopped: {summary['stop_reason']}",
        highlight=False,
    )
    out.print(
        f"time: train {summary['time_train_s']:.0f}s, scalars {summary['time_scalars_s']:.0f}s, "
        f"validation {summary['time_validation_s']:.0f}s, test {summary['time_test_s']:.0f}s",
        highlight=False,
    )
    out.print(f"wrote {run}/ (model, config, metrics, summary, curves)", highlight=False, soft_wrap=True)
