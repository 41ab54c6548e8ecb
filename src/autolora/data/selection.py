"""Class subsets, seeded stratified limits and the train/validation split."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .images import ImageSet


def parse_classes(text: str) -> list[int]:
    """Parse ``"0-4"``, ``"5,7,9"`` or ``"0-2,7"`` into a list of distinct class indices."""
    classes: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                if high < low:
                    raise ValueError
                classes.extend(range(low, high + 1))
            else:
                classes.append(int(part))
    except ValueError:
        raise ConfigError("classes", text, "write a range like 0-4 or a list like 5,7,9") from None
    if len(set(classes)) != len(classes) or any(c < 0 for c in classes):
        raise ConfigError("classes", text, "list each non-negative class index once")
    if len(classes) < 2:
        raise ConfigError("classes", text, "a classifier needs at least two classes")
    return classes


def _as_ranges(indices: list[int]) -> str:
    """Write sorted class indices the way ``parse_classes`` reads them: ``[3, 10, 11, 12]`` -> ``"3,10-12"``."""
    runs: list[list[int]] = []
    for index in sorted(indices):
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def select_classes(images: ImageSet, classes: list[int]) -> ImageSet:
    """Keep only ``classes`` and relabel them 0..k-1 in the order given."""
    missing = [c for c in classes if c >= images.num_classes]
    if missing:
        raise ConfigError("classes", _as_ranges(missing), f"the data set has classes 0-{images.num_classes - 1}")
    relabel = torch.full((images.num_classes,), -1, dtype=torch.long)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    keep = torch.nonzero(relabel[images.labels] >= 0).flatten()
    subset = images.subset(keep)
    return subset.relabeled(relabel[subset.labels], [images.classes[c] for c in classes])


def _stratified_indices(labels: torch.Tensor, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``count`` indices, stratified by label where every class can be represented."""
    from sklearn.model_selection import train_test_split

    n = len(labels)
    index = np.arange(n)
    y = labels.numpy()
    _, class_sizes = np.unique(y, return_counts=True)
    can_stratify = class_sizes.min() >= 2 and len(class_sizes) <= count <= n - len(class_sizes)
    chosen, rest = train_test_split(
        index, train_size=count, random_state=seed, stratify=y if can_stratify else None, shuffle=True
    )
    return np.sort(chosen), np.sort(rest)


def limit(images: ImageSet, count: int | None, seed: int, field: str = "limit") -> ImageSet:
    """A seeded, stratified subset of ``count`` images (all of them if ``count`` is None or larger)."""
    if count is None or count >= len(images):
        return images
    if count <= 0:
        raise ConfigError(field, count, "use a positive number of images (or leave it out for all)")
    chosen, _ = _stratified_indices(images.labels, count, seed)
    return images.subset(torch.from_numpy(chosen))


def validation_size(n: int, fraction: float, minimum: int) -> int:
    """``fraction`` of ``n`` but at least ``minimum``, leaving at least half for training."""
    return min(max(math.ceil(fraction * n), minimum), n // 2)


def split_validation(
    images: ImageSet, fraction: float = 0.05, minimum: int = 100, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """Hold out a seeded, stratified validation split: returns ``(train, validation)``."""
    size = validation_size(len(images), fraction, minimum)
    if size < 1 or len(images) - size < 1:
        raise DataError(f"{len(images)} training images are too few to hold out a validation split")
    val_idx, train_idx = _stratified_indices(images.labels, size, seed)
    return images.subset(torch.from_numpy(train_idx)), images.subset(torch.from_numpy(val_idx))
