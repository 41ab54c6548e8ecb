"""Evaluation: clean, PGD, AutoAttack and common-corruption accuracy, with self-checks."""

from .checks import check_accuracies
from .metrics import METRIC_KEYS, METRICS, Metric
from .robustness import EVALUATIONS, EvalConfig, correct_flags, evaluate

__all__ = [
    "EVALUATIONS",
    "METRICS",
    "METRIC_KEYS",
    "EvalConfig",
    "Metric",
    "check_accuracies",
    "correct_flags",
    "evaluate",
]
