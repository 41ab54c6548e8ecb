"""``autolora models`` and ``autolora datasets``: what the registries hold."""

from __future__ import annotations

from rich.table import Table

from ..data import list_datasets
from ..models import list_models
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
