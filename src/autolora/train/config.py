"""Typed, validated settings of a training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..attacks import PGD, BatchNoise, RandomStart, threat_model
from ..errors import ConfigError
from ..eval import EvalConfig

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class AttackConfig:
    """The training attack: PGD in an ``norm`` ball of radius ``eps``, ``steps`` steps of ``step_size``."""

    eps: float = 8 / 255
    norm: str = "Linf"
    steps: int = 10
    step_size: float | None = None  # eps / 4

    def __post_init__(self) -> None:
        threat_model(self.norm, self.eps)
        if self.steps < 1:
            raise ConfigError("attack-steps", self.steps, "use at least one attack step")

    def pgd(
        self,
        start: RandomStart,
        steps: int | None = None,
        autocast: torch.dtype | None = None,
        noise: BatchNoise | None = None,
    ) -> PGD:
        return PGD(
            threat_model(self.norm, self.eps),
            steps=self.steps if steps is None else steps,
            step_size=self.step_size,
            random_start=start,
            autocast=autocast,
            noise=noise,
        )


@dataclass(frozen=True)
class TrainConfig:
    """All settings of a training run, validated where they are built."""

    method: str
    epochs: int
    lr: float
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 1e-4
    beta: float = 6.0
    rank: int = 8
    attack: AttackConfig = field(default_factory=AttackConfig)
    val_attack_steps: int | None = None
    scalar_samples: int | None = 5000
    schedule: str | None = None  # None: the method's own
    precision: str = "fp32"
    channels_last: bool = True  # measured faster on CPU too (benchmarks/RESULTS.md)
    seed: int = 0
    save_every: int | None = None
    evaluation: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        from .methods import METHODS, SCHEDULES

        if self.method not in METHODS:
            raise ConfigError("method", self.method, f"choose one of: {', '.join(METHODS)}")
        if self.epochs < 1:
            raise ConfigError("epochs", self.epochs, "train for at least one epoch")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise ConfigError("lr", self.lr, "use a positive, finite learning rate")
        if self.batch_size < 1:
            raise ConfigError("batch-size", self.batch_size, "use a positive batch size")
        if not 0 <= self.momentum < 1:
            raise ConfigError("momentum", self.momentum, "use a momentum in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError("weight-decay", self.weight_decay, "use a non-negative weight decay")
        if self.beta < 0:
            raise ConfigError("beta", self.beta, "use a non-negative TRADES beta")
        if self.rank < 1:
            raise ConfigError("rank", self.rank, "use a rank of at least 1")
        if self.val_attack_steps is not None and self.val_attack_steps < 1:
            raise ConfigError("val-attack-steps", self.val_attack_steps, "use at least one step")
        if self.scalar_samples is not None and self.scalar_samples < 1:
            raise ConfigError("scalar-samples", self.scalar_samples, "use a positive number of images")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ConfigError("schedule", self.schedule, f"choose one of: {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError("precision", self.precision, f"choose one of: {', '.join(PRECISIONS)}")
        if self.save_every is not None and self.save_every < 1:
            raise ConfigError("save-every", self.save_every, "use a positive number of epochs")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["evaluation"] = {
            k: (str(v) if k == "autoattack_state" and v else v) for k, v in data["evaluation"].items()
        }
        return data

    def resume_key(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues."""
        data = self.to_dict()
        data.pop("evaluation")
        return data
