"""Fit images to a model's input spec: resize, and grey <-> RGB."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from ..inputs import InputSpec

MAX_SCALE = 8.0
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class InputAdapter:
    """Maps C x H x W batches of one data set onto a model's ``InputSpec``.

    Grey images become RGB by repetition and RGB images grey by luminance; sizes are
    changed by antialiased bilinear resizing. Shapes that would need more than an
    8x change of scale per side, or other channel counts, are refused.
    """

    source: tuple[int, int, int]
    target: InputSpec

    def __post_init__(self) -> None:
        channels, height, width = self.source
        if channels not in (1, 3):
            raise DataError(f"images with {channels} channels cannot be adapted; expected 1 (grey) or 3 (RGB)")
        scale = max(self.target.size / min(height, width), max(height, width) / self.target.size)
        if scale > MAX_SCALE:
            raise DataError(
                f"{height}x{width} images cannot be adapted to the model's {self.target.size}x{self.target.size} "
                f"input (a {scale:.0f}x change of scale; at most {MAX_SCALE:.0f}x is allowed); "
                "choose a model whose input size is closer to the data"
            )

    @property
    def is_identity(self) -> bool:
        channels, height, width = self.source
        return channels == self.target.channels and height == width == self.target.size

    def __call__(self, batch: Tensor) -> Tensor:
        if batch.shape[1] != self.target.channels:
            if self.target.channels == 3:
                batch = batch.expand(-1, 3, -1, -1)
            else:
                luma = torch.tensor(_LUMA, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
                batch = (batch * luma).sum(dim=1, keepdim=True)
        size = self.target.size
        if batch.shape[-2:] != (size, size):
            batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            batch = batch.clamp_(0.0, 1.0)
        return batch.contiguous()
