"""Does AutoLoRa reproduce at small scale? The paper's three claims, measured on real offline data.

Tasks (eps 0.1, L-inf, a CIFAR-style ResNet-8):
  digits        source: the shipped model, PGD-AT on all of Fashion-MNIST; target: scikit-learn digits
  fmnist-split  source: PGD-AT on Fashion-MNIST classes 0-4 (trained here); target: classes 5-9, few labels
For every task and seed: vanilla RFT (TRADES, beta 6) at LR 0.001 / 0.01 / 0.1, AutoLoRa fully
automatic, and the no-pre-training baseline (a random initialisation fine-tuned with vanilla at LR 0.1).
Then the gradient-conflict diagnostic on each source model and over training.

    python benchmarks/reproduce.py [--quick] [--out runs/reproduce] [--seeds 0,1]

Writes OUT/results.json, OUT/study.md (tables, commands) and figures; --quick is a smoke run for CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autolora import api
from autolora.data import DataConfig, prepare_data
from autolora.demo import EPS, default_checkpoint, finetune_config
from autolora.diagnose import DiagnoseConfig, diagnose, diagnose_snapshots, plot_over_training, plot_per_layer
from autolora.eval import EvalConfig
from autolora.fileio import read_json, write_json, write_text
from autolora.models import create_model, load_classifier, save_run_model
from autolora.report.plots import plt, save_figure
from autolora.runtime import machine
from autolora.train import AttackConfig, TrainConfig
from autolora.train.progress import LogReporter

VANILLA_LRS = (0.001, 0.01, 0.1)


@dataclass(frozen=True)
class Size:
    limit_train_split: int | None
    pretrain_limit: int | None
    pretrain_epochs: int
    autolora_max_epochs: int
    vanilla_epochs: int
    attack_steps: int
    limit_test: int | None
    autoattack_version: str
    autoattack_n: int
    diagnose_batches: int
    save_every: int


FULL = Size(1500, None, 4, 40, 20, 10, 1000, "standard", 100, 4, 5)
QUICK = Size(120, 600, 1, 2, 2, 1, 40, "fast", 16, 1, 1)


@dataclass(frozen=True)
class Task:
    name: str
    data: DataConfig
    description: str


def tasks(size: Size, seed: int) -> list[Task]:
    digits = DataConfig("digits", limit_train=size.limit_train_split if size is QUICK else None,
                        limit_test=size.limit_test, seed=seed)  # fmt: skip
    split = DataConfig("fashion-mnist", classes="5-9", limit_train=size.limit_train_split,
                       limit_test=size.limit_test, seed=seed)  # fmt: skip
    return [
        Task("digits", digits, "Fashion-MNIST (all classes) -> digits"),
        Task("fmnist-split", split, f"Fashion-MNIST 0-4 -> 5-9 ({size.limit_train_split} training images)"),
    ]


def source_for(task: Task, size: Size, out: Path) -> Path:
    """The pre-trained source model of a task (trained here for the class split)."""
    if task.name == "digits":
        return default_checkpoint()
    path = out / "sources" / "fmnist-0-4"
    if not (path / "summary.json").exists():
        data = DataConfig("fashion-mnist", classes="0-4", limit_train=size.pretrain_limit, limit_test=500)
        config = TrainConfig(method="pgd-at", epochs=size.pretrain_epochs, lr=0.1, weight_decay=5e-4,
                             attack=AttackConfig(eps=EPS, steps=7 if size is FULL else 1), schedule="cosine",
                             evaluation=EvalConfig(eps=EPS))  # fmt: skip
        api.pretrain("resnet8", data, config, path, resume=True, reporter=LogReporter(),
                     command="benchmarks/reproduce.py (source for fmnist-split)")  # fmt: skip
    return path


def random_source(like: Path, out: Path, seed: int) -> Path:
    """A randomly initialised model with the source's architecture and input spec."""
    path = out / "sources" / f"random-seed{seed}"
    if not (path / "model.safetensors").exists():
        _, record, _ = load_classifier(like)
        torch.manual_seed(seed)
        save_run_model(path, create_model(record.architecture, record.num_classes, record.input), record.architecture)
    return path


def train_config(method: str, lr: float, size: Size, seed: int, save_every: int | None) -> TrainConfig:
    return finetune_config(
        method, lr, epochs=size.autolora_max_epochs if method == "autolora" else size.vanilla_epochs,
        attack_steps=size.attack_steps, autoattack_version=size.autoattack_version,
        autoattack_n=size.autoattack_n, seed=seed, save_every=save_every,
    )  # fmt: skip


def runs_of(task: Task, size: Size, seed: int, out: Path) -> list[tuple[str, Path, TrainConfig]]:
    """(name, source checkpoint, config) of every run of one task and seed."""
    source = source_for(task, size, out)
    save = size.save_every if seed == 0 else None
    runs = [(f"vanilla lr={lr:g}", source, train_config("vanilla", lr, size, seed, save if lr == 0.01 else None))
            for lr in VANILLA_LRS]  # fmt: skip
    runs.append(("autolora", source, train_config("autolora", 0.1, size, seed, save)))
    runs.append(("no pre-training (vanilla lr=0.1)", random_source(source, out, seed),
                 train_config("vanilla", 0.1, size, seed, None)))  # fmt: skip
    return runs


def slug(name: str) -> str:
    return name.replace(" ", "_").replace("=", "").replace("(", "").replace(")", "").replace("-", "")


def run_study(size: Size, seeds: list[int], out: Path) -> list[dict[str, Any]]:
    rows = []
    for seed in seeds:
        for task in tasks(size, seed):
            for name, source, config in runs_of(task, size, seed, out):
                directory = out / task.name / f"seed{seed}" / slug(name)
                print(f"== {task.name} seed {seed}: {name}", flush=True)
                started = time.perf_counter()
                command = f"benchmarks/reproduce.py ({task.name}, {name}, seed {seed})"
                summary = api.finetune(source, task.data, config, directory, resume=True, reporter=LogReporter(),
                                       command=command)  # fmt: skip
                rows.append({"task": task.name, "run": name, "seed": seed, "dir": str(directory),
                             "wall_s": time.perf_counter() - started, **{k: summary.get(k) for k in (
                                 "clean_acc", "pgd_acc", "autoattack_acc", "epochs", "stop_reason", "final_lr",
                                 "time_train_s", "time_scalars_s", "time_validation_s", "time_test_s")}})  # fmt: skip
    return rows


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread (half the range over seeds) per task and run."""
    table = []
    for task in dict.fromkeys(r["task"] for r in rows):
        for name in dict.fromkeys(r["run"] for r in rows if r["task"] == task):
            group = [r for r in rows if r["task"] == task and r["run"] == name]
            entry: dict[str, Any] = {"task": task, "run": name, "seeds": len(group)}
            for key in ("clean_acc", "pgd_acc", "autoattack_acc", "epochs", "wall_s"):
                values = [r[key] for r in group if r[key] is not None]
                entry[key] = statistics.mean(values) if values else None
                entry[f"{key}_spread"] = (max(values) - min(values)) / 2 if values else None
            table.append(entry)
    return table


def _cell(entry: dict[str, Any], key: str, scale: float = 100.0, digits: int = 1) -> str:
    if entry[key] is None:
        return "-"
    return f"{scale * entry[key]:.{digits}f} ± {scale * entry[f'{key}_spread']:.{digits}f}"


def markdown(table: list[dict[str, Any]], size: Size) -> str:
    lines = []
    for task in dict.fromkeys(e["task"] for e in table):
        lines += [f"### {task}", "", "| run | clean % | PGD-20 % | AutoAttack % | epochs | wall time (s) |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for e in (e for e in table if e["task"] == task):
            cells = [_cell(e, "clean_acc"), _cell(e, "pgd_acc"), _cell(e, "autoattack_acc"),
                     _cell(e, "epochs", 1, 1), _cell(e, "wall_s", 1, 0)]  # fmt: skip
            lines.append(f"| {e['run']} | " + " | ".join(cells) + " |")
        lines.append("")
    aa = f"AutoAttack {size.autoattack_version} on a fixed subset of {size.autoattack_n} test images"
    lines.append(f"Mean ± half the range over seeds. Clean and PGD-20 on {size.limit_test or 'all'} test images; {aa}.")
    return "\n".join(lines) + "\n"


def sensitivity_figure(table: list[dict[str, Any]], path: Path) -> Path:
    """Robust accuracy against vanilla's learning rate, with AutoLoRa (no LR to choose) as a line."""
    names = list(dict.fromkeys(e["task"] for e in table))
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.6), squeeze=False)
    for ax, task in zip(axes[0], names, strict=True):
        for key, label, style in (("pgd_acc", "PGD-20", "o-"), ("autoattack_acc", "AutoAttack", "s--")):
            vanilla = [e for e in table if e["task"] == task and e["run"].startswith("vanilla lr=")]
            lrs = [float(e["run"].split("=")[1]) for e in vanilla]
            values = [100 * e[key] for e in vanilla]
            spreads = [100 * e[f"{key}_spread"] for e in vanilla]
            line = ax.errorbar(lrs, values, yerr=spreads, fmt=style, capsize=3, label=f"vanilla {label}")
            auto = next(e for e in table if e["task"] == task and e["run"] == "autolora")
            ax.axhline(100 * auto[key], color=line[0].get_color(), ls=":", label=f"AutoLoRa {label}")
        ax.set_xscale("log")
        ax.set_xlabel("vanilla RFT learning rate")
        ax.set_ylabel("test robust accuracy (%)")
        ax.set_title(task, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def run_diagnostics(size: Size, out: Path) -> dict[str, Any]:
    """The gradient conflict on each source model (seed 0), and over the snapshots of seed 0's runs."""
    results: dict[str, Any] = {}
    config = DiagnoseConfig(eps=EPS, batches=size.diagnose_batches, attack_steps=size.attack_steps)
    cpu = torch.device("cpu")
    for task in tasks(size, 0):
        source = source_for(task, size, out)
        model, _, _ = load_classifier(source)
        images = prepare_data(task.data, validation=False, image_size=model.spec.size).train
        result = diagnose(model, images, config, cpu, fit_head=True)  # its head classifies another task
        plot_per_layer(result, out / f"diagnose_{task.name}.png", f"{task.description}: source model")
        over = {}
        for name in ("vanilla lr=0.01", "autolora"):
            method, snapshots = diagnose_snapshots(out / task.name / "seed0" / slug(name), images, config, cpu)
            points = [(epoch, result[method]["overall_cosine"]) for epoch, result in snapshots]
            plot_over_training([p[0] for p in points], [p[1] for p in points], name,
                               out / f"diagnose_{task.name}_{slug(name)}_over_training.png")  # fmt: skip
            over[name] = points
        results[task.name] = {m: result[m]["overall_cosine"] for m in ("vanilla", "autolora")} | {
            "per_layer": {m: result[m]["per_layer"] for m in ("vanilla", "autolora")},
            "over_training": over,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (CI): tiny data, 1-2 epochs")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--skip-diagnose", action="store_true")
    parser.add_argument("--only-diagnose", action="store_true", help="redo the diagnostics of a finished study")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    size = QUICK if args.quick else FULL
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    if args.only_diagnose:
        record = read_json(args.out / "results.json")
        record["diagnostics"] = run_diagnostics(size, args.out)
        write_json(args.out / "results.json", record)
        print(json.dumps({t: {m: v[m] for m in ("vanilla", "autolora")} for t, v in record["diagnostics"].items()}))
        return
    rows = run_study(size, seeds, args.out)
    table = aggregate(rows)
    diagnostics = {} if args.skip_diagnose else run_diagnostics(size, args.out)
    sensitivity_figure(table, args.out / "sensitivity.png")
    record = {"size": size.__dict__, "seeds": seeds, "machine": machine(), "rows": rows, "table": table,
              "diagnostics": diagnostics, "wall_s": time.perf_counter() - started,
              "time": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    write_json(args.out / "results.json", record)
    write_text(args.out / "study.md", markdown(table, size))
    print(markdown(table, size))
    print(f"study took {record['wall_s'] / 60:.1f} min; wrote {args.out}/results.json, study.md, sensitivity.png")


if __name__ == "__main__":
    main()
