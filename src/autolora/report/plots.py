"""Figures of training runs: validation accuracy, AutoLoRa's scalars and the learning rate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ..train.run_dir import CURVES, METRICS, read_metrics  # noqa: E402


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _has(rows: list[dict[str, Any]], key: str) -> bool:
    return any(r.get(key) is not None for r in rows)


def draw_accuracy(ax: plt.Axes, rows: list[dict[str, Any]], label: str = "", color: str | None = None) -> None:
    """Validation robust (solid) and clean (dashed) accuracy per epoch."""
    prefix = f"{label} " if label else ""
    epochs, robust = _series(rows, "val_robust_acc")
    line = ax.plot(epochs, [100 * v for v in robust], "-", color=color, label=f"{prefix}robust")[0]
    epochs, clean = _series(rows, "val_clean_acc")
    ax.plot(epochs, [100 * v for v in clean], "--", color=line.get_color(), alpha=0.7, label=f"{prefix}clean")
    for row in rows:
        if row.get("event"):
            ax.axvline(row["epoch"], color=line.get_color(), alpha=0.15, lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)


def draw_scalars(ax: plt.Axes, rows: list[dict[str, Any]], label: str = "") -> None:
    prefix = f"{label} " if label else ""
    for key, symbol in (("lambda1", "λ1"), ("lambda2", "λ2")):
        epochs, values = _series(rows, key)
        ax.plot(epochs, values, marker=".", label=f"{prefix}{symbol}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss scalar")
    ax.grid(alpha=0.3)


def draw_lr(ax: plt.Axes, rows: list[dict[str, Any]], label: str = "") -> None:
    epochs, values = _series(rows, "lr")
    ax.step(epochs, values, where="post", label=label or None)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3, which="both")


def _legend(ax: plt.Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot_run_curves(run: Path, out: Path | None = None) -> Path | None:
    """``curves.png`` of one run: validation accuracy, then (AutoLoRa) the scalars, then the LR."""
    metrics = run / METRICS
    if not metrics.exists():
        return None
    rows = read_metrics(metrics)
    panels = [draw_accuracy] + ([draw_scalars] if _has(rows, "lambda1") else []) + [draw_lr]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, draw in zip(axes[0], panels, strict=True):
        draw(ax, rows)
        _legend(ax)
    fig.suptitle(run.name, fontsize=10)
    fig.tight_layout()
    target = out or run / CURVES
    save_figure(fig, target)
    return target


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Save a figure atomically and close it."""
    from ..fileio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


EVENT_LABEL = "thin vertical line: LR halved / rolled back, or stop"


def compare_runs(runs: Sequence[tuple[str, list[dict[str, Any]]]], path: Path, title: str = "") -> Path:
    """Every run's validation accuracy and LR on shared axes, and the AutoLoRa runs' scalars."""
    auto = [(label, rows) for label, rows in runs if _has(rows, "lambda1")]
    panels = 2 + bool(auto)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.8), squeeze=False)
    for label, rows in runs:
        draw_accuracy(axes[0][0], rows, label)
    axes[0][0].set_title("validation accuracy (robust solid, clean dashed)", fontsize=9)
    if any(row.get("event") for _, rows in runs for row in rows):
        axes[0][0].add_line(Line2D([], [], color="grey", alpha=0.4, lw=1, label=EVENT_LABEL))
    if auto:
        for label, rows in auto:
            draw_scalars(axes[0][1], rows, label)
        axes[0][1].set_title("AutoLoRa loss scalars", fontsize=9)
    for label, rows in runs:
        draw_lr(axes[0][-1], rows, label)
    axes[0][-1].set_title("learning rate", fontsize=9)
    for ax in axes[0]:
        _legend(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return path
