"""Choosing the initial learning rate: a short LR range test on the method's own objective.

Smith (2017, "Cyclical Learning Rates for Training Neural Networks"): train for a few steps
while the LR grows geometrically, and read the loss. The LR at which the smoothed loss is
lowest is about where training becomes unstable. A fixed schedule would start well below it
(Smith's rule of thumb: a tenth); AutoLoRa's rule only ever halves the LR when progress stalls,
so it starts at that edge (``divisor`` 1). The trainer runs the test on a copy of the state and
restores it afterwards, so the test leaves no trace but its choice and its cost (recorded in the
run's summary).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RangeTest:
    """``steps`` optimizer steps with the LR growing from ``lr_min`` to ``lr_max``."""

    steps: int = 20
    lr_min: float = 1e-3
    lr_max: float = 1.0
    smoothing: float = 0.7  # weight of the running mean in the loss's exponential smoothing
    divisor: float = 1.0  # the chosen LR: the best LR of the sweep divided by this

    def lr(self, step: int) -> float:
        return self.lr_min * (self.lr_max / self.lr_min) ** (step / max(self.steps - 1, 1))


@dataclass
class RangeTestResult:
    lr: float
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        sweep = [[round(lr, 6), round(loss, 5)] for lr, loss in zip(self.lrs, self.losses, strict=True)]
        return {"lr": self.lr, "sweep": sweep}


def lr_range_test(step: Callable[[float], float], test: RangeTest = RangeTest()) -> RangeTestResult:
    """Run ``step(lr) -> loss`` along the sweep and choose the initial LR.

    The sweep stops early when the loss is not finite or exceeds four times the best smoothed
    loss. The choice is the LR of the lowest smoothed loss divided by ``divisor``, kept within
    ``[lr_min, lr_max]``.
    """
    result = RangeTestResult(test.lr_min)
    smooth, best, best_lr = 0.0, math.inf, test.lr_min
    for i in range(test.steps):
        lr = test.lr(i)
        loss = step(lr)
        if not math.isfinite(loss):
            break
        smooth = test.smoothing * smooth + (1 - test.smoothing) * loss
        debiased = smooth / (1 - test.smoothing ** (i + 1))
        result.lrs.append(lr)
        result.losses.append(debiased)
        if debiased < best:
            best, best_lr = debiased, lr
        elif debiased > 4 * best:
            break
    result.lr = min(max(best_lr / test.divisor, test.lr_min), test.lr_max)
    return result
