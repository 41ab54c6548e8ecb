"""Clean, PGD, AutoAttack and corruption accuracy of a model on one set of test examples.

Each measurement is registered by name in ``EVALUATIONS`` (how to run it, what it needs run
first, what it reports), like the corruptions are; ``evaluate`` runs the ones asked for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import PGD, RandomStart, Threat, run_autoattack
from ..attacks.autoattack import VERSIONS
from ..attacks.pgd import evaluating
from ..data import BatchLoader, ImageSet
from ..errors import ConfigError, check_choices
from ..inputs import InputSpec
from ..progress import Progress, no_progress
from ..registry import Registry
from .checks import check_accuracies
from .corruptions import SEVERITIES, check_corruption_names
from .metrics import AUTOATTACK, CLEAN, CORRUPTIONS
from .metrics import PGD as PGD_METRIC

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """What to measure, and how hard to attack, under the threat model ``threat``.

    ``threat`` is None only inside a training config, where the run's own threat model fills
    it in (see ``TrainConfig``); ``evaluate`` refuses a config without one.
    """

    attacks: tuple[str, ...] = ("clean", "pgd")
    threat: Threat | None = None
    pgd_steps: int = 20
    pgd_restarts: int = 1
    autoattack_version: str = "standard"
    autoattack_n: int | None = None
    autoattack_state: Path | None = None
    corruptions: tuple[str, ...] | None = None
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices("attacks", self.attacks, EVALUATIONS.names())
        if self.pgd_steps < 1:
            raise ConfigError("pgd-steps", self.pgd_steps, "use at least one PGD step")
        if self.autoattack_version not in VERSIONS:
            raise ConfigError("autoattack-version", self.autoattack_version, f"choose one of: {', '.join(VERSIONS)}")
        if self.autoattack_n is not None and self.autoattack_n < 1:
            raise ConfigError("autoattack-n", self.autoattack_n, "use a positive number of examples")
        if self.batch_size < 1:
            raise ConfigError("batch-size", self.batch_size, "use a positive batch size")
        if self.pgd_restarts < 1:
            raise ConfigError("pgd-restarts", self.pgd_restarts, "use at least one restart")
        if not self.severities or any(s not in SEVERITIES for s in self.severities):
            raise ConfigError("severities", self.severities, "use severities from 1 to 5")
        check_corruption_names(self.corruptions or ())

    @property
    def budget(self) -> Threat:
        if self.threat is None:
            raise ConfigError("threat", None, "give the evaluation a threat model (norm and eps)")
        return self.threat

    def pgd(self) -> PGD:
        return PGD(
            self.budget.ball(),
            steps=self.pgd_steps,
            step_size=self.budget.step_size,
            random_start=RandomStart.UNIFORM,
            restarts=self.pgd_restarts,
            keep_best=True,
        )

    def pgd_settings(self) -> dict[str, Any]:
        attack = self.pgd()
        return {
            "steps": attack.steps,
            "step_size": attack.step_size,
            "restarts": attack.restarts,
            "random_start": attack.random_start.value,
        }


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).argmax(dim=1)


def correct_flags(
    model: nn.Module,
    loader: BatchLoader,
    attack: PGD | None = None,
    progress: Progress = no_progress,
    description: str = "clean",
) -> Tensor:
    """Per-example correctness (in loader order) on clean inputs, or on ``attack``'s examples.

    Under an attack an example counts as robust only if it is also classified correctly clean.
    ``progress`` is told of each batch.
    """
    flags = []
    with evaluating(model), progress(len(loader), description) as advance:
        for x, y in loader.batches():
            correct = _predict(model, x) == y
            if attack is not None:
                with torch.enable_grad():
                    x_adv = attack(model, x, y)
                correct &= _predict(model, x_adv) == y
            flags.append(correct)
            advance()
    return torch.cat(flags) if flags else torch.zeros(0, dtype=torch.bool)


def _mean(flags: Tensor) -> float:
    return flags.float().mean().item() if flags.numel() else float("nan")


@dataclass
class Evaluation:
    """One measurement run on the shared test loader: what it needs first and what it reports."""

    run: Callable[[EvalContext], dict[str, Any]]
    needs: tuple[str, ...] = ()


@dataclass
class EvalContext:
    """What the evaluations of one call share: the model, the examples and each other's results."""

    model: nn.Module
    images: ImageSet
    loader: BatchLoader
    config: EvalConfig
    progress: Progress = no_progress
    flags: dict[str, Tensor] = field(default_factory=dict)  # per-example correctness, by evaluation
    warnings: list[str] = field(default_factory=list)


EVALUATIONS: Registry[Evaluation] = Registry()


def evaluation(
    name: str, description: str, needs: tuple[str, ...] = ()
) -> Callable[[Callable[[EvalContext], dict[str, Any]]], Evaluation]:
    """Register a measurement under ``name``; ``needs`` names evaluations that must run first."""

    def register(run: Callable[[EvalContext], dict[str, Any]]) -> Evaluation:
        return EVALUATIONS.register(name, description)(Evaluation(run, needs))

    return register


@evaluation("clean", "accuracy on the clean test images")
def _clean(ctx: EvalContext) -> dict[str, Any]:
    ctx.flags["clean"] = correct_flags(ctx.model, ctx.loader, progress=ctx.progress)
    return {CLEAN.key: _mean(ctx.flags["clean"])}


@evaluation("pgd", "PGD (random start, eps/4 steps, each example's worst iterate)", needs=("clean",))
def _pgd(ctx: EvalContext) -> dict[str, Any]:
    config = ctx.config
    ctx.flags["pgd"] = correct_flags(ctx.model, ctx.loader, config.pgd(), ctx.progress, f"PGD-{config.pgd_steps}")
    return {PGD_METRIC.key: _mean(ctx.flags["pgd"]), "pgd": ctx.config.pgd_settings()}


def _autoattack_subset(n: int, config: EvalConfig) -> Tensor:
    if config.autoattack_n is None or config.autoattack_n >= n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(config.seed)
    return torch.randperm(n, generator=generator)[: config.autoattack_n].sort().values


@evaluation("autoattack", "AutoAttack (pyautoattack), on all examples or a seeded subset", needs=("clean",))
def _autoattack(ctx: EvalContext) -> dict[str, Any]:
    config, loader = ctx.config, ctx.loader
    subset = _autoattack_subset(len(ctx.images), config)
    x = torch.cat([loader.fetch(chunk) for chunk in subset.split(1024)])
    y = loader.labels[subset.to(loader.labels.device)]
    aa = run_autoattack(
        ctx.model,
        x,
        y,
        config.budget.eps,
        norm=config.budget.norm,
        version=config.autoattack_version,
        batch_size=config.batch_size,
        seed=config.seed,
        state_path=config.autoattack_state,
        progress=ctx.progress,
    )
    same = {"n": aa.n, CLEAN.key: _mean(ctx.flags["clean"][subset])}
    if "pgd" in ctx.flags:
        same[PGD_METRIC.key] = _mean(ctx.flags["pgd"][subset])
    ctx.warnings += [f"AutoAttack: {flag}" for flag in aa.flags]
    ctx.warnings += check_accuracies(same[CLEAN.key], same.get(PGD_METRIC.key), aa.accuracy, aa.n, aa.eps)
    return {AUTOATTACK.key: aa.accuracy, "autoattack": aa.to_dict() | {"same_examples": same}}


@evaluation("corruptions", "common corruptions (CIFAR-10-C style), mean over severities")
def _corruptions(ctx: EvalContext) -> dict[str, Any]:
    from .corruption_eval import corruption_accuracy

    config = ctx.config
    table = corruption_accuracy(ctx.model, ctx.loader, config.corruptions, config.severities, config.seed)
    return {CORRUPTIONS.key: table["mean"], "corruptions": table}


def _plan(attacks: tuple[str, ...]) -> list[str]:
    """The evaluations to run, in registry order, with what each needs added."""
    wanted = set(attacks) | {need for name in attacks for need in EVALUATIONS[name].needs}
    return [name for name in EVALUATIONS.names() if name in wanted]


def evaluate(
    model: nn.Module,
    images: ImageSet,
    spec: InputSpec,
    config: EvalConfig,
    device: torch.device,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Measure what ``config.attacks`` asks on ``images``; accuracies are fractions in [0, 1].

    Clean and PGD accuracy use every example; AutoAttack uses all of them or a seeded subset
    of ``autoattack_n``, on which clean and PGD accuracy are reported too, so the ordering
    AA <= PGD <= clean is checked on the same examples. The result states the threat model,
    the number of examples and the input spec it used. ``progress`` hears of every batch.
    """
    threat = config.budget
    torch.manual_seed(config.seed)
    ctx = EvalContext(model, images, BatchLoader(images, spec, config.batch_size, device), config, progress)
    result: dict[str, Any] = {"n": len(images), **threat.to_dict(), "input": spec.to_dict()}
    seconds: dict[str, float] = {}
    for name in _plan(config.attacks):
        start = time.perf_counter()
        result |= EVALUATIONS[name].run(ctx)
        seconds[name] = time.perf_counter() - start
    if "autoattack" not in seconds and "pgd" in seconds:
        ctx.warnings += check_accuracies(result[CLEAN.key], result[PGD_METRIC.key], None, len(images), threat.eps)
    result["warnings"] = ctx.warnings
    result["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    for warning in ctx.warnings:
        log.warning(warning)
    return result
