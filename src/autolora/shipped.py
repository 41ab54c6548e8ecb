"""Checkpoints shipped inside the package: nameable wherever a checkpoint path is expected."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .fileio import read_json
from .models.checkpoint import RUN_CONFIG

EVALUATION = "evaluation.json"


def shipped_root() -> Path:
    return Path(str(resources.files("autolora") / "checkpoints"))


@dataclass(frozen=True)
class ShippedCheckpoint:
    """A run directory inside the package, with its recorded model, data and test evaluation."""

    name: str
    path: Path

    @property
    def config(self) -> dict[str, Any]:
        return read_json(self.path / RUN_CONFIG)

    @property
    def evaluation(self) -> dict[str, Any]:
        file = self.path / EVALUATION
        return read_json(file) if file.is_file() else {}


def shipped_checkpoints() -> list[ShippedCheckpoint]:
    """Every shipped checkpoint, by name."""
    folders = sorted(p for p in shipped_root().iterdir() if (p / RUN_CONFIG).is_file())
    return [ShippedCheckpoint(p.name, p) for p in folders]


def resolve_checkpoint(path: Path) -> Path:
    """``path`` when it exists; else the shipped checkpoint of that name, if there is one; else ``path``."""
    if path.exists() or len(path.parts) != 1:
        return path
    return next((c.path for c in shipped_checkpoints() if c.name == path.name), path)
