"""From a data config to the train / validation / test image sets a run uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .images import ImageSet
from .selection import limit, parse_classes, select_classes, split_validation
from .sources import SourceOptions, load_splits


@dataclass(frozen=True)
class DataConfig:
    """Which data a run uses; validated where it is built."""

    dataset: str
    data_dir: Path | None = None
    download: bool = False
    classes: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    val_fraction: float = 0.05
    val_min: int = 100
    augment: bool | None = None  # None: the data set's default
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ConfigError("dataset", self.dataset, "name a data set (see `autolora datasets`)")
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(name.replace("_", "-"), value, "use a positive number of images, or leave it out")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ConfigError("val-fraction", self.val_fraction, "use a fraction in [0, 0.5)")
        if self.val_min < 0:
            raise ConfigError("val-min", self.val_min, "use a non-negative number of images")
        if self.classes is not None:
            parse_classes(self.classes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["data_dir"] = str(self.data_dir) if self.data_dir else None
        return data


@dataclass
class PreparedData:
    """Train, validation and test sets of one data set, with its class names."""

    name: str
    train: ImageSet
    val: ImageSet | None
    test: ImageSet
    augment: bool

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val) if self.val else 0, "test": len(self.test)}


def prepare_data(config: DataConfig, *, validation: bool = True, image_size: int | None = None) -> PreparedData:
    """Load, subset, limit and split the data set ``config`` names.

    The class subset is applied first, then the seeded limits, then the validation split
    is held out of the (limited) training set. The test split is never touched by choices.
    """
    splits = load_splits(config.dataset, SourceOptions(config.data_dir, config.download, image_size))
    train, test = splits.train, splits.test
    if config.classes is not None:
        chosen = parse_classes(config.classes)
        train, test = select_classes(train, chosen), select_classes(test, chosen)
    train = limit(train, config.limit_train, config.seed, "limit-train")
    test = limit(test, config.limit_test, config.seed, "limit-test")
    val = None
    if validation and config.val_fraction > 0:
        train, val = split_validation(train, config.val_fraction, config.val_min, config.seed)
    augment = splits.augment if config.augment is None else config.augment
    return PreparedData(splits.name, train, val, test, augment)
