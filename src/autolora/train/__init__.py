"""Training: objectives, automatic scalars, LR schedules and the one trainer every method uses."""

from .config import AttackConfig, TrainConfig
from .methods import FINETUNE_METHODS, METHODS, PRETRAIN_METHODS, Method
from .objectives import (
    AdversarialCEObjective,
    AutoLoraObjective,
    CleanCEObjective,
    LossOutput,
    LossWeights,
    TradesObjective,
    autolora_loss,
    kl_batchmean,
)
from .scalars import AutoScalars
from .schedule import AutoLRSchedule, CosineSchedule, Decision, Schedule, StepDecaySchedule
from .trainer import Trainer

__all__ = [
    "FINETUNE_METHODS",
    "METHODS",
    "PRETRAIN_METHODS",
    "AdversarialCEObjective",
    "AttackConfig",
    "AutoLRSchedule",
    "AutoLoraObjective",
    "AutoScalars",
    "CleanCEObjective",
    "CosineSchedule",
    "Decision",
    "LossOutput",
    "LossWeights",
    "Method",
    "Schedule",
    "StepDecaySchedule",
    "TradesObjective",
    "TrainConfig",
    "Trainer",
    "autolora_loss",
    "kl_batchmean",
]
