"""Do gradient spikes set AutoLoRa back? Every optimizer step's gradient norm, and spikes clipped.

On the ViT task at 300 labels (seed 0) one step's global gradient norm, 7.2, was ten times the
median of the eight steps before it, and the validation robust loss rose for the two epochs after it
and never came back: SGD's momentum of 0.9 carries one step's gradient into about ten steps. ViTs are
usually fine-tuned with their gradients clipped. A fixed bound does not carry across backbones (the
ResNet-8 runs' norms run from 0.3 to 8.5, the ViT's mostly from 0.1 to 1.5), so this clips a step
against the run's own recent steps instead, in the manner of AutoClip (Seetharaman et al. 2020),
which clips at a percentile of the norms seen so far: with ``--clip K`` a step whose global gradient
norm exceeds K times the median of the previous ``--window`` steps' (one period, 8, by default) is
scaled down to that bound. Both rows run the study's default recipe and nothing else; every step's
norm, before clipping, is kept (``gradient_norms.json`` in the run's directory).

    python benchmarks/gradient_spikes.py [--clip 5] [--tasks fmnist-split-vit] [--budgets 300]
        [--seeds 0,1,2] [--out runs/gradient_spikes]

Rows land in OUT/rows as the study's do (``reproduce.py --report-only --out OUT`` tabulates them);
OUT/gradient_spikes.json has every row with its norms in brief (the median, the largest, the
largest ratio to the window's median and its step, the steps clipped) and each invocation's machine
and settings.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

import reproduce
from autolora.train import trainer as training
from autolora.train.config import TrainConfig
from autolora.train.spikes import global_norm, ratios_to_recent_median, scaled_for_batch

NORMS = "gradient_norms.json"
BATCH = 128  # the study's batch size (TrainConfig's default)
RESULT = "gradient_spikes.json"


def spike_bound(norms: list[float], clip: float | None, window: int) -> float | None:
    """``clip`` times the median of the last ``window`` norms; None while fewer than half a window
    has been seen (or without ``clip``), so the first steps are never clipped."""
    recent = norms[-window:]
    if clip is None or len(recent) < max(1, window // 2):
        return None
    return clip * statistics.median(recent)


@contextlib.contextmanager
def gradients_traced(trace: list[dict[str, float]], clip: float | None = None, window: int = 8) -> Iterator[None]:
    """Runs started inside train with the trainer's own optimizer, each step's gradient norm appended
    to ``trace`` before the step; with ``clip``, a spike's gradient is scaled down to its bound."""
    trainers_own = training.build_optimizer

    def traced(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
        optimizer = trainers_own(parameters, config)

        def before_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            with_grad = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            norm = float(global_norm([p.grad for p in with_grad]))
            bound = spike_bound([step["norm"] for step in trace], clip, window)
            clipped = bound is not None and norm > bound
            if clipped:
                for parameter in with_grad:
                    parameter.grad.mul_(bound / norm)
            trace.append({"norm": norm, "clipped": clipped})

        optimizer.register_step_pre_hook(before_step)
        return optimizer

    with mock.patch.object(training, "build_optimizer", traced):
        yield


def run_of(clip: float | None, window: int) -> reproduce.Run:
    """The study's default recipe as it was before the spike halving (which these runs led to) and the
    attack's running reads, its gradients traced, and clipped at ``clip`` times the median of the last
    ``window`` steps' norms."""
    before = reproduce.BEFORE_DECEMBER_6
    if clip is None:
        return reproduce.Run("autolora (gradient norms traced)", "autolora", settings=before)
    name = f"autolora (gradient spikes clipped at {clip:g}x the median of {window} steps)"
    return reproduce.Run(name, "autolora", settings=before)


def summarise(trace: list[dict[str, Any]], window: int, train_images: int) -> dict[str, Any]:
    """A run's gradient norms in brief: the median, the largest, the largest ratio of a step's norm to
    the median of the (up to) ``window`` before it (and that step), the ratio the default's spike
    halving reads (``train/spikes.py``: each norm scaled for its batch's size, a full window before
    it; the steps' batches are the loader's passes over ``train_images``), and how many steps were
    clipped."""
    norms = [step["norm"] for step in trace]
    ratio, at = largest_ratio(norms, window)
    one_pass = pass_batches(train_images)
    sizes = itertools.islice(itertools.cycle(one_pass), len(norms))
    scaled = [scaled_for_batch(norm, size, max(one_pass)) for norm, size in zip(norms, sizes, strict=True)]
    scaled_ratios = [(r, t + 1) for t, r in enumerate(ratios_to_recent_median(scaled, window)) if r is not None]
    scaled_ratio, scaled_at = max(scaled_ratios, default=(1.0, 1))
    return {
        "median": statistics.median(norms),
        "largest": max(norms),
        "largest_ratio": ratio,
        "largest_ratio_step": at,
        "largest_scaled_ratio": scaled_ratio,
        "largest_scaled_ratio_step": scaled_at,
        "clipped": sum(step["clipped"] for step in trace),
        "steps": len(norms),
    }


def pass_batches(train_images: int) -> list[int]:
    """The batch sizes of one pass over ``train_images`` (the study's loader: a last batch of one is dropped)."""
    return [BATCH] * (train_images // BATCH) + [train_images % BATCH] * (train_images % BATCH >= 2)


def largest_ratio(norms: list[float], window: int) -> tuple[float, int]:
    """The largest ratio of a norm to the median of the ``window`` before it (of at least one), and its
    step (counted from 1)."""
    ratios = [(norms[t] / statistics.median(norms[max(0, t - window) : t]), t + 1) for t in range(1, len(norms))]
    return max(ratios, default=(1.0, 1))


def measure(clip: float | None, window: int, task: str, budget: str, seed: int, out: Path) -> dict[str, Any]:
    """One run of the default recipe with its gradients traced (its row, if finished before)."""
    trace: list[dict[str, Any]] = []
    traced = gradients_traced(trace, clip, window)
    row, norms = reproduce.traced_row(task, budget, seed, run_of(clip, window), out, traced, trace, NORMS)
    return {"clip": clip, "window": window, **row, "norms": summarise(norms, window, row["data"]["train"])}


def described(row: dict[str, Any]) -> str:
    """A row's line of the printout."""
    norms = row["norms"]
    return (
        f"clean {100 * row['clean_acc']:.1f}  PGD-20 {100 * row['pgd_acc']:.1f}  gradient norm median "
        f"{norms['median']:.3g}, largest {norms['largest']:.3g}, largest ratio to the window's median "
        f"{norms['largest_ratio']:.1f} (step {norms['largest_ratio_step']}; scaled for the batch's size "
        f"{norms['largest_scaled_ratio']:.1f}, step {norms['largest_scaled_ratio_step']}), clipped {norms['clipped']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=float, default=None, help="clip a step above K times the window's median")
    parser.add_argument("--window", type=int, default=8, help="the steps whose median norm bounds the next")
    parser.add_argument("--tasks", default="fmnist-split-vit")
    parser.add_argument("--budgets", default="300")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("runs/gradient_spikes"))
    args = parser.parse_args()
    if args.clip is not None and args.clip <= 1.0 or args.window < 1:
        parser.error("give --clip above 1 (a multiple of the recent median) and a positive --window")
    rows = []
    for task, budget, seed in reproduce.cells(args):
        row = measure(args.clip, args.window, task, budget, seed, args.out)
        print(f"{task} {budget} seed {seed} {row['run']}: {described(row)}", flush=True)
        rows.append(row)
    reproduce.write_merged(args.out / RESULT, rows, args, ("run", "task", "budget", "seed"))


if __name__ == "__main__":
    main()
