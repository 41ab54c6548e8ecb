"""What PGD maximises: per-example losses of the model's logits."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class CrossEntropyObjective:
    """Cross-entropy on the true labels (untargeted PGD); success means misclassified."""

    labels: Tensor

    def loss(self, logits: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), self.labels, reduction="none")

    def success(self, logits: Tensor) -> Tensor:
        return logits.argmax(dim=1) != self.labels


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
