"""Can a parameter-free optimizer choose AutoLoRa's step size? The default recipe with SGD replaced.

Issue 13 asks for the initial LR to be chosen automatically. Optimizers built for exactly that set
their step size from what the run has done so far, with no LR to give:

- ``dog``: DoG (Ivgi, Hinder and Carmon, ICML 2023): SGD without momentum whose step is the largest
  distance travelled from the start over the root of the summed squared gradient norms, one step size
  for all parameters (``dog-optimizer``, its authors' package; ``reps_rel=1e-4``, their advice for
  networks with BatchNorm);
- ``ldog``: the same per parameter tensor (their L-DoG);
- ``dadapt-sgd``: D-Adaptation's SGD (Defazio and Mishchenko, ICML 2023) with the recipe's momentum
  0.9 (``dadaptation``, its authors' package; ``d0=1e-6``, theirs);
- ``prodigy``: Prodigy (Mishchenko and Defazio, ICML 2024), D-Adaptation's estimate made to grow
  faster, on Adam's per-coordinate steps (``prodigyopt``, its authors' package, at its defaults);
- ``cocob``: COCOB-Backprop (Orabona and Tommasi, NeurIPS 2017), a per-coordinate coin-betting step
  with no LR at all (``parameterfree``, its author's package; ``alpha=100``, his). It has no
  multiplier, so the rule's halvings and the tail's decay do not reach it: it runs on its own.

Each replaces the training optimizer of the study's default row ("autolora", as it was before the
spike halving of 2026-12-06) and nothing else: the LR rule, the tail and the model selection act on
the optimizer's LR, which here is the multiplier
its authors ask to leave at 1 (DoG's c, D-Adaptation's lr), so the rule halves that multiplier.
Every step's step size is recorded (``step_sizes.json`` in the run's directory). The
default itself is run beside them (``--optimizers default``), so every comparison is on one machine.

    pip install -e '.[optimizers]'
    python benchmarks/parameter_free_steps.py [--optimizers default,dog,ldog,dadapt-sgd,prodigy,cocob]
        [--tasks digits-to-fashion] [--budgets 300,1000] [--seeds 0,1,2] [--out runs/parameter_free]

Rows land in OUT/rows as the study's do (``reproduce.py --report-only --out OUT`` tabulates them);
OUT/parameter_free_steps.json has every row with its step sizes (first, largest, at each quarter of
the run, last), and each invocation's machine and settings (rows of later invocations are added).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

import reproduce
from autolora.fileio import write_json
from autolora.train import trainer as training
from autolora.train.config import TrainConfig

STEP_SIZES = "step_sizes.json"
RESULT = "parameter_free_steps.json"
Factory = Callable[[list[nn.Parameter], TrainConfig], torch.optim.Optimizer]


def _dog(parameters: list[nn.Parameter], config: TrainConfig, layerwise: bool = False) -> torch.optim.Optimizer:
    from dog import DoG, LDoG

    kind = LDoG if layerwise else DoG
    return kind(parameters, lr=config.lr, weight_decay=config.weight_decay, reps_rel=1e-4)


def _dadapt_sgd(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    from dadaptation import DAdaptSGD

    return DAdaptSGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _prodigy(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    from prodigyopt import Prodigy

    return Prodigy(parameters, lr=config.lr, weight_decay=config.weight_decay)


def _cocob(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    from parameterfree import COCOB

    optimizer = COCOB(parameters, weight_decay=config.weight_decay)
    for group in optimizer.param_groups:
        group["lr"] = config.lr  # what the rule reads and halves; COCOB's step never reads it
    return optimizer


OPTIMIZERS: dict[str, Factory] = {
    "dog": _dog,
    "ldog": functools.partial(_dog, layerwise=True),
    "dadapt-sgd": _dadapt_sgd,
    "prodigy": _prodigy,
    "cocob": _cocob,
}
PACKAGES = {"dog": "dog", "ldog": "dog", "dadapt-sgd": "dadaptation", "prodigy": "prodigyopt", "cocob": "parameterfree"}


def installed() -> set[str]:
    """The optimizers' packages this environment has."""
    return {module for module in set(PACKAGES.values()) if importlib.util.find_spec(module) is not None}


def _step_size(group: dict[str, Any], moved: float) -> float:
    """How far a step moves the weights along a gradient of unit norm, once momentum has built up:
    DoG's eta (it has no momentum), the median of L-DoG's over its tensors, D-Adaptation's d times
    its LR over the first gradient's norm (the step of the sequence its momentum averages; read after
    a step, so the one it takes next). SGD at the recipe's LR 0.1 with momentum 0.9 moves 1.0.
    Prodigy and COCOB step per coordinate and keep no such size: for them it is ``moved``, the length
    of the step just taken over the norm of the gradient it was given (for DoG that is its eta)."""
    if "eta" in group:
        etas = torch.cat([torch.as_tensor(eta, dtype=torch.float64).reshape(-1) for eta in group["eta"]])
        return float(etas.quantile(0.5))
    if "g0_norm" in group:
        return float(group["d"] * group["lr"] / group["g0_norm"])
    return moved


@contextlib.contextmanager
def optimizer_traced(factory: Factory, trace: list[dict[str, float]]) -> Iterator[None]:
    """Runs started inside train with ``factory``'s optimizer; every step appends its step size."""

    def traced(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
        optimizer = factory(parameters, config)
        before: dict[str, Any] = {}

        def remember(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            with_grad = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            before["weights"] = [p.detach().clone() for p in with_grad]
            before["grad_norm"] = float(torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in with_grad])))
            before["parameters"] = with_grad

        def record(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            moves = [(p.detach() - w).reshape(-1) for p, w in zip(before["parameters"], before["weights"], strict=True)]
            moved = float(torch.linalg.vector_norm(torch.cat(moves))) / max(before["grad_norm"], 1e-12)
            group = optimizer.param_groups[0]
            trace.append({"multiplier": group["lr"], "step_size": _step_size(group, moved)})

        optimizer.register_step_pre_hook(remember)
        optimizer.register_step_post_hook(record)
        return optimizer

    with mock.patch.object(training, "build_optimizer", traced):
        yield


def run_of(name: str) -> reproduce.Run:
    """The study's default row as it was when these were measured (before the spike halving and the
    attack's running reads), or that row with the optimizer ``name`` at its multiplier of 1."""
    before = reproduce.BEFORE_DECEMBER_6
    if name == "default":
        return reproduce.Run("autolora", "autolora", settings=before)
    return reproduce.Run(f"autolora ({name} step sizes)", "autolora", 1.0, settings=before)


def summarise(trace: list[dict[str, float]]) -> dict[str, Any]:
    """A run's step sizes in brief: the first, the largest, at each quarter of the run, the last."""
    sizes = [step["step_size"] for step in trace]
    quarters = [sizes[min(len(sizes) - 1, len(sizes) * q // 4)] for q in (1, 2, 3)]
    return {"first": sizes[0], "largest": max(sizes), "at_quarters": quarters, "last": sizes[-1], "steps": len(sizes)}


def measure(name: str, task: str, budget: str, seed: int, out: Path) -> dict[str, Any]:
    """One run of the study's default row with optimizer ``name`` (its row, if finished before)."""
    if name == "default":
        return {"optimizer": name, **reproduce.run_one(reproduce.TASKS[task], budget, seed, run_of(name),
                                                       reproduce.FULL, out, False)}  # fmt: skip
    trace: list[dict[str, Any]] = []
    traced = optimizer_traced(OPTIMIZERS[name], trace)
    row, steps = reproduce.traced_row(task, budget, seed, run_of(name), out, traced, trace, STEP_SIZES)
    return {"optimizer": name, **row, "step_sizes": summarise(steps)}


def described(row: dict[str, Any]) -> str:
    """A row's line of the printout."""
    shown = f"clean {100 * row['clean_acc']:.1f}  PGD-20 {100 * row['pgd_acc']:.1f}"
    if sizes := row.get("step_sizes"):
        shown += f"  step sizes {sizes['first']:.3g} -> {sizes['largest']:.3g} -> {sizes['last']:.3g}"
    return shown


def merged(path: Path, rows: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """The result file with these rows added (a row of the same optimizer, task, budget and seed replaced)."""
    return reproduce.merged_result(path, rows, settings, ("optimizer", "task", "budget", "seed"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", default="default," + ",".join(OPTIMIZERS))
    parser.add_argument("--tasks", default="digits-to-fashion")
    parser.add_argument("--budgets", default="300,1000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("runs/parameter_free"))
    args = parser.parse_args()
    names = args.optimizers.split(",")
    if unknown := [name for name in names if name != "default" and name not in OPTIMIZERS]:
        parser.error(f"unknown optimizer {unknown[0]!r}; choose from default, {', '.join(OPTIMIZERS)}")
    if missing := sorted({PACKAGES[name] for name in names if name in PACKAGES} - installed()):
        parser.error(f"{', '.join(missing)} not installed: pip install -e '.[optimizers]'")
    rows = []
    for task, budget, seed in reproduce.cells(args):
        for name in names:
            row = measure(name, task, budget, seed, args.out)
            print(f"{task} {budget} seed {seed} {name}: {described(row)}", flush=True)
            rows.append(row)
    write_json(args.out / RESULT, merged(args.out / RESULT, rows, vars(args) | {"out": str(args.out)}))


if __name__ == "__main__":
    main()
