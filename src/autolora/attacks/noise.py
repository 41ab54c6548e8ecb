"""Random starts that do not depend on how a global batch is split over processes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class BatchNoise:
    """Random numbers drawn for the whole global batch, then cut to this process's part.

    Every process seeds the same generator for a batch (``begin``) and draws values for
    all ``global_size`` examples, so example *i* of a global batch gets the same random
    start whether one process trains or several do.
    """

    seed: int
    global_size: int = 0
    part: slice = field(default_factory=lambda: slice(None))
    _generator: torch.Generator = field(default_factory=torch.Generator, repr=False)

    def begin(self, key: int, global_size: int, part: slice) -> None:
        """Start the random stream of one global batch (``key`` must identify it within the run)."""
        self._generator.manual_seed((self.seed * 1_000_003 + key * 9_176_111) % (2**63))
        self.global_size, self.part = global_size, part

    def _shape(self, x: Tensor) -> tuple[int, ...]:
        return (self.global_size or x.shape[0], *x.shape[1:])

    def normal_like(self, x: Tensor) -> Tensor:
        return torch.randn(self._shape(x), generator=self._generator)[self.part].to(x.device, x.dtype)

    def uniform_like(self, x: Tensor) -> Tensor:
        """Uniform in [-1, 1)."""
        return (2 * torch.rand(self._shape(x), generator=self._generator) - 1)[self.part].to(x.device, x.dtype)
