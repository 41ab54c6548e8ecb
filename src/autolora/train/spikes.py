"""Gradient spikes: optimizer steps whose gradient norm is far above the run's recent ones.

A non-finite loss is the extreme of an unstable step, and AutoLoRa's rule answers it by halving the
LR and rolling back to the best model. A step whose global gradient norm is many times the median of
the steps just before it is the same instability caught before it overflows: on a ViT fine-tuned at
LR 0.1 one such step (up to 33 times that median) set runs back for good, and momentum 0.9 carries it
into the next ten steps (docs/method.md, "Halving at a gradient spike"). The trainer records each
step's norm here and, at the end of the epoch, asks for the largest ratio the epoch saw.

A pass's last batch is often smaller than the others (200 images in batches of 128 end on 72, 900
on 4), and the noise in a batch's gradient grows as one over the root of its size: the 4-image steps of
runs that went well read up to 17 times the median of the 8 steps before them. Each norm is therefore
scaled by the root of its batch's share of the largest batch, so that only a step's excess over
what its size explains counts.

A loss whose weights are set afresh as an epoch begins (``Method.reweighs_loss``: AutoLoRa's, measured
on the zero head's chance accuracy for epoch 1 and on a trained natural path for epoch 2, where λ2
rises from 6/K to 2.5-5.0 on the study's tasks) moves every step's norm with them: on the poor source
with all labels the norm's level tripled there, and read against the steps before, the new level was
a spike of 6-10 times their median on every seed. So the norms of the steps before are rescaled by
the ratio of the loss's total weights (``Method.loss_weight``), and a step is compared with them as
the new loss would have taken them (docs/method.md, "Halving at a gradient spike").

The norms stay tensors until the epoch ends, so recording one costs no synchronisation with an
accelerator; with several processes the gradients are already the global batch's (DDP averages them
before the step), so every process sees the same norms.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

SPIKE_WINDOW = 8  # the steps whose median a step's norm is compared with: the default decision period


class GradientSpikes:
    """Each step's global gradient norm, compared with the median of the ``window`` steps before it.

    The first ``window`` steps of a run are only recorded: a ratio needs a full window before it.
    """

    def __init__(self, window: int = SPIKE_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"a spike window needs at least one step, not {window}")
        self.window = window
        self.recent: list[float] = []  # the last ``window`` norms of the epochs ended
        self.largest_batch = 1
        self._epoch: list[Tensor] = []

    def observe(self, parameters: Iterable[nn.Parameter], batch_size: int) -> None:
        """Record the norm of the gradients now held by ``parameters`` (one step's, on ``batch_size`` images)."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if grads:
            self.record(global_norm(grads), batch_size)

    def record(self, norm: Tensor, batch_size: int) -> None:
        """Record one step's gradient norm, on ``batch_size`` images, scaled for the batch's size."""
        self.largest_batch = max(self.largest_batch, batch_size)
        self._epoch.append(scaled_for_batch(norm.detach(), batch_size, self.largest_batch))

    def rescale(self, factor: float) -> None:
        """Read the norms recorded so far as a loss ``factor`` times heavier would have taken them
        (between epochs: the loss has been re-weighted)."""
        self.recent = [norm * factor for norm in self.recent]

    def end_epoch(self) -> float | None:
        """The largest ratio of an epoch's step norm to the median of the ``window`` norms before it
        (None while no step has had a full window before it)."""
        norms = self.recent + torch.stack(self._epoch).float().tolist() if self._epoch else list(self.recent)
        ratios = ratios_to_recent_median(norms, self.window)[len(self.recent) :]
        self._epoch, self.recent = [], norms[-self.window :]
        return max((r for r in ratios if r is not None), default=None)

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent), "largest_batch": self.largest_batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = [float(norm) for norm in state["recent"]]
        self.largest_batch = int(state["largest_batch"])
        self._epoch = []


def global_norm(tensors: Sequence[Tensor]) -> Tensor:
    """The norm of ``tensors`` taken as one vector (a step's global gradient norm)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


def ratios_to_recent_median(norms: Sequence[float], window: int = SPIKE_WINDOW) -> list[float | None]:
    """Each norm over the median of the ``window`` norms before it (None for the first ``window``)."""
    return [norms[t] / max(statistics.median(norms[t - window : t]), 1e-12) if t >= window else None
            for t in range(len(norms))]  # fmt: skip


def scaled_for_batch(norm: Tensor | float, batch_size: int, full_batch: int) -> Tensor | float:
    """A step's gradient norm as a ``full_batch`` step's would read: the noise in a batch's gradient grows
    as one over the root of its size."""
    return norm * math.sqrt(batch_size / full_batch)
