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
    list[Path], typer.Argument(metavar="RUN_DIR", help="Runs written by pretrain or finetune, or folders of runs.")
]
ReportDir = Annotated[Path, typer.Option("--out", help="Folder to write report.md and comparison.png to.")]


@command("report", "autolora report runs/autolora runs/vanilla --out reports/cifar10")
def report(run_dirs: RunDirs, out_dir: ReportDir = Path("."), debug: o.Debug = False) -> None:
    """Compare runs: test accuracies in a table, report.md with the training curves, comparison.png."""
    runs = load_runs(run_dirs)
    path = write_report(runs, out_dir)
    print_table(runs)
    out.print(f"wrote {path}", highlight=False)


SHARED = ("dataset", "eps")  # columns that move into the title when every run has the same value


def print_table(runs: list[RunRecord]) -> None:
    """The runs' test accuracies as a terminal table, then their evaluation warnings.

    A data set or eps common to all runs goes into the title, so the table fits 80 columns.
    """
    rows = table_rows(runs)
    shared = {i: rows[0][i] for i, (name, _) in enumerate(COLUMNS) if name in SHARED and len({r[i] for r in rows}) == 1}
    title = "test accuracy" + "".join(f", {COLUMNS[i][0]} {value}" for i, value in shared.items())
    table = Table(title=escape(title), box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, (name, right) in enumerate(COLUMNS):  # fold, not truncate, on a narrow terminal: cells stay readable
        if i not in shared:
            table.add_column(name, justify="right" if right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for i, cell in enumerate(row) if i not in shared))
    out.print(table)
    for run in runs:
        for warning in warnings_of(run):
            out.print(f"[yellow]warning:[/] {escape(run.label)}: {escape(warning)}", highlight=False)
