"""``autolora evaluate``: clean, PGD, AutoAttack and corruption accuracy of a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from .. import api
from ..attacks import Threat
from ..data import DataConfig
from ..errors import ConfigError
from ..eval import EvalConfig
from ..fileio import write_json
from ..models import InputOverrides, load_classifier
from ..run_settings import resolve_settings
from . import options as o
from .app import command
from .reporter import RichReporter, out, warn
from .summary import accuracy_table, settings_line

RUNS = "default: the run's"
EVAL = o.EVALUATION


@command("evaluate", "autolora evaluate --checkpoint runs/digits --attacks clean,pgd,autoattack --json r.json")
def evaluate(
    dataset: Annotated[str | None, o.option(f"Data set or imagefolder:PATH ({RUNS}).", o.DATA)] = None,
    classes: Annotated[str | None, o.option(f"Class subset: 0-4 or 5,7,9 ({RUNS}).", o.DATA)] = None,
    limit_test: Annotated[int | None, o.option(f"A seeded subset of N test images ({RUNS}).", o.DATA)] = None,
    data_dir: o.DataDir = None,
    download: o.Download = False,
    checkpoint: o.Checkpoint = ...,
    model: o.ModelName = None,
    input_size: o.InputSize = None,
    mean: o.Mean = None,
    std: o.Std = None,
    eps: Annotated[str | None, o.option(f"Budget: 0.03 or 8/255 ({RUNS}, else 8/255).", o.ATTACK)] = None,
    norm: Annotated[str | None, o.option(f"Linf or L2 ({RUNS}, else Linf).", o.ATTACK)] = None,
    attacks: Annotated[str, o.option("Comma-separated: clean, pgd, autoattack, corruptions.", EVAL)] = "clean,pgd",
    pgd_steps: Annotated[int, o.option("PGD steps (step size eps/4, random start).", EVAL)] = 20,
    pgd_restarts: Annotated[int, o.option("PGD restarts; each example keeps its worst.", EVAL)] = 1,
    autoattack_version: o.AutoAttackVersion = "standard",
    autoattack_n: o.AutoAttackN = None,
    autoattack_state: Annotated[Path | None, o.option("File that makes a long AutoAttack resumable.", EVAL)] = None,
    corruptions: Annotated[str | None, o.option("Corruption names (default: all that apply).", EVAL)] = None,
    json: Annotated[Path | None, o.option("Write the results as JSON here.", EVAL, "--json")] = None,
    batch_size: o.BatchSize = 256,
    seed: Annotated[int | None, o.option(f"Random seed of the subsets and attacks ({RUNS}, else 0).", o.RUN)] = None,
    device: o.Device = "auto",
    debug: o.Debug = False,
) -> None:
    """Measure a checkpoint's accuracy on a test split, every attack on the same images.

    A run directory is measured on its own data set, classes, test subset, seed, eps and norm.
    """
    given = {
        "dataset": dataset,
        "classes": classes,
        "limit_test": limit_test,
        "seed": seed,
        "eps": None if eps is None else o.parse_eps(eps),
        "norm": None if norm is None else o.parse_norm(norm),
    }
    settings, overrides = resolve_settings(checkpoint, given)
    if settings["dataset"] is None:
        load_classifier(checkpoint, architecture=model)  # a file that is no checkpoint at all says so first
        raise ConfigError("dataset", None, f"{checkpoint} records no data set: name one with --dataset")
    for line in overrides:
        warn(line)
    data = DataConfig(
        settings["dataset"],
        data_dir,
        download,
        settings["classes"],
        limit_test=settings["limit_test"],
        seed=settings["seed"],
    )
    config = EvalConfig(
        attacks=o.parse_list(attacks),
        threat=Threat.from_dict(settings),
        pgd_steps=pgd_steps,
        pgd_restarts=pgd_restarts,
        autoattack_version=autoattack_version,
        autoattack_n=autoattack_n,
        autoattack_state=autoattack_state,
        corruptions=o.parse_list(corruptions) or None,
        batch_size=batch_size,
        seed=settings["seed"],
    )
    spec = InputOverrides(input_size, o.parse_floats(mean, "mean"), o.parse_floats(std, "std"))
    progress = RichReporter().batches
    results = api.evaluate_checkpoint(
        checkpoint, data, config, architecture=model, overrides=spec, device=device, progress=progress
    )
    results["overrides"] = overrides
    out.print(accuracy_table(results, f"{results['architecture']} on {results['dataset']}"))
    out.print(settings_line(results), highlight=False)  # evaluate() has logged its warnings
    if json is not None:
        write_json(json, results)
        out.print(f"wrote {json}", highlight=False)
