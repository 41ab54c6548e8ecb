"""A run directory: what a training run writes, and the refusal to clobber another run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fileio import write_text
from ..models.checkpoint import RUN_CONFIG, RUN_WEIGHTS

STATE = "train_state.safetensors"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CURVES = "curves.png"
SNAPSHOTS = "snapshots"
BRANCH = "branch.safetensors"  # an AutoLoRa snapshot's low-rank branch, beside its plain model
AUTOATTACK_STATE = "autoattack_state.json"  # lets an interrupted final AutoAttack evaluation resume


class RunDirectory:
    """The files of one run under ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def state(self) -> Path:
        return self.path / STATE

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in (STATE, METRICS, RUN_CONFIG, RUN_WEIGHTS, SUMMARY))

    def open(self, *, resume: bool = False, overwrite: bool = False) -> bool:
        """Create the directory; returns True when there is a run to resume.

        A directory that holds a run is refused unless ``resume`` (continue it) or
        ``overwrite`` (remove its run files first) is given.
        """
        self._create()
        if resume and self.state.exists():
            return True
        if self.holds_run() and not resume:
            if not overwrite:
                raise ConfigError(
                    "out",
                    str(self.path),
                    "it already holds a run; pass --resume to continue it or --overwrite to replace it",
                )
            self._clear()
        return False

    def _create(self) -> None:
        for parent in [self.path, *self.path.parents]:
            if parent.exists() and not parent.is_dir():
                raise ConfigError("out", str(self.path), f"{parent} is a file, not a directory; choose another path")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("out", str(self.path), f"cannot create it ({exc.strerror})") from None

    def _clear(self) -> None:
        for name in (STATE, METRICS, RUN_CONFIG, RUN_WEIGHTS, SUMMARY, CURVES, AUTOATTACK_STATE):
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / SNAPSHOTS, ignore_errors=True)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` atomically: each epoch exactly once, even after a resume."""
        write_text(self.file(METRICS), "".join(json.dumps(row) + "\n" for row in rows))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
