"""Models: a registry of classifiers with normalisation inside, and safe checkpoint I/O."""

from .checkpoint import (
    InputOverrides,
    LoadReport,
    ModelRecord,
    load_classifier,
    read_tensors,
    save_run_model,
)
from .classifier import ImageClassifier, Normalize, check_takes_its_input
from .registry import create_model, list_models, register_model

__all__ = [
    "ImageClassifier",
    "InputOverrides",
    "LoadReport",
    "ModelRecord",
    "Normalize",
    "check_takes_its_input",
    "create_model",
    "list_models",
    "load_classifier",
    "read_tensors",
    "register_model",
    "save_run_model",
]
