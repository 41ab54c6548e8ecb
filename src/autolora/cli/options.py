"""Options shared by several commands, declared once, and the parsers behind them."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer

from ..attacks import Threat
from ..errors import ConfigError
from ..shipped import resolve_checkpoint


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
    return Threat(parse_eps(eps), parse_norm(norm))


def parse_list(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else ()


def parse_norm(text: str) -> str:
    """``Linf`` or ``L2`` (any case)."""
    norm = {"linf": "Linf", "l2": "L2"}.get(text.strip().lower())
    if norm is None:
        raise ConfigError("norm", text, "choose Linf or L2")
    return norm


# The help panels that group every command's options, in the order the commands show them.
DATA, MODEL, METHOD, ATTACK, EVALUATION, RUN = "Data", "Model", "Method", "Attack", "Evaluation", "Run"


def option(help: str, panel: str, *names: str) -> Any:
    """An option (or flag) in help panel ``panel``."""
    return typer.Option(*names, help=help, rich_help_panel=panel)


Dataset = Annotated[str, option("Data set (`autolora datasets`) or imagefolder:PATH.", DATA)]
Classes = Annotated[str | None, option("Class subset, relabelled 0..k-1: 0-4 or 5,7,9.", DATA)]
LimitTrain = Annotated[int | None, option("A seeded, stratified subset of N training images.", DATA)]
LimitTest = Annotated[int | None, option("A seeded, stratified subset of N test images.", DATA)]
ValFraction = Annotated[float, option("Fraction of the training set held out for validation.", DATA)]
ValMin = Annotated[int, option("At least this many validation images (at most half).", DATA)]
Augment = Annotated[bool | None, option("Random crop + flip (default: per data set).", DATA, "--augment/--no-augment")]
DataDir = Annotated[Path | None, option("Data folder (default: $AUTOLORA_DATA or ~/.cache/autolora).", DATA)]
Download = Annotated[bool, option("Let torchvision download a missing data set.", DATA, "--download")]

Checkpoint = Annotated[
    Path,
    typer.Option(
        help="A run directory, a shipped name (`autolora checkpoints`), a .safetensors/.pt file, a timm hub "
        "folder or robustbench:DATASET/THREAT/NAME.",
        rich_help_panel=MODEL,
        callback=resolve_checkpoint,
    ),
]
ModelName = Annotated[
    str | None, option("Architecture (`autolora models`) or timm:NAME, checked or supplied.", MODEL, "--model")
]
ModelDir = Annotated[
    Path | None, option("RobustBench model folder (default: $AUTOLORA_MODEL_DIR or ~/.cache/autolora/models).", MODEL)
]
InputSize = Annotated[int | None, option("The model's input size in pixels.", MODEL)]
Mean = Annotated[str | None, option("Input normalisation mean, e.g. 0.485,0.456,0.406.", MODEL)]
Std = Annotated[str | None, option("Input normalisation std, e.g. 0.229,0.224,0.225.", MODEL)]

Eps = Annotated[str, option("Budget for [0, 1] images: 0.03 or 8/255.", ATTACK)]
Norm = Annotated[str, option("Threat model: Linf or L2.", ATTACK)]
AttackSteps = Annotated[int, option("PGD steps of the training attack.", ATTACK, "--attack-steps")]

AutoAttackVersion = Annotated[str, option("standard, or fast (APGD-CE + APGD-T: smoke runs only).", EVALUATION)]
AutoAttackN = Annotated[int | None, option("AutoAttack on a seeded subset of N test images.", EVALUATION)]

Out = Annotated[Path, option("Run directory to write.", RUN)]
Resume = Annotated[bool, option("Continue the run in --out after its last epoch.", RUN, "--resume")]
Overwrite = Annotated[bool, option("Replace a run already in --out.", RUN, "--overwrite")]
BatchSize = Annotated[int, option("Mini-batch size (global, over all processes).", RUN)]
Precision = Annotated[str, option("fp32, or bf16 autocast for training (CUDA).", RUN)]
ChannelsLast = Annotated[
    bool, option("channels_last memory format (faster, also on CPUs).", RUN, "--channels-last/--no-channels-last")
]
Compile = Annotated[
    bool, option("torch.compile the model for training (minutes to compile).", RUN, "--compile/--no-compile")
]
Seed = Annotated[int, option("Random seed: data order, splits, attacks, initialisation.", RUN)]
Device = Annotated[str, option("auto (CUDA when present), cpu or cuda.", RUN)]
Debug = Annotated[bool, option("Show the full traceback of an error.", RUN, "--debug")]
