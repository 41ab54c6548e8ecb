"""What a run directory records about its data and threat model: the defaults for evaluating it.

``autolora evaluate --checkpoint RUN_DIR`` measures on the run's own data set, classes, test
subset, seed, eps and norm; a value the user gives overrides the record, and one that differs
from it is named in one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fileio import read_json
from .models.checkpoint import RUN_CONFIG
from .report.report import format_eps

DATA_FIELDS = ("dataset", "classes", "limit_test", "seed")  # from config.json's "data"
ATTACK_FIELDS = ("eps", "norm", "relative_step")  # from config.json's "training.threat" ("training.attack" before 0.2)
DEFAULTS: dict[str, Any] = {"dataset": None, "classes": None, "limit_test": None, "seed": 0, "eps": 8 / 255,
                            "norm": "Linf", "relative_step": 0.25}  # fmt: skip


def recorded_threat(config: Mapping[str, Any]) -> dict[str, Any]:
    """The threat model a run's ``config.json`` records (``training.threat``; older runs: ``training.attack``)."""
    training = config.get("training") or {}
    return training.get("threat") or training.get("attack") or {}


def recorded_settings(checkpoint: str | Path) -> dict[str, Any]:
    """The settings a run directory's ``config.json`` records; empty for a weights file."""
    path = Path(checkpoint) / RUN_CONFIG
    if not path.is_file():
        return {}
    try:
        config = read_json(path)
    except (OSError, ValueError):
        return {}  # loading the checkpoint reports the broken file
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    threat = recorded_threat(config)
    return {k: data[k] for k in DATA_FIELDS if k in data} | {k: threat[k] for k in ATTACK_FIELDS if k in threat}


def _same(a: Any, b: Any) -> bool:
    return math.isclose(a, b, rel_tol=1e-9) if isinstance(a, float) and isinstance(b, float) else a == b


def _show(key: str, value: Any) -> str:
    if value is None:
        return {"classes": "all classes", "limit_test": "the whole test split"}.get(key, "none")
    return format_eps(value) if key == "eps" else str(value)


def resolve_settings(checkpoint: str | Path, given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``given`` (None: not given) over the run's record over :data:`DEFAULTS`.

    Returns the settings and one line for each given value that differs from the record.
    """
    recorded = recorded_settings(checkpoint)
    chosen = {k: v for k, v in given.items() if v is not None}
    overrides = [
        f"--{key.replace('_', '-')} {_show(key, value)} overrides what the run recorded: {_show(key, recorded[key])}"
        for key, value in chosen.items()
        if key in recorded and not _same(value, recorded[key])
    ]
    return DEFAULTS | recorded | chosen, overrides
