"""Evaluation: clean, PGD, AutoAttack and common-corruption accuracy, with self-checks."""

from .checks import check_accuracies
from .robustness import EVALUATIONS, EvalConfig, correct_flags, evaluate

__all__ = ["EVALUATIONS", "EvalConfig", "check_accuracies", "correct_flags", "evaluate"]
