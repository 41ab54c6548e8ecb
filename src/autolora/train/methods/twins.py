"""TWINS (Liu, Chan, Zhang and Wang, CVPR 2023, "TWINS: A Fine-Tuning Framework for Improved
Transferability of Adversarial Robustness and Generalization").

Every BatchNorm layer gets a twin: the *frozen* wing normalises with the pre-trained running
statistics, which never change; the *adaptive* wing is the original layer (batch statistics,
running statistics updated). All other weights are shared. Each training batch is split in
two halves: the first goes through the frozen wing, the second through the adaptive one,
attack included, and the loss is TRADES on each half with the frozen half weighted by
``gamma`` = 0.3 (the authors' default). The deployed model is the adaptive wing: export drops
the frozen one. What this implementation does where the authors' code differs: docs/method.md.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...attacks import PGD, KLObjective
from ...attacks.pgd import evaluating
from ...lora import unwrap
from ...models import ImageClassifier
from ...runtime import autocast
from ..method import FIXED_FINETUNE, Method
from ..objectives import LossOutput
from .trades import TRADES_LOSS

TWINS_GAMMA = 0.3  # the weight of the frozen wing's loss (lambda_twins in the authors' code)


class TwinBatchNorm(nn.Module):
    """A BatchNorm layer (the adaptive wing, kept as ``adaptive``) beside a frozen copy of its
    pre-trained statistics (``frozen``, with its own affine parameters, initialised from the
    layer's). Outside ``split_batches`` it is exactly the adaptive layer."""

    def __init__(self, adaptive: nn.BatchNorm2d) -> None:
        super().__init__()
        self.adaptive = adaptive
        self.frozen = copy.deepcopy(adaptive)
        self.frozen.requires_grad_(True)
        self.split = False

    def forward(self, x: Tensor) -> Tensor:
        if not self.split:
            return self.adaptive(x)
        half = x.shape[0] // 2
        f = self.frozen
        frozen = F.batch_norm(x[:half], f.running_mean, f.running_var, f.weight, f.bias, False, 0.0, f.eps)
        return torch.cat([frozen, self.adaptive(x[half:])])


def add_twins(model: nn.Module) -> list[TwinBatchNorm]:
    """Wrap every ``nn.BatchNorm2d`` of ``model`` in a ``TwinBatchNorm``, in place."""
    targets = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    twins = []
    for name in targets:
        parent, _, child = name.rpartition(".")
        twin = TwinBatchNorm(getattr(model.get_submodule(parent), child))
        setattr(model.get_submodule(parent), child, twin)
        twins.append(twin)
    return twins


def remove_twins(model: nn.Module) -> nn.Module:
    """Put every adaptive wing back in its twin's place: the original architecture and keys."""
    for name, module in list(model.named_modules()):
        if isinstance(module, TwinBatchNorm):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.adaptive)
    return model


@contextlib.contextmanager
def split_batches(model: nn.Module) -> Iterator[None]:
    """Within this context, the first half of every batch goes through the frozen wings."""
    twins = [m for m in unwrap(model).modules() if isinstance(m, TwinBatchNorm)]
    for twin in twins:
        twin.split = True
    try:
        yield
    finally:
        for twin in twins:
            twin.split = False


@dataclass
class TwinsObjective:
    """TRADES on each half of the batch: ``gamma L(frozen half) + L(adaptive half)``.

    As in the authors' code, each half's CE is its mean and each half's KL is summed and
    divided by the whole batch's size.
    """

    attack: PGD
    beta: float = 6.0
    gamma: float = TWINS_GAMMA
    autocast: torch.dtype | None = None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        inner, half = unwrap(model), x.shape[0] // 2
        with split_batches(model):
            with evaluating(inner), torch.no_grad(), autocast(x.device, self.autocast):
                clean_eval = inner(x)
            x_adv = self.attack(inner, x, KLObjective(clean_eval))
            with autocast(x.device, self.autocast):
                z_nat, z_adv = model(x).float(), model(x_adv).float()
        kl = F.kl_div(F.log_softmax(z_adv, 1), F.softmax(z_nat, 1), reduction="none").sum(1) / len(y)
        weights = torch.ones_like(kl)
        weights[:half] = self.gamma
        ce = F.cross_entropy(z_nat[:half], y[:half]) * self.gamma + F.cross_entropy(z_nat[half:], y[half:])
        return LossOutput(ce + self.beta * (weights * kl).sum(), z_adv, z_nat)


class Twins(Method):
    name = "twins"
    description = "TWINS: frozen pre-trained BatchNorm statistics beside adaptive ones; TRADES"
    loss_description = f"0.3·TRADES(frozen-BN half) + TRADES(adaptive half); TRADES = {TRADES_LOSS}"
    trains = "everything (both wings' BatchNorm affine parameters)"
    defaults = FIXED_FINETUNE
    learns_batchnorm = False  # the frozen wing's statistics are the source's
    attack_start = "normal"  # TRADES's

    def build_objective(self) -> TwinsObjective:
        attack = self.training_attack()
        return TwinsObjective(attack, self.config.beta, TWINS_GAMMA, self.config.autocast_dtype)

    def prepare(self, model: ImageClassifier) -> None:
        if not add_twins(model.features):
            raise ValueError("TWINS needs BatchNorm layers in the feature extractor; this model has none")

    def export(self, model: ImageClassifier) -> ImageClassifier:
        remove_twins(model)
        return model
