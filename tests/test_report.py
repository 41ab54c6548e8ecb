"""``autolora report``: the comparison table, report.md and the refusals, on hand-written run directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autolora.errors import AutoLoraError
from autolora.fileio import write_json
from autolora.report import load_run, load_runs, markdown_table, write_report
from autolora.report.report import figure_title, format_eps, table_rows


def _summary(method: str, dataset: str, **extra: Any) -> dict[str, Any]:
    return {
        "method": method,
        "dataset": dataset,
        "architecture": "resnet8",
        "eps": 8 / 255,
        "norm": "Linf",
        "clean_acc": 0.8125,
        "pgd_acc": 0.4375,
        "n_test": 1000,
        "epochs": 4,
        "best_epoch": 3,
        "best_val_robust_acc": 0.45,
        "best_val_clean_acc": 0.8,
        "final_lr": 0.005,
        "stop_reason": "max epochs",
        "evaluation": {"warnings": []},
        "time_train_s": 150.0,
        "time_scalars_s": 12.0,
        "time_validation_s": 20.0,
        "time_test_s": 10.5,
        **extra,
    }


def _rows(autolora: bool) -> list[dict[str, Any]]:
    rows = []
    for epoch in range(1, 5):
        lr = 0.01 if epoch < 3 else 0.005
        rows.append(
            {
                "epoch": epoch,
                "lr": lr,
                "lambda1": 1 - 0.1 * epoch if autolora else None,
                "lambda2": 6 + epoch if autolora else None,
                "nat_branch_acc": 0.7 if autolora else None,
                "train_loss": 1.0 / epoch,
                "train_robust_acc": 0.3 + 0.02 * epoch,
                "val_clean_acc": 0.7 + 0.02 * epoch,
                "val_robust_acc": 0.4 + 0.01 * epoch,
                "best": epoch == 3,
                "event": "condition 1: 2/4 epochs improved" if epoch == 3 else "",
                "seconds": 37.5,
            }
        )
    return rows


def _run(path: Path, summary: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> Path:
    path.mkdir(parents=True)
    write_json(path / "summary.json", summary)
    write_json(path / "config.json", {"format": "autolora-run/1", "command": "finetune", "model": {}})
    if rows is not None:
        (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    fast = {"autoattack": {"version": "fast", "n": 1000}, "warnings": ["AutoAttack: zero gradients"]}
    autolora = _summary("autolora", "cifar10", autoattack_acc=0.412, evaluation=fast)
    return [
        _run(tmp_path / "autolora", autolora, _rows(True)),
        _run(tmp_path / "vanilla", _summary("vanilla", "cifar10"), _rows(False)),
        _run(tmp_path / "pre", _summary("trades", "digits", eps=0.1, epochs=10, stop_reason="patience")),
    ]


def test_table_has_a_row_per_run(runs: list[Path]) -> None:
    records = load_runs(runs)
    rows = {row[0]: row for row in table_rows(records)}
    assert rows["autolora"][1:] == ["autolora", "cifar10", "8/255", "81.25", "43.75", "41.20 (fast)", "4", "3m12s"]
    assert rows["vanilla"][6] == "-"
    assert rows["pre"][1:4] == ["trades", "digits", "0.1"]
    assert records[2].metrics == [] and len(records[0].metrics) == 4
    table = markdown_table(records)
    assert table.count("\n") == 2 + len(runs)
    assert "| autolora | autolora | cifar10 | 8/255 | 81.25 | 43.75 | 41.20 (fast) | 4 | 3m12s |" in table


@pytest.mark.parametrize(
    ("eps", "norm", "text"),
    [
        (8 / 255, "Linf", "8/255"),
        (2 / 255, "Linf", "2/255"),
        (0, "Linf", "0"),
        (0.031, "Linf", "0.031"),
        (1 / 7, "Linf", "0.143"),
        (1 / 3, "Linf", "85/255"),
        (1.0, "Linf", "1"),
        (0.5, "L2", "0.5 (L2)"),
        (None, None, "-"),
    ],
)
def test_format_eps(eps: float | None, norm: str | None, text: str) -> None:
    assert format_eps(eps, norm) == text


def test_autoattack_subset_is_marked(tmp_path: Path) -> None:
    evaluation = {"autoattack": {"version": "standard", "n": 200}, "pgd": {"steps": 10}}
    run = load_run(_run(tmp_path / "r", _summary("autolora", "c", autoattack_acc=0.4, evaluation=evaluation)))
    assert table_rows([run])[0][5:7] == ["43.75 (10 steps)", "40.00 (n=200)"]


def test_labels_are_unique(tmp_path: Path) -> None:
    a = _run(tmp_path / "a" / "run", _summary("vanilla", "c"))
    b = _run(tmp_path / "b" / "run", _summary("vanilla", "c"))
    assert [r.label for r in load_runs([a, b, a])] == ["a/run", "b/run", "a/run (2)"]


def test_report_links_existing_figures(runs: list[Path], tmp_path: Path) -> None:
    (runs[0] / "curves.png").write_bytes(b"\x89PNG")
    report = write_report(runs, tmp_path / "out")
    text = report.read_text()
    assert "41.20 (fast)" in text and "zero gradients" in text
    assert "stopped: patience; best epoch 3" in text
    links = [line[line.index("](") + 2 : -1] for line in text.splitlines() if line.startswith("![")]
    assert "comparison.png" in links and "../autolora/curves.png" in links
    for link in links:
        assert (report.parent / link).is_file()


def test_report_without_metrics_has_no_figure(runs: list[Path], tmp_path: Path) -> None:
    report = write_report(runs[2:], tmp_path / "out")
    assert "![" not in report.read_text() and not (tmp_path / "out" / "comparison.png").exists()


def test_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AutoLoraError, match=r"empty: it has no summary\.json"):
        load_run(empty)
    with pytest.raises(AutoLoraError, match=r"missing: no such directory"):
        load_run(tmp_path / "missing")
    broken = _run(tmp_path / "broken", {})
    (broken / "summary.json").write_text('{"method": ')
    with pytest.raises(AutoLoraError, match=r"broken: summary\.json is unreadable or not valid JSON"):
        load_run(broken)
    bad_metrics = _run(tmp_path / "bad_metrics", _summary("vanilla", "c"))
    (bad_metrics / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(AutoLoraError, match=r"bad_metrics: metrics\.jsonl is unreadable"):
        load_run(bad_metrics)


def test_cli_prints_the_table(cli, runs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich reads the width per print: keep every cell on one line
    result = cli("report", *runs, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "41.20 (fast)" in result.stdout and "8/255" in result.stdout and "vanilla" in result.stdout
    assert "report.md" in result.stdout and (tmp_path / "out" / "report.md").is_file()


def test_cli_refuses_a_bad_directory(cli, tmp_path: Path) -> None:
    result = cli("report", tmp_path / "nothing-here")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot report on") and "nothing-here" in lines[0]


def test_a_folder_of_runs_is_reported_as_its_runs(cli, runs: list[Path], tmp_path: Path) -> None:
    assert [r.label for r in load_runs([tmp_path])] == ["autolora", "pre", "vanilla"]
    result = cli("report", tmp_path, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output


def test_the_terminal_table_fits_80_columns(cli, tmp_path: Path) -> None:
    aa = {"autoattack": {"version": "standard", "n": 100}, "warnings": []}
    demo = [
        _run(tmp_path / "demo" / "autolora", _summary("autolora", "digits", eps=0.1, autoattack_acc=0.74, n_test=360,
                                                      epochs=40, evaluation=aa), _rows(True)),
        _run(tmp_path / "demo" / "vanilla", _summary("vanilla", "digits", eps=0.1, autoattack_acc=0.41, n_test=360,
                                                     epochs=24, evaluation=aa), _rows(False)),
    ]  # fmt: skip
    result = cli("report", *demo, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("test accuracy, dataset digits, eps 0.1" in line for line in lines)
    assert any(line.split()[:2] == ["autolora", "autolora"] and "74.00 (n=100)" in line for line in lines)


def test_the_comparison_figure_names_its_setting_and_shows_every_runs_lr(runs, tmp_path, monkeypatch) -> None:
    from autolora.report import plots

    drawn = []
    monkeypatch.setattr(plots, "draw_lr", lambda ax, rows, label="": drawn.append(label))
    records = load_runs(runs[:2])
    assert figure_title(records) == "cifar10, eps 8/255 (Linf): autolora vs vanilla"
    write_report(records, tmp_path / "out")
    assert drawn == ["autolora", "vanilla"] and (tmp_path / "out" / "comparison.png").stat().st_size > 1000
