"""Training: the methods, their objectives, LR schedules and the one trainer every method uses."""

from .config import TrainConfig
from .head_start import HEAD_INITS, ProbeSettings, linear_probe, robust_linear_probe
from .method import Method, MethodContext, MethodDefaults
from .methods import METHODS, get_method, method_names, register_method
from .methods.autolora import (
    AutoLoraObjective,
    AutoScalars,
    LossSettings,
    LossWeights,
    autolora_loss,
    autolora_loss_terms,
)
from .objectives import (
    AdversarialCEObjective,
    CleanCEObjective,
    LossOutput,
    TradesObjective,
    kl_batchmean,
    trades_terms,
)
from .schedule import SCHEDULES, AutoLRSchedule, CosineSchedule, Decision, Schedule, StepDecaySchedule
from .stem import STEMS, embeds_patches, freeze_stem
from .trainer import Trainer

__all__ = [
    "HEAD_INITS",
    "METHODS",
    "SCHEDULES",
    "STEMS",
    "AdversarialCEObjective",
    "AutoLRSchedule",
    "AutoLoraObjective",
    "AutoScalars",
    "CleanCEObjective",
    "CosineSchedule",
    "Decision",
    "LossOutput",
    "LossSettings",
    "LossWeights",
    "Method",
    "MethodContext",
    "MethodDefaults",
    "ProbeSettings",
    "Schedule",
    "StepDecaySchedule",
    "TradesObjective",
    "TrainConfig",
    "Trainer",
    "autolora_loss",
    "autolora_loss_terms",
    "embeds_patches",
    "freeze_stem",
    "get_method",
    "kl_batchmean",
    "linear_probe",
    "method_names",
    "register_method",
    "robust_linear_probe",
    "trades_terms",
]
