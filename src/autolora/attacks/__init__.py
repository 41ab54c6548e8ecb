"""Attacks: threat models, one PGD loop with pluggable objectives, and AutoAttack."""

from .autoattack import AutoAttackResult, run_autoattack
from .noise import BatchNoise
from .objectives import CrossEntropyObjective, KLObjective
from .pgd import PGD, evaluating
from .threat import L2Ball, LinfBall, RandomStart, ThreatModel, threat_model

__all__ = [
    "PGD",
    "AutoAttackResult",
    "BatchNoise",
    "CrossEntropyObjective",
    "KLObjective",
    "L2Ball",
    "LinfBall",
    "RandomStart",
    "ThreatModel",
    "evaluating",
    "run_autoattack",
    "threat_model",
]
