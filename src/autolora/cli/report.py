"""``autolora report``: compare finished runs in a table, a Markdown report and a figure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from ..report.report import COLUMNS, RunRecord, load_runs, table_rows, warnings_of, write_report
from . import options as o
from .app import command
from .reporter import out

RunDirs = Annotated[
    list[Path], typer.Argument(metavar="RUN_DIR", help="Run directories written by pretrain or finetune.")
]
ReportDir = Annotated[Path, typer.Option("--out", help="Folder to write report.md and comparison.png to.")]


@command("report", "autolora report runs/autolora runs/vanilla --out reports/cifar10")
def report(run_dirs: RunDirs, out_dir: ReportDir = Path("."), debug: o.Debug = False) -> None:
    """Compare runs: test accuracies in a table, report.md with the training curves, comparison.png."""
    runs = load_runs(run_dirs)
    path = write_report(runs, out_dir)
    print_table(runs)
    out.print(f"wrote {path}", highlight=False)


def print_table(runs: list[RunRecord]) -> None:
    """The runs' test accuracies as a terminal table, then their evaluation warnings."""
    table = Table(title="test accuracy", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name, right in COLUMNS:  # fold, not truncate, on a narrow terminal: every cell stays readable
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    for row in table_rows(runs):
        table.add_row(*(escape(cell) for cell in row))
    out.print(table)
    for run in runs:
        for warning in warnings_of(run):
            out.print(f"[yellow]warning:[/] {escape(run.label)}: {escape(warning)}", highlight=False)
