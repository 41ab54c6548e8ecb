"""Training objectives shared by several methods: TRADES, CE on PGD examples, plain CE.

A method's own objective lives in its file (AutoLoRa's in ``methods/autolora.py``).

An objective takes the (possibly DDP-wrapped) model and a batch and returns the loss and
the logits on which the training accuracy is read. Attacks run on the unwrapped model in
eval mode; the losses' forwards run in the model's own (training) mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks import PGD, CrossEntropyObjective, KLObjective
from ..attacks.pgd import evaluating
from ..lora import unwrap
from ..runtime import autocast


@dataclass
class LossOutput:
    loss: Tensor
    logits: Tensor  # the logits whose accuracy is logged as training accuracy
    natural_logits: Tensor | None = None


class Objective(Protocol):
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput: ...


def kl_batchmean(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """KL(softmax(p) || softmax(q)) summed over the batch and divided by its size; both sides get gradient."""
    return (
        F.kl_div(F.log_softmax(q_logits.float(), dim=1), F.softmax(p_logits.float(), dim=1), reduction="sum")
        / p_logits.shape[0]
    )


def trades_terms(z_nat: Tensor, z_adv: Tensor, y: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """TRADES's natural term ``CE(f(x), y)`` and its adversarial term ``beta KL(f(x) || f(x_adv))``."""
    return F.cross_entropy(z_nat.float(), y), beta * kl_batchmean(z_nat, z_adv)


@dataclass
class TradesObjective:
    """TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta KL(f(x) || f(x_adv))``, x_adv maximising the KL."""

    attack: PGD
    beta: float = 6.0
    autocast: torch.dtype | None = None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        inner = unwrap(model)
        with evaluating(inner, self.attack.batch_statistics), torch.no_grad(), autocast(x.device, self.autocast):
            clean_eval = inner(x)  # the KL's target reads the model as the attack does
        x_adv = self.attack(inner, x, KLObjective(clean_eval))
        with autocast(x.device, self.autocast):
            z_nat = model(x)
            z_adv = model(x_adv)
        natural, adversarial = trades_terms(z_nat, z_adv, y, self.beta)
        return LossOutput(natural + adversarial, z_adv, z_nat)


@dataclass
class AdversarialCEObjective:
    """Madry et al. (2018): cross-entropy on PGD examples (PGD-AT, ALF, AFF)."""

    attack: PGD
    autocast: torch.dtype | None = None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        x_adv = self.attack(unwrap(model), x, CrossEntropyObjective(y))
        with autocast(x.device, self.autocast):
            z_adv = model(x_adv)
        return LossOutput(F.cross_entropy(z_adv.float(), y), z_adv)


@dataclass
class CleanCEObjective:
    """Standard training: cross-entropy on clean images (SLF)."""

    autocast: torch.dtype | None = None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        with autocast(x.device, self.autocast):
            logits = model(x)
        return LossOutput(F.cross_entropy(logits.float(), y), logits)
