"""Is the stem's gradient out of line with the rest of the feature extractor's? Kumar et al.'s test.

Kumar, Shen, Bubeck and Gunasekar ("How to fine-tune vision models with SGD", ICLR 2024) found SGD
fine-tuning of ViTs and ConvNeXts behind AdamW where the first ("embedding") layer's gradients are
much larger than the other layers', and SGD with that layer frozen level with AdamW. This traces the
study's default recipe, its stem trained as the paper's is, and, before every optimizer step, the
gradient norm of each weight of the feature extractor (the low-rank branches and the head left out,
as they are not the source's): the stem's (``lora.find_stem``: a ViT's patch embedding, a ResNet's
first convolution) against the median of the other layers' and against the largest of them, as is
and relative to each weight's own norm (the step SGD takes is the LR times the gradient, so the
relative norm is how far a step moves a layer).

    python benchmarks/stem_gradients.py [--tasks fmnist-split-vit,digits-to-fashion]
        [--budgets 300] [--seeds 0] [--out runs/stem_gradients]

Every step's norms are kept in the run's directory (``stem_gradients.json``); OUT/stem_gradients.json
has each run in brief (the medians over its steps) with the machine and settings.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

import reproduce
from autolora.lora import find_head, find_stem
from autolora.train import trainer as training

TRACE = "stem_gradients.json"
RESULT = "stem_gradients.json"
# the default recipe with its stem trained: since late on 2026-12-07 the default keeps a stem that embeds patches as the
# source has it, and a frozen stem has no gradient to read (on a ResNet the same run as the default's)
RUN = reproduce.Run("autolora (stem gradients traced)", "autolora", settings={"stem": "trained"})


def source_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The feature extractor's weights (convolutions and linear layers; no bias, norm, branch or head)."""
    head = find_head(model)
    return {
        name: p
        for name, p in model.named_parameters()
        if p.dim() > 1 and "lora_" not in name and not name.startswith(head + ".")
    }


def step_record(weights: dict[str, nn.Parameter], stem: str) -> dict[str, float] | None:
    """One step's stem gradient norm against the other layers' median, as is and relative to the weights."""
    with_grad = {name: p for name, p in weights.items() if p.grad is not None}
    norms = {name: (float(p.grad.norm()), float(p.detach().norm())) for name, p in with_grad.items()}
    stem_weight = f"{stem}.weight"
    if stem_weight not in norms or len(norms) < 2:
        return None
    others = [norms[name] for name in norms if name != stem_weight]
    grad, weight = norms[stem_weight]
    return {
        "stem": grad,
        "others_median": statistics.median(g for g, _ in others),
        "others_largest": max(g for g, _ in others),
        "stem_relative": grad / weight,
        "others_relative_median": statistics.median(g / w for g, w in others),
        "others_relative_largest": max(g / w for g, w in others),
    }


@contextlib.contextmanager
def stem_traced(trace: list[dict[str, float]]) -> Iterator[None]:
    """Runs started inside record, before each optimizer step, the stem's and the other layers' gradient norms."""
    prepare, build = training.Trainer._prepare_model, training.build_optimizer

    def prepared_and_traced(trainer: training.Trainer) -> None:
        prepare(trainer)
        model, stem = trainer.model, find_stem(trainer.model)
        weights = source_weights(model)

        def traced(parameters: list[nn.Parameter], config: Any) -> torch.optim.Optimizer:
            optimizer = build(parameters, config)

            def before_step(*_: Any) -> None:
                record = step_record(weights, stem)
                if record is not None:
                    trace.append(record)

            optimizer.register_step_pre_hook(before_step)
            return optimizer

        training.build_optimizer = traced  # the trainer builds its optimizer right after this

    with mock.patch.object(training.Trainer, "_prepare_model", prepared_and_traced), \
            mock.patch.object(training, "build_optimizer", build):  # fmt: skip
        yield


def summarise(trace: list[dict[str, float]]) -> dict[str, Any]:
    """Medians over the run's steps (the steps before the features see any gradient are left out)."""
    live = [step for step in trace if step["others_median"] > 0]
    return {
        "steps": len(trace),
        "steps_with_feature_gradients": len(live),
        "stem_over_others_median": median_of(live, "stem", "others_median"),
        "stem_over_others_largest": max((step["stem"] / step["others_median"] for step in live), default=None),
        "relative_stem_over_others_median": median_of(live, "stem_relative", "others_relative_median"),
        # against the largest other layer: a median can sit among layers a residual scale keeps small (ConvNeXt's)
        "stem_over_largest_other_median": median_of(live, "stem", "others_largest"),
        "relative_stem_over_largest_other_median": median_of(live, "stem_relative", "others_relative_largest"),
    }


def median_of(steps: list[dict[str, float]], numerator: str, denominator: str) -> float | None:
    """The median over ``steps`` of one recorded norm over another (None where no step recorded both)."""
    ratios = [step[numerator] / step[denominator] for step in steps if denominator in step]
    return statistics.median(ratios) if ratios else None


def measure(task: str, budget: str, seed: int, out: Path) -> dict[str, Any]:
    trace: list[dict[str, float]] = []
    row, steps = reproduce.traced_row(task, budget, seed, RUN, out, stem_traced(trace), trace, TRACE)
    return {**row, "stem_gradients": summarise(steps)}


def described(brief: dict[str, Any]) -> str:
    return (
        f"the stem's gradient norm is {brief['stem_over_others_median']:.3g} times the other layers' median"
        f" (largest {brief['stem_over_others_largest']:.3g}); relative to the weights' norms"
        f" {brief['relative_stem_over_others_median']:.3g} times; against the largest other layer's"
        f" {brief['stem_over_largest_other_median']:.3g} times"
        f" (relative {brief['relative_stem_over_largest_other_median']:.3g})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="fmnist-split-vit,digits-to-fashion")
    parser.add_argument("--budgets", default="300")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, default=Path("runs/stem_gradients"))
    args = parser.parse_args()
    reproduce.study_sources_in(args.out)
    rows = []
    for task, budget, seed in reproduce.cells(args):
        row = measure(task, budget, seed, args.out)
        print(f"{task} {budget} seed {seed}: {described(row['stem_gradients'])}", flush=True)
        rows.append(row)
    reproduce.write_merged(args.out / RESULT, rows, args, ("run", "task", "budget", "seed"))


if __name__ == "__main__":
    main()
