"""``autolora models`` and ``autolora datasets``: what the registries hold."""

from __future__ import annotations

from rich.table import Table

from ..data import list_datasets
from ..models import list_models
from ..train import METHODS
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
    """List the training methods: what each trains, on which loss, under which default schedule."""
    for method in METHODS.values():
        row = method.describe()
        aliases = f" (also: {', '.join(method.aliases)})" if method.aliases else ""
        out.print(f"[bold]{row.pop('method')}[/]{aliases}", highlight=False)
        for key, value in row.items():
            out.print(f"  {key + ':':<18}{value}", highlight=False)
