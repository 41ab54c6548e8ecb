"""Compare finished runs: a Markdown table of their test accuracies and a figure of their training."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import AutoLoraError
from ..eval.metrics import AUTOATTACK, CLEAN, PGD
from ..fileio import read_json, write_text
from ..models.checkpoint import RUN_CONFIG
from ..progress import format_duration
from ..train.run_dir import CURVES, METRICS, SUMMARY, read_metrics
from .plots import compare_runs

REPORT = "report.md"
COMPARISON = "comparison.png"
LEGEND = (
    "Test-split accuracy. (fast): AutoAttack's fast version (APGD-CE + APGD-T), a smoke-test number, "
    "not standard AutoAttack; (n=N): on a subset of N test images; -: not evaluated."
)

# (header, right-aligned): the columns of the comparison table, in order.
COLUMNS: tuple[tuple[str, bool], ...] = (
    ("run", False),
    ("method", False),
    ("dataset", False),
    ("eps", True),
    ("clean %", True),
    ("PGD-20 %", True),
    ("AutoAttack %", True),
    ("epochs", True),
    ("wall time", True),
)


@dataclass
class RunRecord:
    """What a report needs of one run directory."""

    path: Path
    label: str
    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluation(self) -> dict[str, Any]:
        return self.summary.get("evaluation") or {}


def _refuse(run: Path, problem: str) -> AutoLoraError:
    return AutoLoraError(f"cannot report on {run}: {problem}")


def _read_object(run: Path, name: str) -> dict[str, Any]:
    try:
        data = read_json(run / name)
    except (OSError, ValueError) as exc:
        raise _refuse(run, f"{name} is unreadable or not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _refuse(run, f"{name} does not hold a JSON object")
    return data


def _read_rows(run: Path) -> list[dict[str, Any]]:
    if not (run / METRICS).exists():
        return []
    try:
        rows = read_metrics(run / METRICS)
    except (OSError, ValueError) as exc:
        raise _refuse(run, f"{METRICS} is unreadable ({exc})") from None
    if not all(isinstance(row, dict) and "epoch" in row for row in rows):
        raise _refuse(run, f"{METRICS} has a line that is not an epoch record")
    return rows


def load_run(path: str | Path, label: str | None = None) -> RunRecord:
    """Read a run directory's summary, metrics (optional) and config (optional); refuse what is broken."""
    run = Path(path)
    if not run.is_dir():
        raise _refuse(run, "it is a file, not a run directory" if run.exists() else "no such directory")
    if not (run / SUMMARY).is_file():
        raise _refuse(run, f"it has no {SUMMARY} (not a run directory, or the run has not finished)")
    summary = _read_object(run, SUMMARY)
    config = _read_object(run, RUN_CONFIG) if (run / RUN_CONFIG).exists() else {}
    return RunRecord(run, label or run.resolve().name, summary, _read_rows(run), config)


def unique_labels(paths: Sequence[Path]) -> list[str]:
    """Each directory's name, with as many parent folders as it takes to tell different runs apart."""
    parts = [p.resolve().parts[1:] for p in paths]
    depth = [1] * len(paths)
    while True:
        labels = ["/".join(pp[-d:]) for pp, d in zip(parts, depth, strict=True)]
        sources = {label: {pp for pp, other in zip(parts, labels, strict=True) if other == label} for label in labels}
        grow = [i for i, label in enumerate(labels) if len(sources[label]) > 1 and depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    # The same directory given twice: number the repeats.
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} ({seen[label]})"
    return labels


def expand_runs(path: Path) -> list[Path]:
    """``path`` itself, or, for a folder of runs (``autolora-demo/``), the runs inside it."""
    if not path.is_dir() or (path / SUMMARY).exists():
        return [path]
    inside = sorted(p for p in path.iterdir() if (p / SUMMARY).is_file())
    return inside or [path]


def load_runs(paths: Sequence[str | Path]) -> list[RunRecord]:
    """Load several runs (or folders of runs), labelled uniquely."""
    if not paths:
        raise AutoLoraError("no run directories given: name at least one")
    run_paths = [run for p in paths for run in expand_runs(Path(p))]
    return [load_run(p, label) for p, label in zip(run_paths, unique_labels(run_paths), strict=True)]


def format_eps(eps: float | None, norm: str | None = "Linf") -> str:
    """``8/255`` when ``eps * 255`` is (close to) an integer, else 3 significant digits; the norm unless L-inf."""
    if eps is None:
        return "-"
    steps = round(eps * 255)
    exact = abs(eps * 255 - steps) < 1e-6
    text = {0: "0", 255: "1"}.get(steps, f"{steps}/255") if exact else f"{eps:.3g}"
    return text if norm in (None, "Linf") else f"{text} ({norm})"


def percent(value: Any) -> str:
    """An accuracy fraction as a percentage with two decimals; ``-`` when absent."""
    return f"{100 * value:.2f}" if isinstance(value, int | float) else "-"


def _marked(value: str, marks: list[str]) -> str:
    return f"{value} ({', '.join(marks)})" if marks and value != "-" else value


def _pgd_cell(run: RunRecord) -> str:
    steps = (run.evaluation.get("pgd") or {}).get("steps")
    return _marked(percent(run.summary.get(PGD.key)), [f"{steps} steps"] if steps not in (None, 20) else [])


def _autoattack_cell(run: RunRecord) -> str:
    """AutoAttack accuracy, marked when it is the fast version or ran on a subset of the test set."""
    details = run.evaluation.get("autoattack") or {}
    marks = ["fast"] if details.get("version") == "fast" else []
    n, n_test = details.get("n"), run.summary.get("n_test")
    if n is not None and n_test is not None and n < n_test:
        marks.append(f"n={n}")
    return _marked(percent(run.summary.get(AUTOATTACK.key)), marks)


def wall_time(summary: dict[str, Any]) -> str:
    """The sum of the run's ``time_*_s`` fields, like ``3m12s``."""
    times = [v for k, v in summary.items() if k.startswith("time_") and k.endswith("_s") and isinstance(v, int | float)]
    return format_duration(sum(times)) if times else "-"


def table_rows(runs: Sequence[RunRecord]) -> list[list[str]]:
    """One row of :data:`COLUMNS` cells per run."""
    rows = []
    for run in runs:
        s = run.summary
        rows.append(
            [
                run.label,
                str(s.get("method", "-")),
                str(s.get("dataset", "-")),
                format_eps(s.get("eps"), s.get("norm")),
                percent(s.get(CLEAN.key)),
                _pgd_cell(run),
                _autoattack_cell(run),
                str(s.get("epochs", "-")),
                wall_time(s),
            ]
        )
    return rows


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(runs: Sequence[RunRecord]) -> str:
    """The runs' test accuracies as a Markdown table, one row per run."""
    header = "| " + " | ".join(name for name, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---:" if right else "---" for _, right in COLUMNS) + "|"
    body = ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in table_rows(runs)]
    return "\n".join([header, rule, *body]) + "\n"


def run_line(run: RunRecord) -> str:
    """How the run ended: its stop reason and the epoch kept."""
    s = run.summary
    best = s.get("best_epoch")
    kept = f"best epoch {best}" if best is not None else "no best epoch recorded"
    if best is not None and s.get("best_val_robust_acc") is not None:
        robust, clean = percent(s["best_val_robust_acc"]), percent(s.get("best_val_clean_acc"))
        kept += f" (validation robust {robust}%, clean {clean}%)"
    return f"stopped: {s.get('stop_reason') or 'unknown'}; {kept}"


def warnings_of(run: RunRecord) -> list[str]:
    """The evaluation's warnings (AutoAttack flags, accuracy-ordering checks)."""
    return [str(w) for w in run.evaluation.get("warnings") or []]


def _image(alt: str, target: Path, out_dir: Path) -> str:
    link = quote(Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix())
    return f"![{alt.replace('[', '(').replace(']', ')')}]({link})"


def _markdown(runs: Sequence[RunRecord], out_dir: Path, comparison: Path | None) -> str:
    lines = [f"# AutoLoRa report: {len(runs)} run{'s' if len(runs) != 1 else ''}", "", markdown_table(runs)]
    lines.append(LEGEND)
    lines += ["", "## Runs", ""]
    for run in runs:
        lines.append(f"- **{_md(run.label)}** (`{run.path}`): {run_line(run)}")
        lines += [f"  - warning: {w}" for w in warnings_of(run)]
    figures = [("Validation accuracy, loss scalars and learning rate of all runs", comparison)] if comparison else []
    figures += [(f"{run.label} training curves", run.path / CURVES) for run in runs if (run.path / CURVES).is_file()]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [line for alt, path in figures for line in (_image(alt, path, out_dir), "")]
    return "\n".join(lines).rstrip("\n") + "\n"


def _setting(run: RunRecord) -> str:
    s = run.summary
    return f"{s.get('dataset', '?')}, eps {format_eps(s.get('eps'), None)} ({s.get('norm') or 'Linf'})"


def figure_title(runs: Sequence[RunRecord]) -> str:
    """``digits, eps 0.1 (Linf): autolora vs vanilla``: what the comparison figure shows."""
    return f"{'; '.join(sorted({_setting(r) for r in runs}))}: {' vs '.join(r.label for r in runs)}"


def write_report(runs: Sequence[str | Path] | Sequence[RunRecord], out_dir: str | Path | None = None) -> Path:
    """Write ``report.md`` (and ``comparison.png`` when a run has metrics) to ``out_dir`` (default: here)."""
    records = list(runs) if runs and all(isinstance(r, RunRecord) for r in runs) else load_runs(runs)
    out = Path(out_dir) if out_dir is not None else Path.cwd()
    if out.exists() and not out.is_dir():
        raise AutoLoraError(f"cannot write the report to {out}: it is a file, not a folder")
    with_metrics = [(r.label, r.metrics) for r in records if r.metrics]
    report = out / REPORT
    try:
        comparison = compare_runs(with_metrics, out / COMPARISON, figure_title(records)) if with_metrics else None
        write_text(report, _markdown(records, out, comparison))
    except OSError as exc:
        raise AutoLoraError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return report
