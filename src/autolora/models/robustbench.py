"""RobustBench's model zoo as a source of robust models: ``robustbench:DATASET/THREAT/NAME``.

The zoo keeps each model as ``MODEL_DIR/DATASET/THREAT/NAME.pt`` (``robustbench.utils.load_model``'s
layout). A file already there is read like any other checkpoint, with no network and without the
``robustbench`` package; a missing one is downloaded through the package (``pip install -e
'.[robustbench]'``) where a network is reachable. ImageNet entries get the zoo's input: 224 px and
ImageNet statistics (the zoo wraps them in a normaliser that is not in the file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError
from ..inputs import IMAGENET_MEAN, IMAGENET_STD
from .checkpoint import ZOO_PREFIX, InputOverrides

DATASETS = ("cifar10", "cifar100", "imagenet")
THREATS = ("Linf", "L2", "corruptions")


def default_model_dir() -> Path:
    """``$AUTOLORA_MODEL_DIR``, else ``~/.cache/autolora/models``."""
    return Path(os.environ.get("AUTOLORA_MODEL_DIR", Path.home() / ".cache" / "autolora" / "models"))


@dataclass(frozen=True)
class ZooModel:
    """One entry of the zoo: ``robustbench:imagenet/Linf/Salman2020Do_R50``."""

    dataset: str
    threat: str
    name: str

    @classmethod
    def parse(cls, source: str) -> ZooModel:
        parts = source.removeprefix(ZOO_PREFIX).split("/")
        if len(parts) != 3 or not all(parts) or parts[0] not in DATASETS or parts[1] not in THREATS:
            raise CheckpointError(
                f"{source!r} is not a RobustBench entry; write robustbench:DATASET/THREAT/NAME with DATASET in "
                f"{', '.join(DATASETS)} and THREAT in {', '.join(THREATS)} "
                "(e.g. robustbench:imagenet/Linf/Salman2020Do_R50)"
            )
        return cls(*parts)

    def __str__(self) -> str:
        return f"{ZOO_PREFIX}{self.dataset}/{self.threat}/{self.name}"

    def file(self, model_dir: Path) -> Path:
        return Path(model_dir) / self.dataset / self.threat / f"{self.name}.pt"

    def overrides(self, given: InputOverrides) -> InputOverrides:
        """The zoo's input for ImageNet entries, where the user gave none."""
        if self.dataset != "imagenet":
            return given
        return InputOverrides(given.size or 224, given.mean or IMAGENET_MEAN, given.std or IMAGENET_STD)


def fetch(zoo: ZooModel, model_dir: Path) -> Path:
    """The zoo's file for ``zoo`` under ``model_dir``, downloaded through ``robustbench`` if missing."""
    path = zoo.file(model_dir)
    if path.is_file():
        return path
    try:
        from robustbench.utils import load_model
    except ImportError:
        raise CheckpointError(
            f"{zoo} is not in {model_dir}: put its file at {path}, or install the robustbench extra "
            "(pip install -e '.[robustbench]') to download it"
        ) from None
    try:
        load_model(zoo.name, model_dir=str(model_dir), dataset=zoo.dataset, threat_model=zoo.threat)
    except Exception as exc:  # noqa: BLE001 - network, gdrive and zoo errors all end the same way
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"could not download {zoo} ({first}); put its file at {path}") from None
    if not path.is_file():
        raise CheckpointError(
            f"robustbench keeps {zoo} outside its model directory (a timm-hosted or ensemble entry); "
            f"save its state dict at {path}"
        )
    return path
