"""One adversarial training step of a method, built from the objects the trainer uses (for the timing scripts)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from autolora.inputs import InputSpec
from autolora.models import create_model
from autolora.runtime import compile_model
from autolora.train import TrainConfig, get_method
from autolora.train.methods.autolora import AutoLoRa
from autolora.train.objectives import LossOutput, Objective


@dataclass
class TrainingStep:
    """The method's attack, its loss's forward and backward, and an SGD step, on one batch."""

    model: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    memory_format: torch.memory_format

    def __call__(self, x: Tensor, y: Tensor) -> LossOutput:
        output = self.objective(self.model, x.contiguous(memory_format=self.memory_format), y)
        self.optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        self.optimizer.step()
        return output


def training_step(
    model_name: str,
    spec: InputSpec,
    method: str,
    *,
    attack_steps: int,
    lr: float,
    weight_decay: float = 0.0,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    device: torch.device | str = "cpu",
) -> TrainingStep:
    """A fresh ``model_name`` (seed 0, branched when the method is) ready to train with ``method``;
    ``compile`` compiles it in place as ``--compile`` does (``runtime.compile_model``)."""
    torch.manual_seed(0)
    model = create_model(model_name, 10, spec)
    config = TrainConfig(method=method, epochs=1, lr=lr, weight_decay=weight_decay, precision=precision,
                         attack_steps=attack_steps)  # fmt: skip
    strategy = get_method(method)(config)
    strategy.prepare(model)  # AutoLoRa's branch
    if isinstance(strategy, AutoLoRa):
        strategy.scalars.update(0.5)  # a mid-training setting: lambda1 0.5, lambda2 3
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=memory_format).train()
    if compile and not compile_model(model, torch.device(device)):
        raise SystemExit("torch.compile cannot run here (see the warning above)")
    objective = strategy.loss
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return TrainingStep(model, objective, optimizer, memory_format)
