"""Short result tables on the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ..report.report import percent
from .reporter import out

ACCURACIES = (
    ("clean_acc", "clean"),
    ("pgd_acc", "PGD-20"),
    ("autoattack_acc", "AutoAttack"),
    ("corruption_acc", "corruptions"),
)


def accuracy_table(results: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    present = [(key, label) for key, label in ACCURACIES if key in results]
    for _, label in present:
        table.add_column(f"{label} (%)", justify="right")
    table.add_row(*(percent(results[key]) for key, _ in present))
    return table


def print_summary(summary: dict[str, Any], run: Path) -> None:
    """The test accuracies of a finished training run, its length and where it was written."""
    if not summary:
        return
    title = f"{summary['method']} on {summary['dataset']} (eps {summary['eps']:.4g}, n={summary['n_test']})"
    out.print(accuracy_table(summary, title))
    out.print(
        f"{summary['epochs']} epochs (best on validation: {summary['best_epoch']}), stopped: {summary['stop_reason']}; "
        f"train {summary['time_train_s']:.0f}s, scalars {summary['time_scalars_s']:.0f}s, "
        f"validation {summary['time_validation_s']:.0f}s, test {summary['time_test_s']:.0f}s",
        highlight=False,
    )
    for warning in summary.get("evaluation", {}).get("warnings", []):
        out.print("[yellow]warning:[/] " + escape(warning), highlight=False)
    out.print(
        f"wrote {run}/ (model.safetensors, config.json, metrics.jsonl, summary.json, curves.png)", highlight=False
    )
