"""Options shared by several commands, declared once, and the parsers behind them."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Annotated

import typer

from ..attacks import Threat
from ..errors import ConfigError


def parse_eps(text: str) -> float:
    """``8/255`` or ``0.03`` -> a float in [0, 1]."""
    try:
        value = float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError("eps", text, "write a number like 0.1 or a fraction like 8/255") from None
    if not 0.0 <= value <= 1.0 or value != value:
        raise ConfigError("eps", text, "use a budget in [0, 1] for images in [0, 1] (e.g. 8/255)")
    return value


def parse_floats(text: str | None, field: str) -> tuple[float, ...] | None:
    """``0.5,0.5,0.5`` -> a tuple of floats."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(field, text, "write comma-separated numbers, one per channel") from None


def parse_threat(eps: str, norm: str) -> Threat:
    """``--eps`` and ``--norm`` -> the threat model every attack of the command uses."""
    return Threat(parse_eps(eps), norm)


def parse_list(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else ()


Seed = Annotated[int, typer.Option(help="Random seed (data order, splits, attacks, initialisation).")]
Device = Annotated[str, typer.Option(help="Where to compute: auto (CUDA when present), cpu or cuda.")]
DataDir = Annotated[
    Path | None,
    typer.Option(help="Folder holding data sets (default: $AUTOLORA_DATA or ~/.cache/autolora/data)."),
]
Download = Annotated[bool, typer.Option("--download", help="Allow torchvision to download a missing data set.")]
Dataset = Annotated[str, typer.Option(help="Data set name (see `autolora datasets`) or imagefolder:PATH.")]
Classes = Annotated[str | None, typer.Option(help="Class subset, relabelled 0..k-1: e.g. 0-4 or 5,7,9.")]
LimitTrain = Annotated[int | None, typer.Option(help="Use a seeded, stratified subset of N training images.")]
LimitTest = Annotated[int | None, typer.Option(help="Use a seeded, stratified subset of N test images.")]
ValFraction = Annotated[float, typer.Option(help="Fraction of the training set held out for validation.")]
ValMin = Annotated[int, typer.Option(help="Validation images at least (at most half the training set).")]
Eps = Annotated[str, typer.Option(help="Attack budget for images in [0, 1]: a float or a fraction like 8/255.")]
Norm = Annotated[str, typer.Option(help="Threat model: Linf or L2.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")]
Checkpoint = Annotated[
    Path,
    typer.Option(
        help="A run directory, a weights file (.safetensors, .pt/.pth loaded with weights_only), a timm hub "
        "snapshot directory, or robustbench:DATASET/THREAT/NAME."
    ),
]
ModelName = Annotated[
    str | None,
    typer.Option("--model", help="Registry architecture or timm:NAME; checked against (or needed by) the checkpoint."),
]
ModelDir = Annotated[
    Path | None,
    typer.Option(help="RobustBench model directory (default: $AUTOLORA_MODEL_DIR or ~/.cache/autolora/models)."),
]
InputSize = Annotated[int | None, typer.Option(help="Override the checkpoint's input size in pixels.")]
Mean = Annotated[str | None, typer.Option(help="Override the input normalisation mean, e.g. 0.485,0.456,0.406.")]
Std = Annotated[str | None, typer.Option(help="Override the input normalisation std, e.g. 0.229,0.224,0.225.")]
Out = Annotated[Path, typer.Option(help="Run directory to write.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last completed epoch.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a run already in --out.")]
BatchSize = Annotated[int, typer.Option(help="Mini-batch size (global, over all processes).")]
AttackSteps = Annotated[int, typer.Option("--attack-steps", "--steps", help="PGD steps of the training attack.")]
AutoAttackVersion = Annotated[
    str, typer.Option(help="standard (APGD-CE, APGD-T, FAB-T, Square) or fast (APGD-CE + APGD-T, smoke runs only).")
]
AutoAttackN = Annotated[int | None, typer.Option(help="Run AutoAttack on a seeded subset of N test images.")]
Precision = Annotated[str, typer.Option(help="fp32, or bf16 autocast for training steps (CUDA; eval stays fp32).")]
ChannelsLast = Annotated[
    bool,
    typer.Option("--channels-last/--no-channels-last", help="The channels_last memory format (faster, also on CPUs)."),
]
Augment = Annotated[
    bool | None, typer.Option("--augment/--no-augment", help="Random crop + flip (default: per data set).")
]
