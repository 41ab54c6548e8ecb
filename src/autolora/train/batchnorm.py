"""BatchNorm statistics re-estimated for the deployed model once training has ended.

A BatchNorm layer's running statistics are a moving average over the batches it saw in training
mode, and in AutoLoRa those are two networks' activations: the deployed path's on adversarial
images and the natural path's (feature extractor plus branch) on clean ones, since both paths run
the same layers in training mode (as in the authors' code). The exported model normalises with
that mix, and a weight average (the tail's mean) averages the statistics with the weights.
Re-estimating them once, with the weights fixed, over the deployed model's own inputs is what
stochastic weight averaging does after its last step (Izmailov et al. 2018, ``bn_update``); here
the inputs are adversarial examples of the training images, crafted against the model as trained.
Measured in docs/method.md ("BatchNorm statistics of the deployed model"). Also named here: what
the model's reads in training (the attack, the validation) normalise with (``READ_STATISTICS``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..attacks import PGD, CrossEntropyObjective
from ..lora.statistics import keeps_running_statistics

BATCHNORM_STATS = {
    "training": "the running statistics as training left them",
    "recomputed": "re-estimated at the end on adversarial examples of the training images",
    "recomputed-clean-adversarial": "re-estimated at the end on the training images and their adversarial examples",
}
ATTACK_TURNS_TO_RUNNING = "batch-then-running-attack"  # the read that changes with the LR (the default's)
READ_STATISTICS = {  # what BatchNorm layers normalise with where training reads the model in eval mode
    "running": "the running averages (the paper): they lag weights that move fast",
    "batch": "each batch's own statistics, as the training step does: the weights as they are now",
    ATTACK_TURNS_TO_RUNNING: "each batch's own, but the training attack's the running averages once the LR "
    "has fallen: they follow the weights then, and the deployed model normalises with fixed statistics",
}
BATCHNORM_SAMPLES = 5000  # images: a channel's mean is then known to 1.4% of its standard deviation


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if keeps_running_statistics(m)]


def recompute_batchnorm(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], attack: PGD, *, with_clean: bool = False
) -> int:
    """Replace ``model``'s BatchNorm running statistics by the plain mean of its batch statistics
    on adversarial examples of ``batches`` (``with_clean``: on each batch of clean images and their
    adversarial examples together, the two inputs a robust model serves); returns how many images
    were seen.

    The examples are crafted by ``attack`` against ``model`` as it is (eval mode, its old
    statistics); the statistics are gathered on a copy, so no attack sees half-estimated ones.
    ``model(x)`` must be the deployed path (for AutoLoRa it is: the branches act only on the
    natural path). Every other parameter and buffer is left as it is; a model without BatchNorm,
    or no batches, leave it untouched.
    """
    if not batchnorm_layers(model):
        return 0
    gatherer = copy.deepcopy(model)
    layers = batchnorm_layers(gatherer)
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average: every batch counts once
    seen = 0
    for x, y in batches:
        x_adv = attack(model, x, CrossEntropyObjective(y))
        gatherer.train()
        with torch.no_grad():
            gatherer(torch.cat([x, x_adv]) if with_clean else x_adv)
        seen += len(y)
    if not seen:
        return 0
    with torch.no_grad():
        for mine, gathered in zip(batchnorm_layers(model), layers, strict=True):
            mine.running_mean.copy_(gathered.running_mean)
            mine.running_var.copy_(gathered.running_var)
            mine.num_batches_tracked.add_(gathered.num_batches_tracked)
    return seen
