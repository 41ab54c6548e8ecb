"""Linear fine-tuning modes of the RobustSSL benchmark: the head alone, the extractor frozen.

SLF trains the head on clean images, ALF on PGD examples. The feature extractor is frozen,
its BatchNorm statistics included (it stays in eval mode).
"""

from __future__ import annotations

from torch import nn

from ...models import ImageClassifier
from ..method import FIXED_FINETUNE, Method
from ..objectives import AdversarialCEObjective, CleanCEObjective, Objective


class LinearFineTuning(Method):
    """The head alone: the feature extractor frozen, in eval mode."""

    trains = "head only"
    defaults = FIXED_FINETUNE
    learns_batchnorm = False

    def prepare(self, model: ImageClassifier) -> None:
        model.features.requires_grad_(False)

    def train_mode(self, net: nn.Module, model: ImageClassifier) -> None:
        net.train()
        model.features.eval()


class StandardLinear(LinearFineTuning):
    name = "slf"
    description = "standard linear fine-tuning: head only, clean data"
    loss_description = "CE(f(x))"

    def build_objective(self) -> Objective:
        return CleanCEObjective(self.config.autocast_dtype)


class AdversarialLinear(LinearFineTuning):
    name = "alf"
    description = "adversarial linear fine-tuning: head only, PGD data"
    loss_description = "CE(f(x_adv)), x_adv by PGD"

    def build_objective(self) -> Objective:
        attack = self.training_attack()
        return AdversarialCEObjective(attack, self.config.autocast_dtype)
