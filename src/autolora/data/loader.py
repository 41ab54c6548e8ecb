"""Batches from an in-memory image set, adapted to the model and kept on its device."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..inputs import InputSpec
from .adapt import InputAdapter
from .files import ImageFiles
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


@dataclass(frozen=True)
class Crops:
    """One batch part's augmentation: zero padding ``pad``, crop offsets and horizontal flips."""

    pad: int
    dy: list[int]
    dx: list[int]
    flip: list[bool]

    def key(self, i: int) -> tuple[int, int, int, bool]:
        return self.pad, self.dy[i], self.dx[i], self.flip[i]


class BatchLoader:
    """Yields ``(images, labels)`` on ``device``: float images in [0, 1] fitted to ``spec``.

    Shuffling and augmentation (random crop with 1/8 padding, horizontal flip) draw from a
    generator seeded by ``(seed, epoch)``, so an epoch's batches depend on nothing else and
    a resumed run sees exactly the batches an uninterrupted one would. Under a ``Shard``
    every process takes a contiguous slice of the same global batch, augmented exactly as a
    single process would augment it. A last batch smaller than ``min_batch`` is skipped.
    Images still on disk (``ImageFiles``) are decoded, fitted and augmented in DataLoader
    workers, into the same batches an in-memory copy of them would give.
    """

    def __init__(
        self,
        images: ImageSet | ImageFiles,
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

    @property
    def streaming(self) -> bool:
        return isinstance(self.images, ImageFiles)

    def _cache(self) -> Tensor | None:
        spec = self.adapter.target
        if self.streaming or len(self.images) * spec.channels * spec.size**2 * 4 > CACHE_BYTES:
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
        plan = self._plan(epoch)
        pixels = self._stream(plan) if self.streaming else (self._in_memory(index, crops) for _, index, crops in plan)
        for (info, index, _), x in zip(plan, pixels, strict=True):
            yield x, self.labels[index.to(self.labels.device)], info

    def _plan(self, epoch: int) -> list[tuple[BatchInfo, Tensor, Crops | None]]:
        """Every batch of the epoch: where it sits, this process's indices and its augmentation."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.images)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        plan = []
        for number, start in enumerate(range(0, n, self.batch_size)):
            batch = order[start : start + self.batch_size]
            if len(batch) < self.min_batch:
                break  # a last batch too small to train on (see min_batch)
            part = self.shard.part(len(batch))
            crops = draw_crops(generator, self.adapter.target.size, len(batch), part) if self.augment else None
            plan.append((BatchInfo(number, len(batch), part), batch[part], crops))
        return plan

    def _in_memory(self, index: Tensor, crops: Crops | None) -> Tensor:
        x = self.fetch(index)
        return apply_crops(x, crops) if crops is not None else x

    def _stream(self, plan: list[tuple[BatchInfo, Tensor, Crops | None]]) -> Iterator[Tensor]:
        keys = [
            [(int(i), crops.key(j) if crops is not None else None) for j, i in enumerate(index)]
            for _, index, crops in plan
        ]
        dataset = _Fitted(self.images, self.adapter)
        workers = self.images.workers
        cuda = self.device.type == "cuda"
        loader = DataLoader(dataset, batch_sampler=keys, num_workers=workers, collate_fn=torch.stack, pin_memory=cuda)
        for x in loader:
            yield x.to(self.device, non_blocking=cuda)

    def batches(self, epoch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of one epoch (this process's part of each)."""
        for x, y, _ in self.parts(epoch):
            yield x, y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.batches(0)


class _Fitted(Dataset):
    """Files decoded, fitted to the model's input and cropped, one per key ``(index, crop)``."""

    def __init__(self, files: ImageFiles, adapter: InputAdapter) -> None:
        self.files, self.adapter = files, adapter

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, tuple[int, int, int, bool] | None]) -> Tensor:
        index, crop = key
        x = self.adapter(self.files.decode(index).unsqueeze(0).float().div_(255.0))[0]
        return crop_one(x, *crop) if crop is not None else x


def draw_crops(generator: torch.Generator, size: int, global_size: int, part: slice = slice(None)) -> Crops:
    """Crop offsets and flips for the images of ``part`` of a global batch (the draws cover all of it)."""
    pad = max(1, size // 8)
    dy = torch.randint(0, 2 * pad + 1, (global_size,), generator=generator)[part].tolist()
    dx = torch.randint(0, 2 * pad + 1, (global_size,), generator=generator)[part].tolist()
    flip = (torch.rand(global_size, generator=generator) < 0.5)[part].tolist()
    return Crops(pad, dy, dx, flip)


def apply_crops(x: Tensor, crops: Crops) -> Tensor:
    """Each image of ``x`` zero-padded by ``crops.pad``, cropped back to its size at its offset, maybe flipped."""
    n, _, h, w = x.shape
    padded = F.pad(x, (crops.pad,) * 4)
    windows = [padded[i, :, crops.dy[i] : crops.dy[i] + h, crops.dx[i] : crops.dx[i] + w] for i in range(n)]
    cropped = torch.stack(windows)
    flip = torch.tensor(crops.flip, device=x.device).view(-1, 1, 1, 1)
    return torch.where(flip, cropped.flip(-1), cropped)


def crop_one(x: Tensor, pad: int, dy: int, dx: int, flip: bool) -> Tensor:
    """``apply_crops`` for one C x H x W image (in a DataLoader worker)."""
    return apply_crops(x.unsqueeze(0), Crops(pad, [dy], [dx], [flip]))[0]


def augment_batch(
    x: Tensor, generator: torch.Generator, global_size: int | None = None, part: slice = slice(None)
) -> Tensor:
    """Random crop (zero padding of 1/8 of the side) and horizontal flip, per image.

    The random draws cover the whole global batch (``global_size``); ``x`` is its ``part``.
    """
    return apply_crops(x, draw_crops(generator, x.shape[-2], global_size or len(x), part))
