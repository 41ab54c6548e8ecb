"""``autolora evaluate``: clean, PGD, AutoAttack and corruption accuracy of a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .. import api
from ..data import DataConfig
from ..eval import EvalConfig
from ..fileio import write_json
from ..models import InputOverrides
from . import options as o
from .app import command
from .reporter import out
from .summary import accuracy_table


@command(
    "evaluate",
    "autolora evaluate --checkpoint runs/digits --dataset digits --eps 0.1 --attacks clean,pgd,autoattack --json r.json",  # noqa: E501
)
def evaluate(
    checkpoint: o.Checkpoint,
    dataset: o.Dataset,
    model: o.ModelName = None,
    attacks: Annotated[str, typer.Option(help="Comma-separated: clean, pgd, autoattack, corruptions.")] = "clean,pgd",
    eps: o.Eps = "8/255",
    norm: o.Norm = "Linf",
    pgd_steps: Annotated[int, typer.Option(help="PGD steps (step size eps/4, random start).")] = 20,
    pgd_restarts: Annotated[int, typer.Option(help="PGD restarts; each example keeps its worst case.")] = 1,
    autoattack_version: o.AutoAttackVersion = "standard",
    autoattack_n: o.AutoAttackN = None,
    autoattack_state: Annotated[
        Path | None, typer.Option(help="State file that makes a long AutoAttack run resumable.")
    ] = None,
    corruptions: Annotated[
        str | None, typer.Option(help="Comma-separated corruption names (default: all that apply).")
    ] = None,
    classes: o.Classes = None,
    limit_test: o.LimitTest = None,
    batch_size: o.BatchSize = 256,
    json: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    input_size: o.InputSize = None,
    mean: o.Mean = None,
    std: o.Std = None,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    data_dir: o.DataDir = None,
    download: o.Download = False,
    debug: o.Debug = False,
) -> None:
    """Measure a checkpoint's accuracy on a data set's test split: all attacks on the same examples."""
    data = DataConfig(dataset, data_dir, download, classes, None, limit_test, seed=seed)
    config = EvalConfig(
        attacks=o.parse_list(attacks),
        threat=o.parse_threat(eps, norm),
        pgd_steps=pgd_steps,
        pgd_restarts=pgd_restarts,
        autoattack_version=autoattack_version,
        autoattack_n=autoattack_n,
        autoattack_state=autoattack_state,
        corruptions=o.parse_list(corruptions) or None,
        batch_size=batch_size,
        seed=seed,
    )
    overrides = InputOverrides(input_size, o.parse_floats(mean, "mean"), o.parse_floats(std, "std"))
    results = api.evaluate_checkpoint(checkpoint, data, config, architecture=model, overrides=overrides, device=device)
    out.print(accuracy_table(results, f"{results['architecture']} on {results['dataset']} (n={results['n']})"))
    for warning in results["warnings"]:
        out.print("[yellow]warning:[/] " + escape(warning), highlight=False)
    if json is not None:
        write_json(json, results)
        out.print(f"wrote {json}", highlight=False)
