"""AutoLoRa's automatic loss scalars, set from the natural branch's own training accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .objectives import LossWeights

KL_SCALE = 6.0


@dataclass
class AutoScalars:
    """``lambda1 = 1 - acc_nat`` and ``lambda2 = 6 * acc_nat``.

    ``acc_nat`` is the clean accuracy of the natural (low-rank) path, in eval mode, on the
    training data; it is measured at the start of every epoch. Early on the branch is weak
    and the loss leans on natural CE; as it learns, weight moves to robustness and to
    distilling the natural branch into the adversarial path.
    """

    weights: LossWeights
    acc_nat: float | None = None

    def update(self, acc_nat: float) -> LossWeights:
        if not 0.0 <= acc_nat <= 1.0:
            raise ValueError(f"acc_nat must be in [0, 1], got {acc_nat}")
        self.acc_nat = acc_nat
        self.weights.lambda1 = 1.0 - acc_nat
        self.weights.lambda2 = KL_SCALE * acc_nat
        return self.weights

    def state_dict(self) -> dict[str, Any]:
        return {"acc_nat": self.acc_nat, "lambda1": self.weights.lambda1, "lambda2": self.weights.lambda2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.acc_nat = state["acc_nat"]
        self.weights.lambda1 = float(state["lambda1"])
        self.weights.lambda2 = float(state["lambda2"])
