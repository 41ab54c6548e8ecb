"""Helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autolora.data import ImageSet

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def random_images(n: int = 32, channels: int = 1, size: int = 28, classes: int = 10, seed: int = 0) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, channels, size, size, generator=generator)
    labels = torch.arange(n) % classes
    return ImageSet(pixels, labels, [str(c) for c in range(classes)])


needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
