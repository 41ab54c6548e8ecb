"""What does an LR range test read at the start of AutoLoRa's fine-tuning? Its sweeps, no training.

The range test (``find_lr=True``, ``train/lr_search.py``) trains a copy of the model for a few steps
while the LR grows from 1e-3 to 1, and starts the run at the LR of the lowest smoothed loss. From a
zero head the feature extractor gets no gradient until the head has learned, so the sweep may read
how fast the head learns rather than where the features break. This script runs the study's row
"autolora (range-test start)" up to its range test and, from the same state and random stream,
sweeps three ways, then stops (no epoch is trained):

- ``zero head, 20 steps``: the test as the trainer runs it;
- ``probed head, 20 steps``: the head first fitted by the clean linear probe (``--head-init
  linear``: L-BFGS on frozen features, no optimizer step), so the features get gradient from the
  first step; the run itself would still start from a zero head at the LR chosen;
- ``probed head, 10 steps``: the same with half the steps (a 300-label run may spend only 10 more).

For every step it records the smoothed loss and how far the step moved the head, the low-rank
branch and the feature extractor (the norm of each one's change over the norm of its weights).

    python benchmarks/range_test_survey.py [--tasks ...] [--budgets 300,1000] [--seeds 0,1,2]
        [--out runs/range_survey]

Prints one line per sweep and writes OUT/range_test_survey.json with the machine and settings.
"""

from __future__ import annotations

import argparse
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import reproduce
from autolora.data import BatchLoader
from autolora.fileio import write_json
from autolora.runtime import machine
from autolora.train import trainer as training
from autolora.train.averaging import snapshot
from autolora.train.head_start import linear_probe
from autolora.train.lr_search import RangeTest, RangeTestResult, lr_range_test

VARIANTS = (
    ("zero head, 20 steps", False, 20),
    ("probed head, 20 steps", True, 20),
    ("probed head, 10 steps", True, 10),
)
RANGE_TEST_ROW = "autolora (range-test start)"


class Surveyed(Exception):
    """Raised once the sweeps are taken: the run trains no epoch."""

    def __init__(self, sweeps: dict[str, Any]) -> None:
        super().__init__("surveyed")
        self.sweeps = sweeps


def parts(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """The trained parameters by part: the head, the low-rank branch, the feature extractor."""
    grouped: dict[str, list[torch.nn.Parameter]] = {"head": [], "branch": [], "features": []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = "branch" if ".lora_" in name else "head" if name.startswith("head.") else "features"
            grouped[key].append(p)
    return grouped


def norm(tensors: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.detach().float().square().sum()) for t in tensors))


def steepest_lr(result: RangeTestResult) -> float | None:
    """The LR where the smoothed loss falls fastest per unit of log LR, before its minimum."""
    lrs, losses = result.lrs, result.losses
    end = losses.index(min(losses)) if losses else 0
    slopes = [(losses[i + 1] - losses[i]) / math.log(lrs[i + 1] / lrs[i]) for i in range(end)]
    return lrs[min(range(len(slopes)), key=slopes.__getitem__)] if slopes else None


def measuring(model: torch.nn.Module, steps: int, moves: list[dict[str, float]]) -> Callable[..., RangeTestResult]:
    """``lr_range_test`` with ``steps`` steps that records how far each step moves each part."""
    grouped = parts(model)

    def test(step: Callable[[float], float], _: RangeTest = RangeTest()) -> RangeTestResult:
        def measured(lr: float) -> float:
            before = {key: [p.detach().clone() for p in ps] for key, ps in grouped.items()}
            loss = step(lr)
            moved = {key: norm([p - b for p, b in zip(ps, before[key], strict=True)]) / max(norm(before[key]), 1e-12)
                     for key, ps in grouped.items() if ps}  # fmt: skip
            moves.append({key: float(f"{value:.4g}") for key, value in {"lr": lr, "loss": loss, **moved}.items()})
            return loss

        return lr_range_test(measured, RangeTest(steps=steps))

    return test


def survey(self: training.Trainer) -> None:
    """In place of ``Trainer._search_lr``: the three sweeps from one state, then stop."""
    zero, search, sweeps = snapshot(self.model), ORIGINAL_SEARCH, {}
    for name, probed, steps in VARIANTS:
        self.model.load_state_dict(zero)
        probe = None
        if probed:
            loader = BatchLoader(self.data.train, self.model.spec, 2 * self.config.batch_size, self.device,
                                 shuffle=False, seed=self.config.seed, shard=self.dist.shard)  # fmt: skip
            probe = linear_probe(self.model, loader, self.dist)
        moves: list[dict[str, float]] = []
        training.lr_range_test = measuring(self.model, steps, moves)
        search(self)
        result = RangeTestResult(self.lr_search["lr"], [lr for lr, _ in self.lr_search["sweep"]],
                                 [loss for _, loss in self.lr_search["sweep"]])  # fmt: skip
        sweeps[name] = {"chosen_lr": result.lr, "steepest_lr": steepest_lr(result), "sweep": self.lr_search["sweep"],
                        "moves": moves, "probe_train_acc": probe and probe.get("train_acc")}  # fmt: skip
        print(f"   {name}: chosen {result.lr:.3g}, steepest {sweeps[name]['steepest_lr']}", flush=True)
    raise Surveyed(sweeps)


ORIGINAL_SEARCH = training.Trainer._search_lr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(reproduce.TASKS))
    parser.add_argument("--budgets", default="300,1000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("runs/range_survey"))
    args = parser.parse_args()
    reproduce.study_sources_in(args.out)
    training.Trainer._search_lr = survey
    (run,) = reproduce.select_runs(RANGE_TEST_ROW)
    found = []
    for task, budget, seed in reproduce.cells(args):
        shutil.rmtree(args.out / task / budget / f"seed{seed}", ignore_errors=True)  # a survey starts afresh
        try:
            reproduce.run_one(reproduce.TASKS[task], budget, seed, run, reproduce.FULL, args.out, False)
        except Surveyed as done:
            found.append({"task": task, "budget": budget, "seed": seed, "sweeps": done.sweeps})
        write_json(args.out / "range_test_survey.json", {"machine": machine(), "variants": VARIANTS, "surveys": found})


if __name__ == "__main__":
    main()
