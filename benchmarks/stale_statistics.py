"""How far do BatchNorm running statistics lag the weights while AutoLoRa trains? Measured per epoch.

Everything a run reads in eval mode during training (the training attack, the validation behind
the LR rule and the model selection, the natural accuracy behind λ1 and λ2) normalises with
running averages (momentum 0.1: about the last ten steps' batches, of weights that have moved
since). After every epoch's validation this script reads the validation split three ways, the
weights fixed: with the running statistics (what the run used), with each batch's own statistics
(``read_statistics="batch"``), and with statistics re-estimated over adversarial examples of the
training images at the current weights (what the deployed model gets after the last epoch,
``train/batchnorm.py``). Training itself is not changed: the extra reads take their random starts
from a stream of their own.

    python benchmarks/stale_statistics.py [--task fmnist-split] [--budget 1000] [--seed 0]
        [--run autolora] [--out runs/stale]

Prints one line per epoch and writes OUT/stale_statistics.json with the machine and settings. The
sources the study trains itself are taken from benchmarks/results/study/sources.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import reproduce
from autolora.attacks.pgd import evaluating
from autolora.fileio import write_json
from autolora.runtime import machine
from autolora.train import trainer as training
from autolora.train.batchnorm import recompute_batchnorm

READS_KEYS = training.BATCHNORM_KEYS + training.NOISE_STREAM // 8  # random starts apart from the run's own


def clean_accuracy(trainer: training.Trainer, model: torch.nn.Module, batch_statistics: bool) -> float:
    correct = total = 0
    with evaluating(model, batch_statistics), torch.no_grad():
        for x, y, _ in trainer.val_loader.parts():
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / max(total, 1)


def reestimated(trainer: training.Trainer) -> torch.nn.Module:
    """A copy of the model with its statistics re-estimated at the current weights (all training images)."""
    held = copy.deepcopy(trainer.model)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        for x, y, info in trainer._training_loader(trainer.data.train, shuffle=False).parts():
            trainer.noise.begin(READS_KEYS + info.index, info.global_size, info.part)
            yield x, y

    recompute_batchnorm(held, batches(), trainer.method.objective.attack)
    return held


def instrument(epochs: list[dict[str, Any]]) -> None:
    validate = training.Trainer._validate

    def measured(self: training.Trainer, epoch: int) -> tuple[float, float, float]:
        clean, robust, loss = validate(self, epoch)
        with self.average.applied(self.model):
            row = {"epoch": epoch, "lr": self.schedule.lr, "running": clean,
                   "batch": clean_accuracy(self, self.model, True),
                   "reestimated": clean_accuracy(self, reestimated(self), False)}  # fmt: skip
        epochs.append(row)
        print(json.dumps(row), flush=True)
        return clean, robust, loss

    training.Trainer._validate = measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="fmnist-split", choices=sorted(reproduce.TASKS))
    parser.add_argument("--budget", default="1000", choices=sorted(reproduce.BUDGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", default="autolora", help="a row name of benchmarks/reproduce.py")
    parser.add_argument("--out", type=Path, default=Path("runs/stale"))
    args = parser.parse_args()
    reproduce.study_sources_in(args.out)
    epochs: list[dict[str, Any]] = []
    instrument(epochs)
    (run,) = reproduce.select_runs(args.run)
    row = reproduce.run_one(reproduce.TASKS[args.task], args.budget, args.seed, run, reproduce.FULL, args.out, False)
    gaps = [e["reestimated"] - e["running"] for e in epochs]
    result = {"task": args.task, "budget": args.budget, "seed": args.seed, "run": run.name, "machine": machine(),
              "epochs": epochs, "test": {k: row.get(k) for k in reproduce.METRICS},
              "largest_gap": max(gaps, default=None), "mean_gap": sum(gaps) / len(gaps) if gaps else None}  # fmt: skip
    write_json(args.out / "stale_statistics.json", result)
    print(f"validation clean accuracy, re-estimated minus running statistics: mean {result['mean_gap']:+.3f}, "
          f"largest {result['largest_gap']:+.3f} over {len(epochs)} epochs ({args.task}, {args.budget} labels, "
          f"seed {args.seed}, {run.name}); {args.out / 'stale_statistics.json'}")  # fmt: skip


if __name__ == "__main__":
    main()
