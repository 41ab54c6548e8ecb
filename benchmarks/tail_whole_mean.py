"""Does choosing among the tail's running means matter? The study's runs, finished again on their whole mean.

The default recipe's tail (docs/method.md, "The default recipe") ends a run on the mean of its
weights over the last quarter of the cap, and deploys the best, by the rule's validation robust
loss on about 100 images, of the running means at the quarter's epochs. This script asks what the
selection buys: it copies each finished run of the default whose deployed mean is not the whole
tail's (its best epoch is not its last), and finishes the copy again from its own training state
on the tail's whole mean (the average the state holds after the last epoch): the same BatchNorm
re-estimate, export and test evaluation (clean and PGD-20 on the run's test split), no training
step. The original run directories are not touched.

    python benchmarks/tail_whole_mean.py [--rows benchmarks/results/study/rows ...] [--out runs/tail_whole_mean]

Needs the study's run directories (each row's ``dir``, relative to the repository root). Prints
one line per run and writes OUT/tail_whole_mean.json with the machine and settings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import reproduce
from autolora.fileio import read_json, write_json
from autolora.runtime import machine
from autolora.train import trainer as training

DEFAULT_ROWS = ("benchmarks/results/study/rows", "benchmarks/results/study_controls/rows_seeds_3_7")


def deploy_whole_mean() -> None:
    """Make a finishing trainer deploy the tail's whole mean instead of the best running mean."""
    deployed_state = training.Trainer._deployed_state

    def whole_mean(self: training.Trainer) -> Any:
        self.best_state = self.average.state(self.model)
        return deployed_state(self)

    training.Trainer._deployed_state = whole_mean  # type: ignore[method-assign]


def finish_on_whole_mean(row: dict[str, Any], out: Path) -> dict[str, Any]:
    """Finish a copy of ``row``'s run on its tail's whole mean (once; a finished copy is read back)."""
    copy = out / row["task"] / row["budget"] / f"seed{row['seed']}"
    if not (copy / "summary.json").exists():
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(row["dir"], copy)
        (copy / "summary.json").unlink()  # a finished state without a summary is finished again
        task, size = reproduce.TASKS[row["task"]], reproduce.FULL
        study_out = Path(*Path(row["dir"]).parts[:2])  # the study's --out, which holds its sources
        (default,) = reproduce.select_runs("autolora")
        config = reproduce.train_config(default, size, row["seed"], autoattack=False)
        reproduce.api.finetune(task.source(size, study_out), task.data(reproduce.BUDGETS[row["budget"]], size,
                               row["seed"]), config, copy, resume=True, reporter=reproduce.LogReporter())  # fmt: skip
    return read_json(copy / "summary.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), help="folders of the study's rows")
    parser.add_argument("--out", type=Path, default=Path("runs/tail_whole_mean"))
    args = parser.parse_args()
    deploy_whole_mean()
    results = []
    for folder in args.rows:
        for path in sorted(Path(folder).glob("*/*/seed*/autolora.json")):
            row = read_json(path)
            summary = read_json(Path(row["dir"]) / "summary.json")
            if summary["best_epoch"] == summary["epochs"]:
                continue  # the deployed mean is the whole tail's already
            whole = finish_on_whole_mean(row, args.out)
            result = {
                "task": row["task"], "budget": row["budget"], "seed": row["seed"], "row": str(path),
                "best_epoch": summary["best_epoch"], "epochs": summary["epochs"],
                "selected": {"clean_acc": row["clean_acc"], "pgd_acc": row["pgd_acc"]},
                "whole_mean": {"clean_acc": whole["clean_acc"], "pgd_acc": whole["pgd_acc"]},
            }  # fmt: skip
            results.append(result)
            print(json.dumps(result), flush=True)
    change = {k: [100 * (r["whole_mean"][k] - r["selected"][k]) for r in results] for k in ("clean_acc", "pgd_acc")}
    record = {
        "machine": machine(),
        "evaluation": "clean and PGD-20 on each run's test split (1,000 images; 360 on digits)",
        "runs": results,
        "mean_change_points": {k: statistics.mean(v) for k, v in change.items() if v},
        "sd_change_points": {k: statistics.stdev(v) for k, v in change.items() if len(v) > 1},
    }
    write_json(args.out / "tail_whole_mean.json", record)
    print(json.dumps({k: record[k] for k in ("mean_change_points", "sd_change_points")}))


if __name__ == "__main__":
    main()
