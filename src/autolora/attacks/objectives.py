"""What PGD maximises: per-example losses of the model's logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class UntargetedObjective:
    """A loss on the true labels; success means misclassified."""

    labels: Tensor

    def success(self, logits: Tensor) -> Tensor:
        return logits.argmax(dim=1) != self.labels


@dataclass
class CrossEntropyObjective(UntargetedObjective):
    """Cross-entropy on the true labels (untargeted PGD)."""

    def loss(self, logits: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), self.labels, reduction="none")


@dataclass
class MarginObjective(UntargetedObjective):
    """The difference-of-logits ratio (DLR) of Croce and Hein (2020), untargeted.

    ``-(z_y - max_{j != y} z_j) / (z_(1) - z_(3))`` with ``z_(k)`` the k-th largest logit: a margin,
    made invariant to the scale of the logits, so a model whose softmax saturates (and whose
    cross-entropy gradient vanishes) is still attacked. With fewer than 3 classes, the plain margin.
    """

    def loss(self, logits: Tensor) -> Tensor:
        logits = logits.float()
        true = logits.gather(1, self.labels[:, None]).squeeze(1)
        others = logits.scatter(1, self.labels[:, None], float("-inf")).amax(dim=1)
        margin = others - true
        if logits.shape[1] < 3:
            return margin
        ranked = logits.topk(3, dim=1).values
        return margin / (ranked[:, 0] - ranked[:, 2] + 1e-12)


@dataclass
class KLObjective:
    """KL(softmax(clean) || softmax(adversarial)), the TRADES inner maximisation."""

    clean_logits: Tensor

    def __post_init__(self) -> None:
        self.clean_probs = F.softmax(self.clean_logits.detach().float(), dim=1)

    def loss(self, logits: Tensor) -> Tensor:
        log_adv = F.log_softmax(logits.float(), dim=1)
        return F.kl_div(log_adv, self.clean_probs, reduction="none").sum(dim=1)

    def success(self, logits: Tensor) -> Tensor:
        return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
