"""Projected gradient descent (Madry et al. 2018): one loop for every threat model and objective."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..runtime import autocast
from .noise import BatchNoise
from .objectives import CrossEntropyObjective
from .threat import RandomStart, ThreatModel


class Objective(Protocol):
    def loss(self, logits: Tensor) -> Tensor: ...

    def success(self, logits: Tensor) -> Tensor: ...


@contextlib.contextmanager
def evaluating(model: nn.Module, batch_statistics: bool = False) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; restore each one's own mode afterwards, even on error.

    ``batch_statistics``: BatchNorm layers normalise with the statistics of the batch they see, as
    in training, and leave their running statistics untouched: a read of the weights as they are
    now, where running averages lag weights that move fast (dropout and the rest stay in eval mode).
    """
    modes = [(module, module.training, getattr(module, "track_running_stats", None)) for module in model.modules()]
    model.eval()
    if batch_statistics:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                module.training, module.track_running_stats = True, False  # batch statistics, no update
    try:
        yield model
    finally:
        for module, training, tracks in modes:
            module.training = training
            if tracks is not None:
                module.track_running_stats = tracks


@dataclass
class PGD:
    """L-p PGD on inputs in [0, 1], with the model in eval mode (``batch_statistics``: its BatchNorm
    layers normalise with the attacked batch's statistics, see ``evaluating``).

    Args:
        threat: the ball (``LinfBall(8/255)``, ``L2Ball(0.5)``).
        steps: ascent steps per restart.
        step_size: length of a step; ``eps / 4`` by default (2/255 at 8/255).
        random_start: ``UNIFORM`` in the ball, ``NORMAL`` (0.001 N(0, 1), as TRADES) or ``NONE``.
        restarts: independent runs; each example keeps its worst case over them.
        keep_best: return each example's worst iterate seen (evaluation), not the last (training).
        autocast: a reduced-precision dtype for the forward passes, or None for fp32.
        noise: where random starts come from (``BatchNoise`` makes them independent of how a
            global batch is split over processes); torch's global generator by default.
        batch_statistics: BatchNorm normalises with each attacked batch's own statistics.

    The worst case is "misclassified" first, then "higher loss". The model's device
    is taken from the input. Example::

        attack = PGD(LinfBall(8 / 255), steps=20)
        x_adv = attack(model, x, CrossEntropyObjective(y))
    """

    threat: ThreatModel
    steps: int = 10
    step_size: float | None = None
    random_start: RandomStart = RandomStart.UNIFORM
    restarts: int = 1
    keep_best: bool = False
    autocast: torch.dtype | None = None
    noise: BatchNoise | None = None
    batch_statistics: bool = False

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError("attack-steps", self.steps, "use a non-negative number of steps")
        if self.restarts < 1:
            raise ConfigError("restarts", self.restarts, "use at least one restart")
        if self.step_size is None:
            self.step_size = self.threat.eps / 4
        if self.step_size < 0:
            raise ConfigError("step-size", self.step_size, "use a non-negative step size")

    def __call__(self, model: nn.Module, x: Tensor, objective: Objective | Tensor) -> Tensor:
        if isinstance(objective, Tensor):
            objective = CrossEntropyObjective(objective)
        x = x.detach()
        with evaluating(model, self.batch_statistics):
            best_x, best_key = None, None
            for _ in range(self.restarts):
                x_adv, key = self._run(model, x, objective)
                best_x, best_key = _keep_worse(best_x, best_key, x_adv, key)
        return best_x

    def _score(self, model: nn.Module, x_adv: Tensor, objective: Objective) -> tuple[Tensor, Tensor]:
        with autocast(x_adv.device, self.autocast):
            logits = model(x_adv)
        return objective.loss(logits), objective.success(logits)

    def _run(self, model: nn.Module, x: Tensor, objective: Objective) -> tuple[Tensor, Tensor]:
        x_adv = self.threat.start(x, self.random_start, self.noise)
        best_x, best_key = None, None
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss, success = self._score(model, x_adv, objective)
            if self.keep_best:
                best_x, best_key = _keep_worse(best_x, best_key, x_adv.detach(), _key(loss, success))
            (grad,) = torch.autograd.grad(loss.sum(), x_adv)
            x_adv = self.threat.project(self.threat.ascent(x_adv.detach(), grad, self.step_size), x)
        needs_key = self.keep_best or self.restarts > 1
        if not needs_key:
            return x_adv, torch.zeros(0)
        with torch.no_grad():
            loss, success = self._score(model, x_adv, objective)
        return _keep_worse(best_x, best_key, x_adv, _key(loss, success))


def _key(loss: Tensor, success: Tensor) -> Tensor:
    """A per-example score where any success outranks any loss."""
    loss = loss.detach().float()
    return torch.where(success, torch.full_like(loss, float("inf")), loss)


def _keep_worse(best_x: Tensor | None, best_key: Tensor | None, x: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
    if best_x is None or best_key is None or best_key.numel() == 0:
        return x, key
    better = key > best_key
    mask = better.view(-1, *([1] * (x.ndim - 1)))
    return torch.where(mask, x, best_x), torch.where(better, key, best_key)
