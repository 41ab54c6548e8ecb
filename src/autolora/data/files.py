"""Images that stay on disk until a batch needs them: the streaming path for large sets.

``ImageFiles`` answers what the rest of the package asks of an ``ImageSet`` (labels, classes,
shape, subsets, float pixels) without holding the pixels; ``BatchLoader`` decodes, resizes and
augments its batches in DataLoader workers. Sets whose decoded pixels fit in ``STREAM_BYTES`` are
read into memory instead (``as_image_set``), which is faster for every epoch after the first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from .images import ImageSet

STREAM_BYTES = 1024**3  # decoded (uint8) sets larger than this stream from disk
GREY_MODES = ("L", "1", "I;16", "I")


def default_workers() -> int:
    """DataLoader workers for decoding: the machine's cores, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class ImageFiles:
    """Image files with labels, decoded to ``channels`` x ``size`` x ``size`` uint8 on demand."""

    paths: list[str]
    labels: Tensor
    classes: list[str]
    size: int
    channels: int = 3
    workers: int = field(default_factory=default_workers)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} files but {len(self.labels)} labels")
        self.labels = torch.as_tensor(self.labels).long()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.size, self.size

    @property
    def nbytes(self) -> int:
        """The size of the decoded set in memory."""
        return len(self) * self.channels * self.size**2

    def subset(self, index: Tensor) -> ImageFiles:
        paths = [self.paths[i] for i in index.tolist()]
        return ImageFiles(paths, self.labels[index], list(self.classes), self.size, self.channels, self.workers)

    def relabeled(self, labels: Tensor, classes: list[str]) -> ImageFiles:
        return ImageFiles(list(self.paths), labels, classes, self.size, self.channels, self.workers)

    def class_counts(self) -> Tensor:
        return torch.bincount(self.labels, minlength=self.num_classes)

    def decode(self, i: int) -> Tensor:
        """File ``i`` as uint8 pixels, resized (antialiased) to ``size`` x ``size``."""
        from PIL import Image
        from torchvision.transforms import functional as TF

        try:
            with Image.open(self.paths[i]) as image:
                image = image.convert("L" if self.channels == 1 else "RGB")
        except OSError as exc:
            raise DataError(f"cannot read image {self.paths[i]}: {exc}") from exc
        return TF.pil_to_tensor(TF.resize(image, [self.size, self.size], antialias=True))

    def floats(self, index: Tensor | slice | None = None) -> Tensor:
        """Images as float32 in [0, 1], decoded in this process (for small subsets)."""
        every = range(len(self))
        chosen = every if index is None else every[index] if isinstance(index, slice) else index.tolist()
        return torch.stack([self.decode(i) for i in chosen]).float().div_(255.0)

    def load(self) -> ImageSet:
        """Decode every file into an in-memory ``ImageSet`` (in DataLoader workers)."""
        loader = DataLoader(_Decoded(self), batch_size=256, num_workers=_workers(self), collate_fn=torch.stack)
        pixels = torch.cat(list(loader)) if len(self) else torch.zeros(0, *self.shape, dtype=torch.uint8)
        return ImageSet(pixels, self.labels, list(self.classes))


def _workers(files: ImageFiles) -> int:
    return min(files.workers, max(len(files) // 64, 0))  # a handful of files decodes faster in-process


class _Decoded(Dataset):
    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        return self.files.decode(i)


def as_image_set(files: ImageFiles, stream: bool | None = None) -> ImageSet | ImageFiles:
    """``files`` read into memory, or left on disk when ``stream`` (by default: above ``STREAM_BYTES``)."""
    if stream is None:
        stream = files.nbytes > STREAM_BYTES
    return files if stream else files.load()
