"""Attacks: threat models, one PGD loop with pluggable objectives, and AutoAttack."""

from .autoattack import AutoAttackResult, run_autoattack
from .noise import BatchNoise
from .objectives import CrossEntropyObjective, KLObjective, MarginObjective
from .pgd import PGD, evaluating
from .threat import NORMS, L2Ball, LinfBall, RandomStart, Threat, ThreatModel, threat_model

__all__ = [
    "NORMS",
    "PGD",
    "AutoAttackResult",
    "BatchNoise",
    "CrossEntropyObjective",
    "KLObjective",
    "MarginObjective",
    "L2Ball",
    "LinfBall",
    "RandomStart",
    "Threat",
    "ThreatModel",
    "evaluating",
    "run_autoattack",
    "threat_model",
]
