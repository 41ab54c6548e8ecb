"""TRADES (Zhang et al., ICML 2019): vanilla robust fine-tuning, and TRADES pre-training.

The AutoLoRa paper's "vanilla RFT" and the RobustSSL benchmark's "AFF" are both this loss on
every parameter: ``CE(f(x), y) + beta KL(f(x) || f(x_adv))``, x_adv maximising the KL.
"""

from __future__ import annotations

from ..method import FIXED_FINETUNE, PRETRAIN, Method
from ..objectives import TradesObjective

TRADES_LOSS = "CE(f(x)) + β·KL(f(x) ‖ f(x_adv)), β = 6, x_adv maximising the KL"


class Trades(Method):
    """Shared by fine-tuning and pre-training: the TRADES objective on every parameter."""

    loss_description = TRADES_LOSS
    attack_start = "normal"  # TRADES's x + 0.001 N(0, 1)

    def build_objective(self) -> TradesObjective:
        attack = self.training_attack()
        return TradesObjective(attack, self.config.beta, self.config.autocast_dtype)


class VanillaRFT(Trades):
    name = "vanilla"
    aliases = ("aff",)
    description = "vanilla robust fine-tuning (the paper's vanilla RFT and AFF): TRADES, step decay"
    defaults = FIXED_FINETUNE


class TradesPretrain(Trades):
    name = "trades"
    description = "TRADES adversarial training from scratch (Zhang et al. 2019)"
    defaults = PRETRAIN
    pretrain = True
