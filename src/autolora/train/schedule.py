"""Learning-rate schedules with explicit state: AutoLoRa's automatic rule, step decay and cosine.

The trainer calls ``step(metric)`` once per epoch with the validation metric (higher is better) and
applies the returned ``Decision``: the next LR, whether to roll back to the best model,
whether to stop. ``fault()`` reports an epoch that ended in a non-finite loss; ``step(metric,
unstable=True)`` one whose gradients spiked (``train/spikes.py``).
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError

MIN_LR = 1e-5
PROGRESS_TESTS = ("count", "mean")  # how condition 1 judges a window: the paper's count, or window means


@dataclass(frozen=True)
class Decision:
    """What to do after an epoch."""

    lr: float
    is_best: bool = False
    halved: bool = False
    rollback: bool = False
    stop: bool = False
    reason: str = ""
    average: bool = False  # from the next step on, judge and deploy the mean of the iterates
    clear_momentum: bool = False  # an unstable epoch's: its momentum must not carry over the roll-back


class Schedule(ABC):
    """Counts epochs, tracks the best metric and decides the next learning rate."""

    halves_on_spikes = False  # whether an epoch with a gradient spike that did harm halves the LR

    def __init__(self, lr: float, max_epochs: int) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError("lr", lr, "use a positive, finite learning rate")
        if max_epochs < 1:
            raise ConfigError("epochs", max_epochs, "train for at least one epoch")
        self.initial_lr = lr
        self.lr = lr
        self.max_epochs = max_epochs
        self.history: list[float | None] = []
        self.best = -math.inf
        self.best_epoch = 0
        self.start_metric: float | None = None  # what the next epoch's metric must beat to have done no harm

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return len(self.history)

    def step(self, metric: float, unstable: bool = False) -> Decision:
        """Decide after an epoch that ended with ``metric``; ``unstable``: a gradient spike fell in it."""
        # harm: the epoch ended no better than the model it started from; such an epoch is never a best
        # (not even among a tail's averages) and, rolled back as a fault is, stays out of the window means
        harmful = self.halves_on_spikes and unstable and self.start_metric is not None and metric <= self.start_metric
        self.history.append(None if harmful else metric)
        is_best = metric > self.best and not harmful
        if is_best:
            self.best, self.best_epoch = metric, self.epoch
        decision = self._finish(self._after_harmful_spike() if harmful else self._decide(is_best))
        self.start_metric = self._rolled_back_metric() if decision.rollback else metric
        return decision

    def _rolled_back_metric(self) -> float:
        """The metric of the model a roll-back returns to: the best."""
        return self.best

    def _after_harmful_spike(self) -> Decision:
        """What an epoch with a gradient spike that ended no better than the model it started from calls
        for, in a schedule that ``halves_on_spikes`` (the fixed schedules take no notice)."""
        raise NotImplementedError

    def fault(self) -> Decision:
        """An epoch ended in a non-finite loss: by default, stop."""
        self.history.append(None)
        self.start_metric = None
        return Decision(self.lr, stop=True, reason=f"non-finite loss in epoch {self.epoch}")

    def _finish(self, decision: Decision) -> Decision:
        if decision.stop:
            return decision
        if self.epoch >= self.max_epochs:
            return replace(decision, stop=True, reason="max epochs")
        return decision

    @abstractmethod
    def _decide(self, is_best: bool) -> Decision: ...

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state: a later step does not change a state taken before it."""
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key not in vars(self):
                raise ValueError(f"unknown schedule state {key!r}")
            setattr(self, key, list(value) if isinstance(value, tuple) else value)


class StepDecaySchedule(Schedule):
    """A fixed LR divided by ``1/gamma`` at fractions ``milestones`` of the epochs (vanilla RFT)."""

    def __init__(self, lr: float, epochs: int, milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1) -> None:
        super().__init__(lr, epochs)
        self.milestones = [round(m * epochs) for m in milestones]
        self.gamma = gamma

    def _decide(self, is_best: bool) -> Decision:
        drops = sum(self.epoch >= m for m in self.milestones)
        self.lr = self.initial_lr * self.gamma**drops
        return Decision(self.lr, is_best)


class CosineSchedule(Schedule):
    """Cosine annealing from ``lr`` to 0 over ``epochs``."""

    def _decide(self, is_best: bool) -> Decision:
        self.lr = 0.5 * self.initial_lr * (1.0 + math.cos(math.pi * self.epoch / self.max_epochs))
        return Decision(self.lr, is_best)


class AutoLRSchedule(Schedule):
    """AutoLoRa's learning-rate rule: Auto-PGD's step-size rule applied to the LR.

    At checkpoint epochs ``W = 0, 4, 8, ...`` (``period``), decided after epoch ``W[j] + 1``:

    - condition 1 (``progress="count"``, the paper's): fewer than ``rho`` of the epoch-to-epoch
      comparisons since ``W[j-1]`` improved the validation metric; (``progress="mean"``): the
      metric's mean over the window's epochs is no better than its mean over the window before
      (the first window has none and is not judged). Counting is a sign test on differences of
      noisy values; the mean averages the noise away (docs/method.md, "The default recipe");
    - condition 2: the LR was not halved at the previous checkpoint and the best validation
      robust accuracy has not risen since it.

    If either holds, the LR is halved and the model rolls back to the best one so far.
    Training stops when the LR falls below ``min_lr`` or after ``max_epochs``.

    ``anneal`` (a fraction of ``max_epochs``; 0, the paper's, turns it off) ends the run with a
    budget-aware decay (Li, Yumer and Ramanan 2020): over its last epochs the LR the rule reached
    falls linearly towards 0, so a run the cap cuts off in the middle of its halvings ends annealed.
    No checkpoint is judged there; a non-finite loss still halves and rolls back. With
    ``anneal_after_halving`` the decay runs only if the rule has halved the LR before it (evidence
    that the run has reached a plateau); a run that never halved is still learning at its first LR,
    and the rule keeps judging it to the cap. With ``late_halving_anneals`` as well, a halving inside
    the tail starts the decay too: from the halved LR towards 0 over the epochs left. With
    ``average_unhalved_tail`` a run that enters the tail without a halving holds its LR there and
    ends on the mean of the tail's iterates (stochastic weight averaging, Izmailov et al. 2018): an
    average ends a constant-LR run near the middle of the region it wanders in, without a decay
    that would cut what a run still learning gains. No checkpoint is judged there, and the model
    deployed is the best of the tail's averages, not an earlier iterate: on a small validation
    split the best of many noisy iterates wins by its noise. With ``average_decayed_tail`` a decaying
    tail ends on its mean too (the best of its running means), for the same reason.

    An epoch with a gradient spike (``step(metric, unstable=True)``, ``train/spikes.py``) that ends no
    better than the model it started from halves the LR and rolls back at once, as a fault does, in
    the tail too.
    """

    halves_on_spikes = True

    def __init__(
        self,
        lr: float = 0.1,
        max_epochs: int = 60,
        period: int = 4,
        rho: float = 0.75,
        min_lr: float = MIN_LR,
        checkpoints: Sequence[int] | None = None,
        progress: str = "count",
        anneal: float = 0.0,
        anneal_after_halving: bool = False,
        late_halving_anneals: bool = False,
        average_unhalved_tail: bool = False,
        average_decayed_tail: bool = False,
    ) -> None:
        super().__init__(lr, max_epochs)
        if progress not in PROGRESS_TESTS:
            raise ConfigError("progress", progress, f"choose one of: {', '.join(PROGRESS_TESTS)}")
        if checkpoints is None:
            if period < 1:
                raise ConfigError("period", period, "use a positive checkpoint period")
            checkpoints = list(range(0, max_epochs + period, period))
        if list(checkpoints) != sorted(set(checkpoints)) or checkpoints[0] != 0:
            raise ConfigError("checkpoints", checkpoints, "give increasing epochs starting at 0")
        if not 0.0 <= anneal < 1.0:
            raise ConfigError("anneal", anneal, "give a fraction of the epochs in [0, 1)")
        self.checkpoints = list(checkpoints)
        self.anneal_from = max_epochs - math.floor(anneal * max_epochs + 0.5)  # after it, the decay
        self.anneal_lr: float | None = None  # the LR the decay starts from, once it has begun
        self.anneal_start: int | None = None  # the epoch after which it began
        self.anneal_after_halving = anneal_after_halving
        self.late_halving_anneals = late_halving_anneals
        self.average_unhalved_tail = average_unhalved_tail
        self.average_decayed_tail = average_decayed_tail
        self.average_start: int | None = None  # the epoch after which the tail's average began
        self.best_before_average = -math.inf
        self.lr_entering_tail: float | None = None
        self.rho = rho
        self.progress = progress
        self.min_lr = min_lr
        self.next_checkpoint = 1
        self.halved_at_last_checkpoint = False
        self.best_at_last_checkpoint = -math.inf

    def _improvements(self, start: int, end: int) -> int:
        # history[i] is the metric after epoch i + 1; compare epochs start+1 .. end+1 pairwise.
        pairs = zip(self.history[start:end], self.history[start + 1 : end + 1], strict=False)
        return sum(1 for before, after in pairs if before is not None and after is not None and after > before)

    def _condition_one(self, j: int) -> tuple[bool, str]:
        start, end = self.checkpoints[j - 1], self.checkpoints[j]
        if self.progress == "count":
            improved = self._improvements(start, end)
            return improved < self.rho * (end - start), f"condition 1: {improved}/{end - start} epochs improved"
        if j == 1:
            return False, ""  # no window before the first to compare with: it runs at the starting LR
        before = self.checkpoints[j - 2] + 1
        now, then = _mean(self.history[start + 1 : end + 1]), _mean(self.history[before : start + 1])
        reason = f"condition 1: mean of epochs {start + 2}-{end + 1} no better than of epochs {before + 1}-{start + 1}"
        return now is None or then is None or now <= then, reason

    def _at_checkpoint(self) -> bool:
        j = self.next_checkpoint
        return j < len(self.checkpoints) and self.epoch - 1 == self.checkpoints[j]

    def _pass_checkpoint(self, halved: bool) -> None:
        self.next_checkpoint += 1
        self.best_at_last_checkpoint = self.best
        self.halved_at_last_checkpoint = halved

    def _decide(self, is_best: bool) -> Decision:
        if self._tail_decays():
            return self._anneal(is_best)
        if self._tail_averages():
            return self._hold_and_average(is_best)
        if not self._at_checkpoint():
            return Decision(self.lr, is_best)
        condition1, reason1 = self._condition_one(self.next_checkpoint)
        condition2 = not self.halved_at_last_checkpoint and self.best <= self.best_at_last_checkpoint
        self._pass_checkpoint(halved=condition1 or condition2)
        if not (condition1 or condition2):
            return Decision(self.lr, is_best)
        return self._halve(is_best, reason1 if condition1 else "condition 2: no new best since the last checkpoint")

    def _tail_decays(self) -> bool:
        """Whether this decision falls in a decaying tail (the first one in the tail records the LR it entered with)."""
        if self.anneal_from >= self.max_epochs or self.epoch < self.anneal_from:
            return False
        if self.lr_entering_tail is None:
            self.lr_entering_tail = self.lr
        halved = (self.lr if self.late_halving_anneals else self.lr_entering_tail) < self.initial_lr
        return not self.anneal_after_halving or halved

    def _tail_averages(self) -> bool:
        """Whether this decision falls in a tail that a run without a halving ends on its average."""
        return self.average_unhalved_tail and self.lr_entering_tail is not None  # in the tail, not decaying

    def _hold_and_average(self, is_best: bool) -> Decision:
        if self.average_start is not None:
            return Decision(self.lr, is_best)
        self._start_average()
        reason = f"epochs {self.epoch + 1}-{self.max_epochs}: the LR stays at {self.lr:g}; the run ends on their mean"
        return Decision(self.lr, is_best, reason=reason, average=True)

    def _start_average(self) -> None:
        self.average_start = self.epoch
        self.best_before_average = self.best  # the model a roll-back returns to until an average is best
        self.best = -math.inf  # the run ends on the tail's mean: its averages compete only with each other

    def _rolled_back_metric(self) -> float:
        """The best's metric, or, in a tail no average of which is best yet, the best's before it."""
        return self.best if self.best > -math.inf else self.best_before_average

    def _anneal(self, is_best: bool) -> Decision:
        reason, average = "", False
        if self.anneal_lr is None or self.anneal_start is None:
            self.anneal_lr, self.anneal_start = self.lr, self.epoch
            reason = f"epochs {self.epoch + 1}-{self.max_epochs}: the LR falls linearly from {self.lr:g} towards 0"
            if self.average_decayed_tail and self.average_start is None:
                self._start_average()
                reason, average = f"{reason}; the run ends on their mean", True
        remaining = self.max_epochs - self.epoch  # epochs left; the next one runs at remaining / (decay + 1)
        self.lr = self.anneal_lr * remaining / (self.max_epochs - self.anneal_start + 1)
        return Decision(self.lr, is_best, reason=reason, average=average)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.anneal_lr is not None and self.anneal_start is None:  # written before decays could start late
            self.anneal_start = self.anneal_from

    def _halve(self, is_best: bool, reason: str) -> Decision:
        self.lr /= 2.0
        if self.anneal_lr is not None:
            self.anneal_lr /= 2.0
        if self.lr < self.min_lr:
            return Decision(self.lr, is_best, True, True, True, f"{reason}; learning rate fell below {self.min_lr:g}")
        return Decision(self.lr, is_best, True, True, False, reason)

    def fault(self) -> Decision:
        """A non-finite loss: halve the LR and roll back to the best model at once.

        A fault on a checkpoint epoch stands for that checkpoint's halving.
        """
        self.history.append(None)
        self.start_metric = self._rolled_back_metric()
        return self._finish(self._halve_at_once(f"non-finite loss in epoch {self.epoch}"))

    def _after_harmful_spike(self) -> Decision:
        """A gradient spike in an epoch that ended no better than the model it started from: the
        instability a non-finite loss shows, caught before it overflows, and answered the same way."""
        reason = f"a gradient spike in epoch {self.epoch}, which ended no better than it started"
        return self._halve_at_once(reason)

    def _halve_at_once(self, reason: str) -> Decision:
        if self._at_checkpoint():
            self._pass_checkpoint(halved=True)
        return replace(self._halve(False, reason), clear_momentum=True)


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return sum(finite) / len(finite) if finite else None


def budget_checkpoints(max_epochs: int) -> list[int]:
    """Auto-PGD's checkpoints (Croce and Hein 2020, Sec. 3.2) as epochs of a run capped at ``max_epochs``.

    Fractions ``p0 = 0, p1 = 0.22, p[j+1] = p[j] + max(p[j] - p[j-1] - 0.03, 0.06)`` of the cap:
    long windows while the run is young, one epoch each near the cap, so that the rule still
    lowers the LR before a cap that would otherwise cut it off at its starting value. The
    authors' 32-px code uses such a list (0, 16, 24, ... 48, 50 over 50 epochs).
    """
    fractions = [0.0, 0.22]
    while fractions[-1] < 1.0:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    return sorted({min(round(p * max_epochs), max_epochs) for p in fractions})


SCHEDULES: dict[str, Callable[[float, int], Schedule]] = {
    "auto": lambda lr, epochs: AutoLRSchedule(lr, max_epochs=epochs),
    "auto-mean": lambda lr, epochs: AutoLRSchedule(lr, max_epochs=epochs, progress="mean"),
    "auto-mean-anneal": lambda lr, epochs: AutoLRSchedule(lr, max_epochs=epochs, progress="mean", anneal=0.25),
    "auto-mean-anneal-after-halving": lambda lr, epochs: AutoLRSchedule(
        lr, max_epochs=epochs, progress="mean", anneal=0.25, anneal_after_halving=True
    ),
    "auto-mean-anneal-after-any-halving": lambda lr, epochs: AutoLRSchedule(
        lr, max_epochs=epochs, progress="mean", anneal=0.25, anneal_after_halving=True, late_halving_anneals=True
    ),
    "auto-mean-anneal-or-average": lambda lr, epochs: AutoLRSchedule(
        lr, max_epochs=epochs, progress="mean", anneal=0.25, anneal_after_halving=True, average_unhalved_tail=True
    ),
    "auto-mean-anneal-and-average": lambda lr, epochs: AutoLRSchedule(
        lr,
        max_epochs=epochs,
        progress="mean",
        anneal=0.25,
        anneal_after_halving=True,
        average_unhalved_tail=True,
        average_decayed_tail=True,
    ),
    "auto-mean-budget": lambda lr, epochs: AutoLRSchedule(
        lr, max_epochs=epochs, progress="mean", checkpoints=budget_checkpoints(epochs)
    ),
    "auto-budget": lambda lr, epochs: AutoLRSchedule(lr, max_epochs=epochs, checkpoints=budget_checkpoints(epochs)),
    "step": StepDecaySchedule,
    "cosine": CosineSchedule,
}
