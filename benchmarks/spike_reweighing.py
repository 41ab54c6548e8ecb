"""Does the spike rule read AutoLoRa's first re-weighing of its loss as a spike? Epoch 2, replayed.

AutoLoRa's loss scalars for epoch 1 come from the starting model (a zero head reads chance, so
λ2 = 6/K) and for epoch 2 from the first trained natural path (λ2 2.5-5.0 on the study's tasks);
every step's gradient norm moves with the loss's total weight, 1 + λ2. This replays the spike rule
(``train/spikes.py``'s ``GradientSpikes``, as the trainer feeds it) over the recorded norms of a
run's first two epochs twice: as the rule read them before 2026-12-07 (epoch 1's steps as taken)
and as the default reads them now (epoch 1's steps rescaled by the ratio of the loss's total
weights, ``GradientSpikes.rescale``). It prints epoch 2's largest ratio both ways and, where the
trace records it, whether the epoch did harm (ended no better on the validation loss than it
began; the rule acts only on a flagged epoch that did harm), and so whether the decision changes.
Only epoch 2's steps are judged differently: from epoch 3 on, the window holds steps of the new
weights only.

It reads ``benchmarks/results/gradient_spikes``: the whole-run traces of ``gradient_spikes.py``
(``norms/``, with their rows for λ and the data's size; epoch 2's harm is not recorded there) and
step logs with their runs' first rows (``NAME.jsonl``: each step's norm and batch size;
``NAME.metrics.json``: the run's ``metrics.jsonl`` rows), such as ``--trace`` writes: the study's
default run of each task, budget and seed, its norms recorded, stopped after epoch 2.

    python benchmarks/spike_reweighing.py [--trace --tasks T --budgets B --seeds S] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch

import reproduce
from autolora.fileio import read_json, write_json
from autolora.runtime import machine
from autolora.train import spikes as spike_rule
from autolora.train import trainer as training
from autolora.train.methods.autolora import KL_SCALE, AutoLoRa
from gradient_spikes import pass_batches

RESULTS = Path(__file__).parent / "results" / "gradient_spikes"
TRACED_EPOCHS = 2


@dataclass
class FirstEpochs:
    """A run's first two epochs as the spike rule saw them."""

    name: str
    norms: list[float]
    batches: list[int]
    epoch_ends: tuple[int, int]  # optimizer steps at the end of epochs 1 and 2
    loss_weights: tuple[float, float]  # 1 + λ2 in epochs 1 and 2
    harmful: bool | None  # epoch 2 ended no better on the validation loss than it began (None: not recorded)


def epoch_2_ratio(run: FirstEpochs, reweighed: bool) -> float | None:
    """Epoch 2's largest ratio as the rule reads it, with epoch 1's steps rescaled or as taken."""
    spikes = spike_rule.GradientSpikes()
    first, second = run.epoch_ends
    for norm, batch in zip(run.norms[:first], run.batches[:first], strict=True):
        spikes.record(torch.tensor(norm), batch)
    spikes.end_epoch()
    if reweighed:
        spikes.rescale(run.loss_weights[1] / run.loss_weights[0])
    for norm, batch in zip(run.norms[first:second], run.batches[first:second], strict=True):
        spikes.record(torch.tensor(norm), batch)
    return spikes.end_epoch()


def from_whole_run(row_path: Path, norms_path: Path) -> FirstEpochs:
    """A ``gradient_spikes.py`` trace: its row gives the data's size, the period and λ's accuracies."""
    row = read_json(row_path)
    one_pass = pass_batches(row["data"]["train"])
    epoch = math.ceil(row["period_steps"] / len(one_pass)) * len(one_pass)
    norms = [step["norm"] for step in read_json(norms_path)][: TRACED_EPOCHS * epoch]
    batches = list(itertools.islice(itertools.cycle(one_pass), len(norms)))
    accuracy = row["nat_branch_acc_first_epochs"]
    weights = (1 + KL_SCALE * accuracy[0], 1 + KL_SCALE * accuracy[1])
    name = f"{row['task']} {row['budget']} seed {row['seed']}"
    return FirstEpochs(name, norms, batches, (epoch, 2 * epoch), weights, None)


def from_step_log(log: Path) -> FirstEpochs:
    """A step log (``NAME.jsonl``) with its run's first rows (``NAME.metrics.json``)."""
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    first, second = read_json(log.with_suffix(".metrics.json"))[:TRACED_EPOCHS]
    harmful = second["val_robust_loss"] >= first["val_robust_loss"]
    weights = (1 + first["lambda2"], 1 + second["lambda2"])
    ends = (first["steps"], second["steps"])
    norms, batches = [s["norm"] for s in steps][: ends[1]], [s["batch"] for s in steps][: ends[1]]
    return FirstEpochs(log.stem, norms, batches, ends, weights, harmful)


def traced_runs(results: Path) -> Iterator[FirstEpochs]:
    """Every trace under ``results``: whole runs (``norms/``) and step logs (one folder down)."""
    for norms_path in sorted((results / "norms").glob("*_gradient_norms_traced.json")):
        task, budget, seed, run = norms_path.name.split("_", 3)
        yield from_whole_run(results / "rows" / task / budget / seed / run, norms_path)
    for log in sorted(results.glob("*/*.jsonl")):
        if log.with_suffix(".metrics.json").exists():
            yield from_step_log(log)


def compared(run: FirstEpochs, bound: float) -> dict[str, Any]:
    before, now = epoch_2_ratio(run, reweighed=False), epoch_2_ratio(run, reweighed=True)
    flagged = [ratio is not None and ratio > bound for ratio in (before, now)]
    changes = flagged[0] != flagged[1] and run.harmful  # None: a flag moved, harm not recorded
    return {"run": run.name, "weight_ratio": run.loss_weights[1] / run.loss_weights[0], "before": before,
            "now": now, "harmful": run.harmful, "decision_changes": changes}  # fmt: skip


class Stopped(Exception):
    """Raised after the traced epochs: the run goes no further."""


@contextmanager
def first_epochs_traced(steps: list[dict[str, float]], rows: list[dict[str, Any]]) -> Iterator[None]:
    """Runs started inside record every step's norm and batch in ``steps`` and stop after epoch 2,
    their rows in ``rows``."""
    record, run_epoch = spike_rule.GradientSpikes.record, training.Trainer._run_epoch

    def recorded(self: spike_rule.GradientSpikes, norm: torch.Tensor, batch_size: int) -> None:
        steps.append({"norm": float(norm), "batch": batch_size})
        record(self, norm, batch_size)

    def stopping(self: training.Trainer, epoch: int) -> None:
        run_epoch(self, epoch)
        if epoch >= TRACED_EPOCHS:
            rows.extend(self.metrics)
            raise Stopped

    with mock.patch.object(spike_rule.GradientSpikes, "record", recorded), \
            mock.patch.object(training.Trainer, "_run_epoch", stopping):  # fmt: skip
        yield


def trace(task: str, budget: str, seed: int, out: Path) -> Path:
    """The study's default run, its first two epochs' norms written to OUT/epoch_2/NAME.jsonl."""
    steps: list[dict[str, float]] = []
    rows: list[dict[str, Any]] = []
    with first_epochs_traced(steps, rows), suppress(Stopped):
        reproduce.run_afresh(task, budget, seed, "autolora", out)
    log = out / "epoch_2" / f"{task}_{budget}_seed{seed}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(json.dumps(step) + "\n" for step in steps))
    write_json(log.with_suffix(".metrics.json"), rows)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", action="store_true", help="trace the runs named below first")
    parser.add_argument("--tasks", default="fmnist-inverted,fmnist-split")
    parser.add_argument("--budgets", default="1000")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--out", type=Path, default=Path("runs/spike_reweighing"))
    args = parser.parse_args()
    traced = [RESULTS]
    if args.trace:
        reproduce.study_sources_in(args.out)
        for task, budget, seed in itertools.product(args.tasks.split(","), args.budgets.split(","),
                                                    (int(s) for s in args.seeds.split(","))):  # fmt: skip
            print(f"traced: {trace(task, budget, seed, args.out)}", flush=True)
        traced.append(args.out)
    bound = AutoLoRa.defaults.spike_ratio
    found = [compared(run, bound) for results in traced for run in traced_runs(results)]
    for row in found:
        print(f"{row['run']:45s} weights x{row['weight_ratio']:.2f}  epoch 2's largest ratio "
              f"{row['before'] or 0:6.2f} before, {row['now'] or 0:6.2f} now  harm {row['harmful']}  "
              f"decision changes {row['decision_changes']}")  # fmt: skip
    write_json(args.out / "spike_reweighing.json", {"machine": machine(), "bound": bound, "runs": found})


if __name__ == "__main__":
    main()
