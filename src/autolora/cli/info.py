"""``autolora models``, ``datasets``, ``methods`` and ``checkpoints``: what the registries and the package hold."""

from __future__ import annotations

from rich.table import Table

from ..data import list_datasets
from ..models import list_models
from ..report.report import format_eps, percent
from ..shipped import shipped_checkpoints
from ..train.methods import METHODS
from .app import command
from .options import Debug
from .reporter import out


@command("models", "autolora models")
def models(debug: Debug = False) -> None:
    """List the registered model architectures."""
    table = Table("model", "description")
    for entry in list_models():
        table.add_row(entry.name, entry.description)
    out.print(table)


@command("datasets", "autolora datasets")
def datasets(debug: Debug = False) -> None:
    """List the named data sets (plus imagefolder:PATH for your own)."""
    table = Table("dataset", "description")
    for entry in list_datasets():
        table.add_row(entry.name, entry.description)
    table.add_row("imagefolder:PATH", "your images: PATH/train/<class>/* and PATH/test/<class>/*")
    out.print(table)


@command("methods", "autolora methods")
def methods(debug: Debug = False) -> None:
    """List the training methods (fine-tuning and pre-training)."""
    table = Table("method", "used by", "description")
    for method in METHODS.values():
        table.add_row(method.name, "finetune" if method.finetune else "pretrain", method.description)
    out.print(table)


@command("checkpoints", "autolora evaluate --checkpoint fmnist-resnet8")
def checkpoints(debug: Debug = False) -> None:
    """List the checkpoints shipped with autolora; pass a name as --checkpoint."""
    table = Table("name", "model", "trained on", "eps", "clean %", "PGD-20 %", "AA %")
    for shipped in shipped_checkpoints():
        config, evaluation = shipped.config, shipped.evaluation
        attack = config.get("training", {}).get("attack", {})
        table.add_row(
            shipped.name,
            config["model"]["architecture"],
            config.get("data", {}).get("dataset", "-"),
            format_eps(attack.get("eps"), attack.get("norm")),
            *(percent(evaluation.get(key)) for key in ("clean_acc", "pgd_acc", "autoattack_acc")),
        )
    out.print(table)
