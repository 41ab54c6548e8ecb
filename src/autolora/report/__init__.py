"""Figures of training runs and Markdown reports comparing finished runs."""

from .plots import compare_runs, plot_run_curves
from .report import RunRecord, load_run, load_runs, markdown_table, write_report

__all__ = ["RunRecord", "compare_runs", "load_run", "load_runs", "markdown_table", "plot_run_curves", "write_report"]
