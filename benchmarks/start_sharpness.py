"""How sharp is the loss where the start LR of 0.1 takes AutoLoRa, on a BatchNorm ResNet-8 and a ViT?

The start is the one number the default fixes, and on the study's small ViT (no BatchNorm) 0.1 is
too high for some seeds (``docs/results.md``, "The start on a backbone without BatchNorm"). Two
readings of the first epochs that an automatic start could use are measured here:

- the largest eigenvalue of the training loss's Hessian, before each of the first epochs (power
  iteration on Hessian-vector products, ``--iterations`` of them, on one training batch whose
  adversarial examples are drawn once): for SGD with momentum β a step is stable on a quadratic
  only while that eigenvalue is under 2(1 + β)/LR, 38 at LR 0.1 and β 0.9;
- each optimizer step's relative move of the feature extractor (the norm of its change over the
  norm of its weights), and of the head.

It runs the study's default row (``reproduce.py``, "autolora") from its start and stops after
``--epochs`` epochs; no row is written.

    python benchmarks/start_sharpness.py [--tasks ...] [--budgets 300] [--seeds 0] [--epochs 2]
        [--out runs/start_sharpness]

Prints one line per run and writes OUT/start_sharpness.json with the machine and settings.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import reproduce
from autolora.attacks import CrossEntropyObjective
from autolora.fileio import write_json
from autolora.lora import natural_forward, unwrap
from autolora.runtime import machine
from autolora.train import trainer as training
from autolora.train.methods.autolora import autolora_loss
from range_test_survey import norm, parts

PROBE_BATCH = 10**6 - 1  # the probe's batch order and random-start key: apart from any epoch's


def top_eigenvalue(loss: torch.Tensor, parameters: list[nn.Parameter], iterations: int) -> float:
    """The largest eigenvalue of the Hessian of ``loss`` in ``parameters``, by power iteration."""
    grads = torch.autograd.grad(loss, parameters, create_graph=True)
    generator = torch.Generator().manual_seed(0)
    vector = [torch.randn(p.shape, generator=generator) for p in parameters]
    eigenvalue = 0.0
    for _ in range(iterations):
        length = norm(vector)
        vector = [v / length for v in vector]
        product = torch.autograd.grad(grads, parameters, grad_outputs=vector, retain_graph=True)
        eigenvalue = float(sum((v * h).sum() for v, h in zip(vector, product, strict=True)))
        vector = [h.detach() for h in product]
    return eigenvalue


def sharpness(trainer: training.Trainer, iterations: int) -> dict[str, float]:
    """The training loss's top Hessian eigenvalue on one batch, its adversarial examples drawn once."""
    x, y, info = next(iter(trainer._batches(PROBE_BATCH)))
    trainer.noise.begin(PROBE_BATCH * training.NOISE_STREAM, info.global_size, info.part)
    objective, model = trainer.method.objective, trainer.model
    trainer._set_train_mode()
    x_adv = objective.attack(unwrap(trainer.net), x, CrossEntropyObjective(y)).detach()
    trainer._set_train_mode()
    with sdpa_kernel([SDPBackend.MATH]):  # attention's fused kernels have no second derivative
        loss = autolora_loss(natural_forward(model, x), model(x_adv), y, objective.weights, settings=objective.settings)
        parameters = [p for p in model.parameters() if p.requires_grad]
        eigenvalue = top_eigenvalue(loss, parameters, iterations)
    return {"lambda_max": eigenvalue, "loss": float(loss.detach()), "lr": trainer.schedule.lr}


class Measured(Exception):
    """Raised after the measured epochs: the run goes no further."""


def relative_moves(grouped: dict[str, list[nn.Parameter]], before: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """Each part's change since ``before``, over the norm of its weights then."""
    return {part: norm([p - b for p, b in zip(ps, before[part], strict=True)]) / max(norm(before[part]), 1e-12)
            for part, ps in grouped.items() if ps}  # fmt: skip


@contextmanager
def first_epochs_measured(epochs: int, iterations: int, found: dict[str, Any]) -> Iterator[None]:
    """Runs started inside measure the Hessian before each epoch (and after the last) and every
    step's relative moves, into ``found``, and stop after ``epochs`` epochs."""
    run_epoch, build = training.Trainer._run_epoch, training.build_optimizer

    def measured_epoch(self: training.Trainer, epoch: int) -> None:
        found["sharpness"].append({"before_epoch": epoch, **sharpness(self, iterations)})
        if epoch > epochs:
            raise Measured
        found["parts"] = parts(self.model)
        run_epoch(self, epoch)

    def moves_recorded(parameters: list[nn.Parameter], config: Any) -> torch.optim.Optimizer:
        optimizer, before = build(parameters, config), {}

        def remember(*_: Any) -> None:
            before.update({part: [p.detach().clone() for p in ps] for part, ps in found["parts"].items()})

        optimizer.register_step_pre_hook(remember)
        optimizer.register_step_post_hook(lambda *_: found["moves"].append(relative_moves(found["parts"], before)))
        return optimizer

    with mock.patch.object(training.Trainer, "_run_epoch", measured_epoch), \
            mock.patch.object(training, "build_optimizer", moves_recorded):  # fmt: skip
        yield


def measure(task: str, budget: str, seed: int, epochs: int, iterations: int, out: Path) -> dict[str, Any]:
    found: dict[str, Any] = {"sharpness": [], "moves": [], "parts": {}}
    with first_epochs_measured(epochs, iterations, found), suppress(Measured):
        reproduce.run_afresh(task, budget, seed, "autolora", out)
    return {"task": task, "budget": budget, "seed": seed, "sharpness": found["sharpness"], "moves": found["moves"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="fmnist-split-vit,fmnist-split,digits-to-fashion,digits")
    parser.add_argument("--budgets", default="300")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/start_sharpness"))
    args = parser.parse_args()
    reproduce.study_sources_in(args.out)
    found = []
    for task, budget, seed in itertools.product(args.tasks.split(","), args.budgets.split(","),
                                                (int(s) for s in args.seeds.split(","))):  # fmt: skip
        row = measure(task, budget, seed, args.epochs, args.iterations, args.out)
        eigenvalues = ", ".join(f"{s['lambda_max']:.3g}" for s in row["sharpness"])
        features = ", ".join(f"{100 * m['features']:.2f}" for m in row["moves"][-8:])
        print(f"{task} {budget} seed {seed}: top Hessian eigenvalue before epochs 1-{args.epochs + 1} "
              f"{eigenvalues}; feature extractor's move per step, last 8 steps, % {features}", flush=True)  # fmt: skip
        found.append(row)
        settings = vars(args) | {"out": str(args.out)}
        write_json(args.out / "start_sharpness.json", {"machine": machine(), "settings": settings, "runs": found})


if __name__ == "__main__":
    main()
