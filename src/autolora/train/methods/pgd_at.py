"""PGD adversarial training (Madry et al., ICLR 2018): CE on PGD examples, every parameter.

As fine-tuning (``pgd-at-ft``) it is the adversarial full fine-tuning of the RoLI paper; as
pre-training (``pgd-at``) it is how robust source models are made.
"""

from __future__ import annotations

from ..method import FIXED_FINETUNE, PRETRAIN, Method
from ..objectives import AdversarialCEObjective

PGD_AT_LOSS = "CE(f(x_adv)), x_adv by PGD from a uniform random start"


class PgdAt(Method):
    """Shared by fine-tuning and pre-training: CE on PGD examples."""

    loss_description = PGD_AT_LOSS

    def build_objective(self) -> AdversarialCEObjective:
        attack = self.training_attack()
        return AdversarialCEObjective(attack, self.config.autocast_dtype)


class PgdAtFineTuning(PgdAt):
    name = "pgd-at-ft"
    description = "adversarial full fine-tuning with the PGD-AT loss (Madry et al. 2018), step decay"
    defaults = FIXED_FINETUNE


class PgdAtPretrain(PgdAt):
    name = "pgd-at"
    description = "PGD adversarial training from scratch (Madry et al. 2018)"
    defaults = PRETRAIN
    pretrain = True
