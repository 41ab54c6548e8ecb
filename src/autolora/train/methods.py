"""The training methods, each a row of one table: what trains, on which loss, under which schedule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..attacks import BatchNoise, RandomStart
from .config import TrainConfig
from .objectives import (
    AdversarialCEObjective,
    AutoLoraObjective,
    CleanCEObjective,
    LossWeights,
    Objective,
    TradesObjective,
)
from .schedule import AutoLRSchedule, CosineSchedule, Schedule, StepDecaySchedule

ObjectiveFactory = Callable[[TrainConfig, LossWeights, BatchNoise | None], Objective]


def _autolora(config: TrainConfig, weights: LossWeights, noise: BatchNoise | None = None) -> Objective:
    attack = config.attack.pgd(RandomStart.NORMAL, autocast=config.autocast_dtype, noise=noise)
    return AutoLoraObjective(attack, weights, config.autocast_dtype)


def _trades(config: TrainConfig, weights: LossWeights, noise: BatchNoise | None = None) -> Objective:
    attack = config.attack.pgd(RandomStart.NORMAL, autocast=config.autocast_dtype, noise=noise)
    return TradesObjective(attack, config.beta, config.autocast_dtype)


def _adversarial_ce(config: TrainConfig, weights: LossWeights, noise: BatchNoise | None = None) -> Objective:
    attack = config.attack.pgd(RandomStart.UNIFORM, autocast=config.autocast_dtype, noise=noise)
    return AdversarialCEObjective(attack, config.autocast_dtype)


def _clean_ce(config: TrainConfig, weights: LossWeights, noise: BatchNoise | None = None) -> Objective:
    return CleanCEObjective(config.autocast_dtype)


@dataclass(frozen=True)
class Method:
    """A training method.

    ``head_only`` trains the classification head alone, with the feature extractor frozen
    (its BatchNorm statistics too); ``branch`` adds AutoLoRa's low-rank branch;
    ``auto_scalars`` sets the loss scalars from the natural branch's accuracy.
    """

    name: str
    description: str
    objective: ObjectiveFactory
    schedule: str
    branch: bool = False
    auto_scalars: bool = False
    head_only: bool = False
    finetune: bool = True


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "autolora", "AutoLoRa: low-rank natural branch, automatic scalars and LR", _autolora, "auto", True, True
        ),
        Method("vanilla", "vanilla robust fine-tuning: TRADES loss, fixed LR with step decay", _trades, "step"),
        Method("slf", "standard linear fine-tuning: head only, clean data", _clean_ce, "step", head_only=True),
        Method(
            "alf", "adversarial linear fine-tuning: head only, CE on PGD data", _adversarial_ce, "step", head_only=True
        ),
        Method("aff", "adversarial full fine-tuning: everything, CE on PGD data", _adversarial_ce, "step"),
        Method("pgd-at", "PGD adversarial training (Madry et al. 2018)", _adversarial_ce, "cosine", finetune=False),
        Method("trades", "TRADES adversarial training (Zhang et al. 2019)", _trades, "cosine", finetune=False),
    )
}
FINETUNE_METHODS = [name for name, m in METHODS.items() if m.finetune]
PRETRAIN_METHODS = [name for name, m in METHODS.items() if not m.finetune]


def _auto(config: TrainConfig) -> Schedule:
    return AutoLRSchedule(config.lr, max_epochs=config.epochs)


def _step(config: TrainConfig) -> Schedule:
    return StepDecaySchedule(config.lr, config.epochs)


def _cosine(config: TrainConfig) -> Schedule:
    return CosineSchedule(config.lr, config.epochs)


SCHEDULES: dict[str, Callable[[TrainConfig], Schedule]] = {"auto": _auto, "step": _step, "cosine": _cosine}


def build_schedule(config: TrainConfig) -> Schedule:
    return SCHEDULES[config.schedule or METHODS[config.method].schedule](config)
