"""``autolora models``, ``datasets``, ``methods`` and ``checkpoints``: what the registries and the package hold."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..data import SourceOptions, is_present, list_datasets
from ..eval.metrics import AUTOATTACK, CLEAN, PGD
from ..models import list_models
from ..report.report import format_eps, percent
from ..run_settings import recorded_threat
from ..shipped import shipped_checkpoints
from ..train import METHODS
from .app import command
from .options import DataDir, Debug
from .reporter import out

TimmPattern = Annotated[
    str | None, typer.Option("--timm", help="List timm's models matching a pattern instead, e.g. '*vit_tiny*'.")
]


@command("models", "autolora models --timm 'convnext_*'")
def models(timm: TimmPattern = None, debug: Debug = False) -> None:
    """List the registered model architectures (or, with --timm, timm's models for timm:NAME)."""
    if timm is not None:
        import timm as timm_library

        names = timm_library.list_models(timm)
        out.print("\n".join(f"timm:{name}" for name in names) or f"no timm model matches {timm!r}")
        return
    table = Table("model", "description")
    for entry in list_models():
        table.add_row(entry.name, entry.description)
    table.add_row("timm:NAME", "any timm classification model, e.g. timm:vit_base_patch16_224 (list: --timm PATTERN)")
    out.print(table)


@command("datasets", "autolora datasets --data-dir /data")
def datasets(data_dir: DataDir = None, debug: Debug = False) -> None:
    """List the named data sets, whether each is here (under --data-dir), plus imagefolder:PATH for your own."""
    options = SourceOptions(data_dir)
    table = Table("dataset", "local", "description")
    for entry in list_datasets():
        table.add_row(entry.name, "yes" if is_present(entry.name, options) else "no", entry.description)
    table.add_row("imagefolder:PATH", "", "your images: PATH/train/<class>/* and PATH/test/<class>/* (README)")
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


@command("checkpoints", "autolora evaluate --checkpoint fmnist-resnet8")
def checkpoints(debug: Debug = False) -> None:
    """List the checkpoints shipped with autolora; pass a name as --checkpoint."""
    table = Table("name", "model", "trained on", "eps", "clean %", "PGD-20 %", "AA %")
    for shipped in shipped_checkpoints():
        config, evaluation = shipped.config, shipped.evaluation
        attack = recorded_threat(config)
        table.add_row(
            shipped.name,
            config["model"]["architecture"],
            config.get("data", {}).get("dataset", "-"),
            format_eps(attack.get("eps"), attack.get("norm")),
            *(percent(evaluation.get(m.key)) for m in (CLEAN, PGD, AUTOATTACK)),
        )
    out.print(table)
