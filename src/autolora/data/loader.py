"""Batches from an in-memory image set, adapted to the model and kept on its device."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..inputs import InputSpec
from .adapt import InputAdapter
from .images import ImageSet

# Data sets whose adapted float copy is at most this large are adapted once and kept
# on the device; larger ones are adapted batch by batch.
CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Shard:
    """This process's part of every global batch under torch.distributed."""

    rank: int = 0
    world_size: int = 1

    def part(self, size: int) -> slice:
        """The contiguous slice of a global batch of ``size`` examples that this process takes."""
        return slice(self.rank * size // self.world_size, (self.rank + 1) * size // self.world_size)


@dataclass(frozen=True)
class BatchInfo:
    """Where a batch sits: its index in the epoch, the global batch size and this process's part."""

    index: int
    global_size: int
    part: slice


class BatchLoader:
    """Yields ``(images, labels)`` on ``device``: float images in [0, 1] fitted to ``spec``.

    Shuffling and augmentation (random crop with 1/8 padding, horizontal flip) draw from a
    generator seeded by ``(seed, epoch)``, so an epoch's batches depend on nothing else and
    a resumed run sees exactly the batches an uninterrupted one would. Under a ``Shard``
    every process takes a contiguous slice of the same global batch, augmented exactly as a
    single process would augment it. A last batch smaller than ``min_batch`` is skipped.
    """

    def __init__(
        self,
        images: ImageSet,
        spec: InputSpec,
        batch_size: int,
        device: torch.device,
        *,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        shard: Shard = Shard(),
        min_batch: int = 1,
    ) -> None:
        self.images = images
        self.adapter = InputAdapter(images.shape, spec)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.shard = shard
        self.min_batch = min_batch
        self.labels = images.labels.to(device)
        self._cached = self._cache()

    def _cache(self) -> Tensor | None:
        spec = self.adapter.target
        if len(self.images) * spec.channels * spec.size**2 * 4 > CACHE_BYTES:
            return None
        chunks = [
            self.adapter(self.images.floats(slice(i, i + 1024)).to(self.device))
            for i in range(0, len(self.images), 1024)
        ]
        return torch.cat(chunks) if chunks else None

    def __len__(self) -> int:
        full, rest = divmod(len(self.images), self.batch_size)
        return full + (1 if rest >= max(self.min_batch, 1) else 0)

    def fetch(self, index: Tensor) -> Tensor:
        if self._cached is not None:
            return self._cached[index.to(self._cached.device)]
        return self.adapter(self.images.floats(index).to(self.device))

    def parts(self, epoch: int = 0) -> Iterator[tuple[Tensor, Tensor, BatchInfo]]:
        """This process's part of each batch of one epoch, in a deterministic order for ``(seed, epoch)``."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.images)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        for number, start in enumerate(range(0, n, self.batch_size)):
            batch = order[start : start + self.batch_size]
            if len(batch) < self.min_batch:
                break  # a last batch too small to train on (see min_batch)
            part = self.shard.part(len(batch))
            x = self.fetch(batch[part])
            if self.augment:
                x = augment_batch(x, generator, len(batch), part)
            yield x, self.labels[batch[part].to(self.labels.device)], BatchInfo(number, len(batch), part)

    def batches(self, epoch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of one epoch (this process's part of each)."""
        for x, y, _ in self.parts(epoch):
            yield x, y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.batches(0)


def augment_batch(
    x: Tensor, generator: torch.Generator, global_size: int | None = None, part: slice = slice(None)
) -> Tensor:
    """Random crop (zero padding of 1/8 of the side) and horizontal flip, per image.

    The random draws cover the whole global batch (``global_size``); ``x`` is its ``part``.
    """
    n, _, h, w = x.shape
    size = global_size or n
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (size,), generator=generator)[part].tolist()
    dx = torch.randint(0, 2 * pad + 1, (size,), generator=generator)[part].tolist()
    flip = (torch.rand(size, generator=generator) < 0.5)[part]
    crops = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), crops.flip(-1), crops)
