"""An in-memory labelled image set: the one data structure every command consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ImageSet:
    """Images (N x C x H x W, uint8 in [0, 255] or float in [0, 1]) and integer labels."""

    pixels: Tensor
    labels: Tensor
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.pixels.ndim != 4:
            raise ValueError(f"pixels must be N x C x H x W, got shape {tuple(self.pixels.shape)}")
        if len(self.pixels) != len(self.labels):
            raise ValueError(f"{len(self.pixels)} images but {len(self.labels)} labels")
        self.labels = self.labels.long()
        if not self.classes:
            count = int(self.labels.max()) + 1 if len(self.labels) else 0
            self.classes = [str(c) for c in range(count)]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Channels, height, width of one image."""
        _, c, h, w = self.pixels.shape
        return c, h, w

    def subset(self, index: Tensor) -> ImageSet:
        return ImageSet(self.pixels[index], self.labels[index], list(self.classes))

    def relabeled(self, labels: Tensor, classes: list[str]) -> ImageSet:
        return ImageSet(self.pixels, labels, classes)

    def floats(self, index: Tensor | slice | None = None) -> Tensor:
        """Images as float32 in [0, 1]."""
        pixels = self.pixels if index is None else self.pixels[index]
        if pixels.dtype == torch.uint8:
            return pixels.float().div_(255.0)
        return pixels.float()

    def class_counts(self) -> Tensor:
        return torch.bincount(self.labels, minlength=self.num_classes)


@dataclass
class DataSplits:
    """The train and test parts of a named data set (validation is carved from train later)."""

    name: str
    train: ImageSet
    test: ImageSet
    augment: bool = False

    @property
    def num_classes(self) -> int:
        return self.train.num_classes
