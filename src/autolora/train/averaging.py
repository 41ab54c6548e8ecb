"""The model the schedule judges: the last iterate, or an average of the recent ones.

At a constant LR, SGD's iterates wander around the region they have reached; an average of
them sits nearer its middle (Polyak and Juditsky 1992; Izmailov et al. 2018). In adversarial
training an exponential moving average of the weights is standard (Gowal et al. 2020). Here
the horizon is a whole number of the schedule's epochs, counted in optimizer steps, so the model
validated after an epoch stands for that epoch, not for its last batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of every parameter and buffer (branch and BatchNorm statistics included)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class WeightAverage:
    """An exponential moving average of a model's parameters and floating-point buffers.

    ``horizon`` optimizer steps is its time constant (decay ``1 - 1/horizon``); until that many
    steps have passed since it started, it is the plain mean of the steps so far, so a young
    average is not pulled towards its start (``math.inf``: always the plain mean). Integer buffers
    (BatchNorm's batch count) follow the model. ``horizon=None`` averages nothing: the average is
    the model itself.
    """

    def __init__(self, model: nn.Module, horizon: float | None) -> None:
        if horizon is not None and horizon < 1:
            raise ValueError(f"horizon must be a positive number of steps, got {horizon}")
        self.horizon = horizon
        self.average: dict[str, Tensor] | None = None
        self.steps = 0
        self.reset(model)

    @property
    def enabled(self) -> bool:
        return self.horizon is not None

    def start(self, model: nn.Module, horizon: float) -> None:
        """Average from ``model`` as it is now, over ``horizon`` steps (``math.inf``: the plain mean)."""
        if horizon < 1:
            raise ValueError(f"horizon must be a positive number of steps, got {horizon}")
        self.horizon = horizon
        self.reset(model)

    def reset(self, model: nn.Module) -> None:
        """Start again from ``model`` as it is now (after a roll-back)."""
        self.average = snapshot(model) if self.enabled else None
        self.steps = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold in the model after one more optimizer step."""
        if self.average is None or self.horizon is None:
            return
        self.steps += 1
        weight = max(1.0 / self.horizon, 1.0 / (self.steps + 1))  # the start counts as one sample
        for name, value in model.state_dict().items():
            kept = self.average[name]
            if kept.is_floating_point():
                kept.lerp_(value.detach(), weight)
            else:
                kept.copy_(value)

    def state(self, model: nn.Module) -> dict[str, Tensor]:
        """A copy of the averaged state (the model's own when nothing is averaged)."""
        if self.average is None:
            return snapshot(model)
        return {k: v.clone() for k, v in self.average.items()}

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Inside, ``model`` holds the averaged weights; on leaving it gets its own back."""
        if self.average is None:
            yield
            return
        own = snapshot(model)
        model.load_state_dict(self.average)
        try:
            yield
        finally:
            model.load_state_dict(own)

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average, "steps": self.steps, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average, self.steps = state["average"], int(state["steps"])
        self.horizon = state.get("horizon", self.horizon)  # states written before averages could start late
